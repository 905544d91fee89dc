"""Pure builders of nosgrid's SPL Token and Memo instructions (no I/O, round-trip decodable).

In the style of solana-py: a frozen parameter value goes in, ``Instruction`` values come
out, and nothing touches a cluster. ``chain.py`` signs and sends what these build.

>>> from solders.pubkey import Pubkey
>>> mint, client, node, authority = (Pubkey.new_unique() for _ in range(4))
>>> job = SettleJob(
...     job_id="job-1", entry_hash="ab" * 32, source=ata(client, mint), mint=mint,
...     authority=authority, legs=(Leg(ata(node, mint), 900_000),),
... )
>>> [ix.program_id == TOKEN_PROGRAM_ID for ix in settle_job_instructions(job)]
[True, False]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from solders.hash import Hash
from solders.instruction import Instruction
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account
from spl.memo.constants import MEMO_PROGRAM_ID
from spl.memo.instructions import create_memo
from spl.memo.models import MemoParams
from spl.token.constants import ACCOUNT_LEN, MINT_LEN, TOKEN_PROGRAM_ID
from spl.token.instructions import (
    approve_checked,
    create_idempotent_associated_token_account,
    freeze_account,
    get_associated_token_address,
    initialize_account3,
    initialize_mint2,
    mint_to_checked,
    revoke,
    thaw_account,
    transfer_checked,
)
from spl.token.models import (
    ApproveCheckedParams,
    FreezeAccountParams,
    InitializeAccount3Params,
    InitializeMint2Params,
    MintToCheckedParams,
    RevokeParams,
    ThawAccountParams,
    TransferCheckedParams,
)

from nosgrid.core.errors import InvalidInput
from nosgrid.core.money import DECIMALS, check_amount

__all__ = [
    "ACCOUNT_LEN",
    "MAX_TRANSACTION_SIZE",
    "MEMO_PROGRAM_ID",
    "MINT_LEN",
    "TOKEN_PROGRAM_ID",
    "Approve",
    "Leg",
    "SettleJob",
    "StakeDeposit",
    "VaultWithdraw",
    "anchor_memo_instruction",
    "anchor_memo_text",
    "approve_instructions",
    "ata",
    "batch_payout_instructions",
    "create_ata_instruction",
    "create_mint_instructions",
    "create_token_account_instructions",
    "freeze_instruction",
    "memo_instruction",
    "memo_text",
    "mint_to_instruction",
    "parse_memo",
    "revoke_instruction",
    "settle_job_instructions",
    "stake_deposit_instructions",
    "thaw_instruction",
    "to_pubkey",
    "transaction_size",
    "transfer_instruction",
    "vault_withdraw_instructions",
]

MAX_TRANSACTION_SIZE: Final = 1232
"""Bytes a serialized legacy transaction may take (IPv6 MTU minus headers)."""
MAX_MEMO_FIELD: Final = 128
_FIELD_RE: Final = re.compile(r"^[A-Za-z0-9._:/+\-]+$")
_SIGNATURE_LEN: Final = 64


def to_pubkey(value: Pubkey | str) -> Pubkey:
    """A ``Pubkey`` from a base58 string (or itself); a bad string is :class:`InvalidInput`.

    >>> str(to_pubkey("11111111111111111111111111111111"))
    '11111111111111111111111111111111'
    """
    if isinstance(value, Pubkey):
        return value
    try:
        return Pubkey.from_string(value)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"{value!r} is not a base58 Solana public key") from exc


def ata(owner: Pubkey | str, mint: Pubkey | str) -> Pubkey:
    """The associated token account of ``owner`` for ``mint`` (classic SPL Token program)."""
    return get_associated_token_address(to_pubkey(owner), to_pubkey(mint))


# -- memos ----------------------------------------------------------------------------------


def _field(name: str, value: str) -> str:
    if not value or len(value) > MAX_MEMO_FIELD or not _FIELD_RE.match(value):
        raise InvalidInput(
            f"{name} {value!r} cannot go into a memo: use 1..{MAX_MEMO_FIELD} characters "
            "from A-Z a-z 0-9 . _ : / + -"
        )
    return value


def memo_text(job_id: str, entry_hash: str) -> str:
    """The memo a job's settlement carries: its id and the journal entry hash.

    >>> memo_text("job-1", "00ff")
    'nosgrid settle job=job-1 entry=00ff'
    """
    return f"nosgrid settle job={_field('job_id', job_id)} entry={_field('entry_hash', entry_hash)}"


def anchor_memo_text(ledger_hash: str, seq: int) -> str:
    """The memo that anchors the ledger's latest hash at journal sequence ``seq``.

    >>> anchor_memo_text("00ff", 7)
    'nosgrid anchor seq=7 root=00ff'
    """
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise InvalidInput(f"anchor sequence {seq!r} must be an integer ≥ 0")
    return f"nosgrid anchor seq={seq} root={_field('ledger_hash', ledger_hash)}"


def parse_memo(text: str) -> tuple[str, dict[str, str]]:
    """Split a nosgrid memo into its kind and fields (the inverse of the ``*_text`` helpers).

    >>> parse_memo("nosgrid settle job=j entry=e")
    ('settle', {'job': 'j', 'entry': 'e'})
    """
    parts = text.split(" ")
    if len(parts) < 2 or parts[0] != "nosgrid":
        raise InvalidInput(f"{text!r} is not a nosgrid memo")
    fields = dict(part.split("=", 1) for part in parts[2:] if "=" in part)
    return parts[1], fields


def memo_instruction(text: str, signer: Pubkey | None = None) -> Instruction:
    """A Memo program instruction; with ``signer`` the memo also proves that key signed."""
    data = text.encode()
    if signer is None:
        return Instruction(MEMO_PROGRAM_ID, data, [])
    return create_memo(MemoParams(program_id=MEMO_PROGRAM_ID, message=data, signer=signer))


def anchor_memo_instruction(
    ledger_hash: str, seq: int, signer: Pubkey | None = None
) -> Instruction:
    """The Memo instruction that anchors ``ledger_hash`` (signed by ``signer`` if given)."""
    return memo_instruction(anchor_memo_text(ledger_hash, seq), signer)


# -- settlement -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Leg:
    """One transfer of a settlement: ``amount`` base units into token account ``destination``."""

    destination: Pubkey
    amount: int


@dataclass(frozen=True)
class SettleJob:
    """A job's settlement: every leg leaves ``source`` (the client's token account), signed by
    ``authority`` as the approved delegate, in one transaction with a memo."""

    job_id: str
    entry_hash: str
    source: Pubkey
    mint: Pubkey
    authority: Pubkey
    legs: tuple[Leg, ...]
    decimals: int = DECIMALS

    @property
    def total(self) -> int:
        """What the settlement takes from the client's token account."""
        return sum(leg.amount for leg in self.legs)


