"""``LiteSVMChain``: the real SVM with the real SPL Token, ATA and Memo programs inside this
process (tests, ``nosgrid up --settlement litesvm``).

>>> import asyncio
>>> from solders.keypair import Keypair
>>> chain = LiteSVMChain()
>>> authority = Keypair()
>>> chain.airdrop_sol_now(authority.pubkey(), 10**9)
>>> mint = asyncio.run(chain.create_mint(authority))
>>> account = asyncio.run(chain.create_ata(authority.pubkey(), mint, authority))
>>> asyncio.run(chain.token_balance(account))
0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata
from solders.transaction_status import TransactionErrorFieldless

from nosgrid.core.errors import SettlementFailed
from nosgrid.settlement import spl
from nosgrid.settlement.chain import (
    ChainBase,
    ChainInstruction,
    ChainTransaction,
    PreparedTransaction,
    TokenAccountInfo,
    parse_token_account,
    sign_transaction,
)
from nosgrid.settlement.errors import error_from_transaction

_MINT_SUPPLY_OFFSET: Final = 36


class LiteSVMChain(ChainBase):
    """The real SVM in this process. No slots pass: a transaction is final when ``send``
    returns. Sending the same instructions twice under one blockhash would make an identical
    transaction, which the SVM rejects as already processed, so ``send`` expires the
    blockhash first in that case; resubmitting one *prepared* transaction stays idempotent.
    """

    def __init__(self, svm: LiteSVM | None = None) -> None:
        self.svm = svm or LiteSVM()
        #: what this adapter executed, in order: LiteSVM keeps no index by address, so the
        #: adapter does (the request watcher reads it like getSignaturesForAddress)
        self.history: list[tuple[str, int, Transaction]] = []
        self._by_address: dict[Pubkey, list[int]] = {}

    async def latest_blockhash(self) -> Hash:
        """The SVM's current blockhash."""
        return self.svm.latest_blockhash()

    async def prepare(
        self, instructions: Sequence[Instruction], signers: Sequence[Keypair], payer: Keypair
    ) -> PreparedTransaction:
        """Sign under the current blockhash, moving to a new one if this exact
        transaction was already processed."""
        tx = sign_transaction(instructions, signers, payer, self.svm.latest_blockhash())
        if self.svm.get_transaction(tx.signatures[0]) is not None:
            self.svm.expire_blockhash()
            tx = sign_transaction(instructions, signers, payer, self.svm.latest_blockhash())
        return PreparedTransaction(str(tx.signatures[0]), tx)

    async def submit(self, prepared: PreparedTransaction) -> str:
        """Execute; a typed ``TransactionFailed`` with the program logs if it fails."""
        result = self.svm.send_transaction(prepared.transaction)
        if isinstance(result, FailedTransactionMetadata):
            if result.err() == TransactionErrorFieldless.AlreadyProcessed and await self.confirmed(
                prepared.signature
            ):
                return prepared.signature
            raise error_from_transaction(result.err(), result.meta().logs())
        self._remember(prepared)
        return prepared.signature

    def _remember(self, prepared: PreparedTransaction) -> None:
        index = len(self.history)
        self.history.append((prepared.signature, int(self.svm.get_clock().slot),
                             prepared.transaction))
        for key in prepared.transaction.message.account_keys:
            self._by_address.setdefault(key, []).append(index)

    async def send(
        self, instructions: Sequence[Instruction], signers: Sequence[Keypair], payer: Keypair
    ) -> str:
        """Sign, execute and return the signature (base58) of a new transaction."""
        return await self.submit(await self.prepare(instructions, signers, payer))

    async def confirmed(self, signature: str) -> bool:
        """Whether the transaction executed successfully."""
        found = self.svm.get_transaction(Signature.from_string(signature))
        return isinstance(found, TransactionMetadata)

    async def expired(self, prepared: PreparedTransaction) -> bool:
        """Whether ``prepared`` can no longer execute: its blockhash is no longer current."""
        return prepared.transaction.message.recent_blockhash != self.svm.latest_blockhash()

    async def slot(self) -> int:
        """The SVM's current slot (it moves only when a test warps it)."""
        return int(self.svm.get_clock().slot)

    async def signatures_for(self, address: Pubkey | str, after: str | None = None,
                             limit: int = 1000) -> list[str]:
        """Signatures of executed transactions touching ``address``, oldest first, those
        after ``after`` only (all when it is None or unknown to this process)."""
        found = [self.history[i][0] for i in self._by_address.get(spl.to_pubkey(address), [])]
        if after in found:
            found = found[found.index(after) + 1:]
        return found[:limit]

    async def transaction(self, signature: str) -> ChainTransaction | None:
        """The executed instructions of a successful transaction (None: unknown, failed)."""
        found = self.svm.get_transaction(Signature.from_string(signature))
        if not isinstance(found, TransactionMetadata):
            return None
        slot, tx = next(((slot, tx) for sig, slot, tx in self.history if sig == signature),
                        (0, None))
        if tx is None:
            return None
        keys = [str(k) for k in tx.message.account_keys]
        compiled = list(tx.message.instructions)
        compiled += [inner.instruction() for group in found.inner_instructions()
                     for inner in group]
        return ChainTransaction(signature, slot, tuple(
            ChainInstruction(keys[ix.program_id_index], tuple(keys[a] for a in ix.accounts),
                             bytes(ix.data)) for ix in compiled))

    async def transaction_logs(self, signature: str) -> list[str] | None:
        """Program logs of a successful transaction; ``None`` if unknown or failed."""
        found = self.svm.get_transaction(Signature.from_string(signature))
        return list(found.logs()) if isinstance(found, TransactionMetadata) else None

    def logs(self, signature: str) -> list[str]:
        """Program logs of an executed transaction (empty if unknown)."""
        found = self.svm.get_transaction(Signature.from_string(signature))
        if isinstance(found, FailedTransactionMetadata):
            return list(found.meta().logs())
        return [] if found is None else list(found.logs())

    async def token_account_infos(
        self, token_accounts: Sequence[Pubkey | str]
    ) -> list[TokenAccountInfo | None]:
        """Decoded token accounts, ``None`` where missing or not a token account."""
        out: list[TokenAccountInfo | None] = []
        for address in token_accounts:
            account = self.svm.get_account(spl.to_pubkey(address))
            if account is None or account.owner != spl.TOKEN_PROGRAM_ID or account.lamports == 0:
                out.append(None)
                continue
            try:
                out.append(parse_token_account(address, bytes(account.data)))
            except ValueError:
                out.append(None)
        return out

    async def account_program(self, address: Pubkey | str) -> str | None:
        """The program owning ``address`` (``None`` if the account does not exist)."""
        account = self.svm.get_account(spl.to_pubkey(address))
        return None if account is None or account.lamports == 0 else str(account.owner)

    async def mint_supply(self, mint: Pubkey | str) -> int:
        """Tokens in existence for ``mint``."""
        account = self.svm.get_account(spl.to_pubkey(mint))
        if account is None:
            raise SettlementFailed(f"mint {mint} does not exist")
        return int.from_bytes(
            bytes(account.data)[_MINT_SUPPLY_OFFSET : _MINT_SUPPLY_OFFSET + 8], "little"
        )

    async def _rent(self, size: int) -> int:
        return self.svm.minimum_balance_for_rent_exemption(size)

    async def airdrop_sol(self, owner: Pubkey | str, lamports: int) -> None:
        """Give ``owner`` lamports for fees and rent (LiteSVM only)."""
        self.airdrop_sol_now(spl.to_pubkey(owner), lamports)

    def airdrop_sol_now(self, owner: Pubkey, lamports: int) -> None:
        """Synchronous :meth:`airdrop_sol`."""
        result = self.svm.airdrop(owner, lamports)
        if (
            isinstance(result, FailedTransactionMetadata)
            and result.err() == TransactionErrorFieldless.AlreadyProcessed
        ):
            self.svm.expire_blockhash()
            result = self.svm.airdrop(owner, lamports)
        if isinstance(result, FailedTransactionMetadata):
            raise error_from_transaction(result.err(), result.meta().logs(), "airdrop")

