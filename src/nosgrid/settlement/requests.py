"""Compute requested from chain, the chain side: reading a payment into the request vault
from a transaction, and building its refund.

A payment is every SPL Token ``Transfer``/``TransferChecked`` into the vault in one
successful transaction — top-level (a user signs) or inner (a program pays through its
PDA) — with the transaction's ``nosgrid request`` Memo (``core.chain_requests``). Our own
payouts and refunds move tokens *out of* the vault, so they are no payment. Pure.

>>> from solders.pubkey import Pubkey
>>> from nosgrid.settlement.chain import ChainInstruction, ChainTransaction
>>> vault, src, owner = (str(Pubkey.new_unique()) for _ in range(3))
>>> pay = ChainInstruction(str(spl.TOKEN_PROGRAM_ID), (src, vault, owner),
...                        bytes([3]) + (5_000).to_bytes(8, "little"))
>>> memo = ChainInstruction(str(spl.MEMO_PROGRAM_ID), (), b"nosgrid request ...")
>>> p = payment_into(ChainTransaction("sig", 7, (pay, memo)), vault)
>>> (p.amount, p.source == src, p.memo)
(5000, True, 'nosgrid request ...')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from solders.instruction import Instruction
from solders.pubkey import Pubkey

from nosgrid.core.chain_requests import MEMO_KIND
from nosgrid.core.money import DECIMALS
from nosgrid.settlement import spl
from nosgrid.settlement.chain import ChainTransaction

_TRANSFER: Final = 3
_TRANSFER_CHECKED: Final = 12


@dataclass(frozen=True)
class VaultPayment:
    """Tokens a transaction paid into the vault: from ``source`` (a token account, where a
    refund goes back), signed by ``authority`` (its owner or delegate: a user or a PDA)."""

    signature: str
    slot: int
    source: str
    authority: str
    amount: int
    memo: str | None


def payment_into(tx: ChainTransaction, vault: Pubkey | str) -> VaultPayment | None:
    """The payment ``tx`` made into ``vault`` (None: it paid nothing in)."""
    target = str(vault)
    found: list[tuple[str, str, int]] = []
    memos: list[str] = []
    for ix in tx.instructions:
        if ix.program == str(spl.MEMO_PROGRAM_ID):
            memos.append(ix.data.decode("utf-8", errors="replace"))
            continue
        if ix.program != str(spl.TOKEN_PROGRAM_ID) or len(ix.data) < 9:
            continue
        amount = int.from_bytes(ix.data[1:9], "little")
        if ix.data[0] == _TRANSFER and len(ix.accounts) >= 3 and ix.accounts[1] == target:
            found.append((ix.accounts[0], ix.accounts[2], amount))
        elif (ix.data[0] == _TRANSFER_CHECKED and len(ix.accounts) >= 4
              and ix.accounts[2] == target):
            found.append((ix.accounts[0], ix.accounts[3], amount))
    if not found:
        return None
    request = [m for m in memos if m.startswith(f"nosgrid {MEMO_KIND}")]
    memo = request[0] if request else (memos[0] if memos else None)
    source, authority, _ = found[0]
    return VaultPayment(tx.signature, tx.slot, source, authority,
                        sum(amount for _s, _a, amount in found), memo)


def refund_instructions(vault: Pubkey, destination: Pubkey, mint: Pubkey, authority: Pubkey,
                        amount: int, memo: str, decimals: int = DECIMALS) -> list[Instruction]:
    """``transfer_checked`` out of the vault (its owner signs) and the reason Memo."""
    return [spl.transfer_instruction(vault, destination, mint, authority, amount, decimals),
            spl.memo_instruction(memo, authority)]


def request_payment_instructions(source: Pubkey, vault: Pubkey, mint: Pubkey, owner: Pubkey,
                                 amount: int, memo: str,
                                 decimals: int = DECIMALS) -> list[Instruction]:
    """What a user sends to request compute: the transfer into the vault and the Memo."""
    return [spl.transfer_instruction(source, vault, mint, owner, amount, decimals),
            spl.memo_instruction(memo, owner)]