def _transfer(
    source: Pubkey, dest: Pubkey, mint: Pubkey, signer: Pubkey, amount: int, decimals: int
) -> Instruction:
    return transfer_checked(
        TransferCheckedParams(
            program_id=TOKEN_PROGRAM_ID,
            source=source,
            mint=mint,
            dest=dest,
            owner=signer,
            amount=check_amount(amount),
            decimals=decimals,
        )
    )


def transfer_instruction(source: Pubkey, dest: Pubkey, mint: Pubkey, signer: Pubkey,
                         amount: int, decimals: int = DECIMALS) -> Instruction:
    """One ``transfer_checked`` of ``amount`` from ``source`` (signed by its owner or
    delegate ``signer``)."""
    return _transfer(source, dest, mint, signer, amount, decimals)


def settle_job_instructions(job: SettleJob) -> list[Instruction]:
    """``transfer_checked`` per non-zero leg (delegate-signed) followed by the job's memo.

    Raises :class:`InvalidInput` for a job without a positive leg or a bad memo field.
    """
    memo = memo_instruction(memo_text(job.job_id, job.entry_hash), job.authority)
    transfers = [
        _transfer(job.source, leg.destination, job.mint, job.authority, leg.amount, job.decimals)
        for leg in job.legs
        if check_amount(leg.amount) > 0
    ]
    if not transfers:
        raise InvalidInput(f"job {job.job_id} has nothing to settle: every leg is 0")
    return [*transfers, memo]


