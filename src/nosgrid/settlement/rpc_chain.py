"""``RpcChain``: a Solana validator over JSON-RPC through solana-py's ``AsyncClient``."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Final, TypeVar

from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Commitment
from solana.rpc.core import RPCException
from solana.rpc.models import TxOpts
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.rpc.errors import SendTransactionPreflightFailureMessage
from solders.signature import Signature
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
from nosgrid.settlement.errors import TransactionFailed, error_from_transaction

_R = TypeVar("_R")
_B58: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58decode(text: str) -> bytes:
    """Base58 (Bitcoin alphabet) to bytes: inner instruction data in JSON-RPC answers.

    >>> b58decode(str(Pubkey.new_unique())) != b58decode("11111111111111111111111111111111")
    True
    >>> b58decode("11111111111111111111111111111111") == bytes(32)
    True
    """
    n = 0
    for ch in text:
        n = n * 58 + _B58.index(ch)
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\x00" * (len(text) - len(text.lstrip("1"))) + body


class RpcChain(ChainBase):
    """A validator over JSON-RPC (``solana.rpc.async_api.AsyncClient``): build, sign,
    ``sendTransaction`` with preflight, confirm at ``commitment``.

    >>> chain = RpcChain("http://127.0.0.1:8899")  # doctest: +SKIP
    """

    def __init__(
        self, url: str, commitment: str = "confirmed", client: AsyncClient | None = None
    ) -> None:
        self.url = url
        self.commitment = Commitment(commitment)
        self.client = client or AsyncClient(url, commitment=self.commitment)

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self.client.close()

    async def latest_blockhash(self) -> Hash:
        """The cluster's latest blockhash at our commitment."""
        resp = await self._call("getLatestBlockhash", self.client.get_latest_blockhash())
        return resp.value.blockhash

    async def prepare(
        self, instructions: Sequence[Instruction], signers: Sequence[Keypair], payer: Keypair
    ) -> PreparedTransaction:
        """Sign under the latest blockhash and remember until when it is valid."""
        resp = await self._call("getLatestBlockhash", self.client.get_latest_blockhash())
        tx = sign_transaction(instructions, signers, payer, resp.value.blockhash)
        return PreparedTransaction(str(tx.signatures[0]), tx, resp.value.last_valid_block_height)

    async def submit(self, prepared: PreparedTransaction) -> str:
        """Send with preflight and wait for ``commitment``; typed errors with logs on failure."""
        signature = Signature.from_string(prepared.signature)
        opts = TxOpts(skip_preflight=False, preflight_commitment=self.commitment)
        try:
            await self.client.send_raw_transaction(bytes(prepared.transaction), opts=opts)
        except RPCException as exc:
            failure = exc.args[0] if exc.args else None
            if isinstance(failure, SendTransactionPreflightFailureMessage):
                already = failure.data.err == TransactionErrorFieldless.AlreadyProcessed
                if already and await self.confirmed(prepared.signature):
                    return prepared.signature
                raise error_from_transaction(failure.data.err, failure.data.logs or []) from exc
            raise TransactionFailed(f"Solana RPC refused the transaction: {failure}") from exc
        except (OSError, SolanaRpcException) as exc:
            raise SettlementFailed(f"cannot reach Solana RPC at {self.url}: {exc}") from exc
        try:
            statuses = await self.client.confirm_transaction(
                signature, self.commitment, last_valid_block_height=prepared.last_valid_block_height
            )
        except Exception as exc:  # expiry, timeout, transport: all mean "not confirmed"
            raise SettlementFailed(
                f"transaction {prepared.signature} was not confirmed: {exc}; "
                "check confirmed(signature) before retrying"
            ) from exc
        status = statuses.value[0]
        if status is not None and status.err is not None:
            raise error_from_transaction(status.err, [])
        return prepared.signature

    async def send(
        self, instructions: Sequence[Instruction], signers: Sequence[Keypair], payer: Keypair
    ) -> str:
        """Sign, send, confirm; the signature as base58."""
        return await self.submit(await self.prepare(instructions, signers, payer))

    async def confirmed(self, signature: str) -> bool:
        """Whether the transaction succeeded and reached our commitment."""
        resp = await self._call(
            "getSignatureStatuses",
            self.client.get_signature_statuses(
                [Signature.from_string(signature)], search_transaction_history=True
            ),
        )
        status = resp.value[0]
        if status is None or status.err is not None or status.confirmation_status is None:
            return False
        wanted = {"processed": 0, "confirmed": 1, "finalized": 2}[str(self.commitment)]
        return int(status.confirmation_status) >= wanted

    async def expired(self, prepared: PreparedTransaction) -> bool:
        """Whether ``prepared``'s blockhash is past its last valid block height, so it can
        never land any more (then, if it is not confirmed, it is safe to build a new one)."""
        if prepared.last_valid_block_height is None:
            return False  # unknown validity window: keep resubmitting the same transaction
        height = await self._call("getBlockHeight", self.client.get_block_height())
        return int(height.value) > prepared.last_valid_block_height

    async def slot(self) -> int:
        """The cluster's current slot at the configured commitment."""
        return int((await self._call("getSlot", self.client.get_slot())).value)

    async def signatures_for(self, address: Pubkey | str, after: str | None = None,
                             limit: int = 1000) -> list[str]:
        """``getSignaturesForAddress`` back to ``after`` (paged), successful ones, oldest
        first."""
        key = spl.to_pubkey(address)
        until = Signature.from_string(after) if after else None
        found: list[str] = []
        before: Signature | None = None
        while True:
            pending = self.client.get_signatures_for_address(key, before=before, until=until,
                                                             limit=limit)
            resp = await self._call("getSignaturesForAddress", pending)
            page = list(resp.value)
            found += [str(s.signature) for s in page if s.err is None]
            if len(page) < limit:
                break
            before = page[-1].signature
        return list(reversed(found))

    async def transaction(self, signature: str) -> ChainTransaction | None:
        """``getTransaction`` (base64, v0 allowed): its instructions, inner ones after."""
        resp = await self._call("getTransaction", self.client.get_transaction(
            Signature.from_string(signature), encoding="base64",
            max_supported_transaction_version=0))
        found: Any = resp.value
        if found is None or found.transaction.meta is None or found.transaction.meta.err:
            return None
        meta = found.transaction.meta
        tx: Any = found.transaction.transaction
        keys = [str(k) for k in tx.message.account_keys]
        loaded = getattr(meta, "loaded_addresses", None)
        if loaded is not None:
            keys += [str(k) for k in loaded.writable] + [str(k) for k in loaded.readonly]
        compiled: list[tuple[int, list[int], bytes]] = [
            (ix.program_id_index, list(ix.accounts), bytes(ix.data))
            for ix in tx.message.instructions]
        for group in meta.inner_instructions or []:
            for ix in group.instructions:
                compiled.append((ix.program_id_index, list(ix.accounts),
                                 bytes(b58decode(ix.data))))
        return ChainTransaction(signature, int(found.slot), tuple(
            ChainInstruction(keys[p], tuple(keys[a] for a in accts), data)
            for p, accts, data in compiled))

    async def transaction_logs(self, signature: str) -> list[str] | None:
        """Program logs of a successful transaction at our commitment; ``None`` otherwise."""
        resp = await self._call(
            "getTransaction",
            self.client.get_transaction(
                Signature.from_string(signature), max_supported_transaction_version=0
            ),
        )
        if resp.value is None or resp.value.transaction.meta is None:
            return None
        meta = resp.value.transaction.meta
        if meta.err is not None:
            return None
        return list(meta.log_messages or [])

    async def token_account_infos(
        self, token_accounts: Sequence[Pubkey | str]
    ) -> list[TokenAccountInfo | None]:
        """Decoded token accounts in one ``getMultipleAccounts`` call."""
        keys = [spl.to_pubkey(a) for a in token_accounts]
        resp = await self._call("getMultipleAccounts", self.client.get_multiple_accounts(keys))
        out: list[TokenAccountInfo | None] = []
        for key, account in zip(keys, resp.value, strict=True):
            if account is None or account.owner != spl.TOKEN_PROGRAM_ID:
                out.append(None)
                continue
            try:
                out.append(parse_token_account(key, bytes(account.data)))
            except ValueError:
                out.append(None)
        return out

    async def account_program(self, address: Pubkey | str) -> str | None:
        """The program owning ``address`` (``None`` if the account does not exist)."""
        resp = await self._call(
            "getAccountInfo", self.client.get_account_info(spl.to_pubkey(address))
        )
        return None if resp.value is None else str(resp.value.owner)

    async def mint_supply(self, mint: Pubkey | str) -> int:
        """Tokens in existence for ``mint``."""
        resp = await self._call("getTokenSupply", self.client.get_token_supply(spl.to_pubkey(mint)))
        return int(resp.value.amount)

    async def _rent(self, size: int) -> int:
        resp = await self._call(
            "getMinimumBalanceForRentExemption",
            self.client.get_minimum_balance_for_rent_exemption(size),
        )
        return int(resp.value)

    async def airdrop_sol(self, owner: Pubkey | str, lamports: int) -> None:
        """Request an airdrop (devnet, testnet, local validator) and wait for it."""
        resp = await self._call(
            "requestAirdrop", self.client.request_airdrop(spl.to_pubkey(owner), lamports)
        )
        await self.client.confirm_transaction(resp.value, self.commitment)

    async def _call(self, method: str, pending: Awaitable[_R]) -> _R:
        try:
            return await pending
        except RPCException as exc:
            raise SettlementFailed(f"Solana RPC {method} failed: {exc}") from exc
        except (OSError, SolanaRpcException) as exc:
            raise SettlementFailed(f"cannot reach Solana RPC at {self.url}: {exc}") from exc