def transaction_size(instructions: Sequence[Instruction], payer: Pubkey) -> int:
    """Bytes of the signed legacy transaction these instructions make (signatures included).

    >>> from solders.pubkey import Pubkey
    >>> payer = Pubkey.new_unique()
    >>> transaction_size([memo_instruction("hi", payer)], payer)
    172
    """
    message = Message.new_with_blockhash(list(instructions), payer, Hash.default())
    signatures = message.header.num_required_signatures
    return _compact_len(signatures) + _SIGNATURE_LEN * signatures + len(bytes(message))


def _compact_len(n: int) -> int:
    return 1 if n < 0x80 else 2 if n < 0x4000 else 3


def batch_payout_instructions(
    jobs: Sequence[SettleJob], payer: Pubkey, max_size: int = MAX_TRANSACTION_SIZE
) -> list[tuple[list[SettleJob], list[Instruction]]]:
    """Pack jobs' settlements into as few transactions as fit ``max_size`` bytes each.

    Returns ``(jobs, instructions)`` per transaction, in order; a job is never split across
    transactions, so each job stays atomic. A job too large for one transaction alone is
    :class:`InvalidInput`. With 64-hex entry hashes, 3 jobs of 3 legs fit one transaction.
    """
    batches: list[tuple[list[SettleJob], list[Instruction]]] = []
    current_jobs: list[SettleJob] = []
    current: list[Instruction] = []
    for job in jobs:
        ixs = settle_job_instructions(job)
        if current and transaction_size([*current, *ixs], payer) <= max_size:
            current_jobs.append(job)
            current.extend(ixs)
            continue
        if transaction_size(ixs, payer) > max_size:
            raise InvalidInput(
                f"job {job.job_id} alone needs {transaction_size(ixs, payer)} bytes, "
                f"more than the {max_size}-byte transaction limit; use fewer legs"
            )
        if current:
            batches.append((current_jobs, current))
        current_jobs, current = [job], list(ixs)
    if current:
        batches.append((current_jobs, current))
    return batches


# -- stakes, vaults, approvals --------------------------------------------------------------


@dataclass(frozen=True)
class StakeDeposit:
    """A staker moves ``amount`` from their token account into the stake vault."""

    source: Pubkey
    vault: Pubkey
    mint: Pubkey
    owner: Pubkey
    amount: int
    memo: str | None = None
    decimals: int = DECIMALS


def stake_deposit_instructions(deposit: StakeDeposit) -> list[Instruction]:
    """``transfer_checked`` signed by the staker (the source's owner), plus an optional memo."""
    ixs = [
        _transfer(
            deposit.source,
            deposit.vault,
            deposit.mint,
            deposit.owner,
            deposit.amount,
            deposit.decimals,
        )
    ]
    if deposit.memo:
        ixs.append(memo_instruction(deposit.memo, deposit.owner))
    return ixs


@dataclass(frozen=True)
class VaultWithdraw:
    """A slash or unstake: ``amount`` leaves the vault, signed by the vault's owner."""

    vault: Pubkey
    destination: Pubkey
    mint: Pubkey
    authority: Pubkey
    amount: int
    reason: str
    reference: str
    decimals: int = DECIMALS


def vault_withdraw_instructions(withdraw: VaultWithdraw) -> list[Instruction]:
    """``transfer_checked`` out of the vault plus ``nosgrid <reason> ref=<reference>`` memo."""
    memo = (
        f"nosgrid {_field('reason', withdraw.reason)} ref={_field('reference', withdraw.reference)}"
    )
    return [
        _transfer(
            withdraw.vault,
            withdraw.destination,
            withdraw.mint,
            withdraw.authority,
            withdraw.amount,
            withdraw.decimals,
        ),
        memo_instruction(memo, withdraw.authority),
    ]


@dataclass(frozen=True)
class Approve:
    """The client lets ``delegate`` (the settlement authority) spend up to ``amount``."""

    source: Pubkey
    mint: Pubkey
    delegate: Pubkey
    owner: Pubkey
    amount: int
    decimals: int = DECIMALS


def approve_instructions(params: Approve) -> list[Instruction]:
    """``approve_checked``; it replaces (does not add to) any earlier allowance."""
    return [
        approve_checked(
            ApproveCheckedParams(
                program_id=TOKEN_PROGRAM_ID,
                source=params.source,
                mint=params.mint,
                delegate=params.delegate,
                owner=params.owner,
                amount=check_amount(params.amount),
                decimals=params.decimals,
            )
        )
    ]


def revoke_instruction(source: Pubkey, owner: Pubkey) -> Instruction:
    """Withdraw any allowance on ``source``."""
    return revoke(RevokeParams(program_id=TOKEN_PROGRAM_ID, account=source, owner=owner))


# -- setup (mint, accounts) -----------------------------------------------------------------


def create_mint_instructions(
    payer: Pubkey,
    mint: Pubkey,
    mint_authority: Pubkey,
    lamports: int,
    freeze_authority: Pubkey | None = None,
    decimals: int = DECIMALS,
) -> list[Instruction]:
    """Allocate the mint account (rent ``lamports``) and initialize it; ``mint`` signs."""
    return [
        create_account(
            CreateAccountParams(
                from_pubkey=payer,
                to_pubkey=mint,
                lamports=lamports,
                space=MINT_LEN,
                owner=TOKEN_PROGRAM_ID,
            )
        ),
        initialize_mint2(
            InitializeMint2Params(
                program_id=TOKEN_PROGRAM_ID,
                mint=mint,
                mint_authority=mint_authority,
                freeze_authority=freeze_authority,
                decimals=decimals,
            )
        ),
    ]


def create_token_account_instructions(
    payer: Pubkey, account: Pubkey, mint: Pubkey, owner: Pubkey, lamports: int
) -> list[Instruction]:
    """A token account at a fresh keypair address (vaults: several per owner); ``account`` signs."""
    return [
        create_account(
            CreateAccountParams(
                from_pubkey=payer,
                to_pubkey=account,
                lamports=lamports,
                space=ACCOUNT_LEN,
                owner=TOKEN_PROGRAM_ID,
            )
        ),
        initialize_account3(
            InitializeAccount3Params(
                program_id=TOKEN_PROGRAM_ID, account=account, mint=mint, owner=owner
            )
        ),
    ]


def create_ata_instruction(payer: Pubkey, owner: Pubkey, mint: Pubkey) -> Instruction:
    """Create ``owner``'s associated token account unless it exists (idempotent)."""
    return create_idempotent_associated_token_account(payer, owner, mint)


def mint_to_instruction(
    mint: Pubkey, destination: Pubkey, authority: Pubkey, amount: int, decimals: int = DECIMALS
) -> Instruction:
    """``mint_to_checked`` (dev faucet and tests)."""
    return mint_to_checked(
        MintToCheckedParams(
            program_id=TOKEN_PROGRAM_ID,
            mint=mint,
            dest=destination,
            mint_authority=authority,
            amount=check_amount(amount),
            decimals=decimals,
        )
    )


def freeze_instruction(account: Pubkey, mint: Pubkey, authority: Pubkey) -> Instruction:
    """Freeze a token account (the mint's freeze authority signs)."""
    return freeze_account(
        FreezeAccountParams(
            program_id=TOKEN_PROGRAM_ID, account=account, mint=mint, authority=authority
        )
    )


def thaw_instruction(account: Pubkey, mint: Pubkey, authority: Pubkey) -> Instruction:
    """Thaw a frozen token account (the mint's freeze authority signs)."""
    return thaw_account(
        ThawAccountParams(
            program_id=TOKEN_PROGRAM_ID, account=account, mint=mint, authority=authority
        )
    )
