"""What nosgrid needs from a Solana cluster: one async protocol, in-process and RPC adapters.

``LiteSVMChain`` runs the real SVM with the real SPL Token, ATA and Memo programs inside
this process (tests, ``nosgrid up --settlement litesvm``); ``RpcChain`` speaks JSON-RPC to
a validator. Both only sign, send, confirm and read; instructions come from ``spl.py``.

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

import enum
import logging
import struct
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar, runtime_checkable

from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Commitment
from solana.rpc.core import RPCException
from solana.rpc.models import TxOpts
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message
from solders.pubkey import Pubkey
from solders.rpc.errors import SendTransactionPreflightFailureMessage
from solders.signature import Signature
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata
from solders.transaction_status import TransactionErrorFieldless

from nosgrid.core.errors import SettlementFailed
from nosgrid.core.money import DECIMALS
from nosgrid.settlement import spl
from nosgrid.settlement.errors import TransactionFailed, error_from_transaction

log = logging.getLogger(__name__)

_ACCOUNT_LAYOUT: Final = struct.Struct("<32s32sQI32sBIQQI32s")
_MINT_SUPPLY_OFFSET: Final = 36
_R = TypeVar("_R")


class TokenAccountState(enum.IntEnum):
    """The SPL Token account state byte."""

    UNINITIALIZED = 0
    INITIALIZED = 1
    FROZEN = 2


@dataclass(frozen=True)
class TokenAccountInfo:
    """A decoded SPL token account; public keys as base58 strings."""

    address: str
    mint: str
    owner: str
    amount: int
    delegate: str | None
    delegated_amount: int
    state: TokenAccountState
    close_authority: str | None

    @property
    def frozen(self) -> bool:
        """Whether the mint's freeze authority froze it."""
        return self.state is TokenAccountState.FROZEN


def parse_token_account(address: Pubkey | str, data: bytes) -> TokenAccountInfo:
    """Decode the 165-byte SPL token account layout (pure).

    Raises ``ValueError`` if ``data`` is not a token account.
    """
    if len(data) != spl.ACCOUNT_LEN:
        raise ValueError(f"a token account has {spl.ACCOUNT_LEN} bytes, not {len(data)}")
    (
        mint,
        owner,
        amount,
        has_delegate,
        delegate,
        state,
        _native_tag,
        _native,
        delegated,
        has_close,
        close,
    ) = _ACCOUNT_LAYOUT.unpack(data)
    return TokenAccountInfo(
        address=str(address),
        mint=str(Pubkey(mint)),
        owner=str(Pubkey(owner)),
        amount=amount,
        delegate=str(Pubkey(delegate)) if has_delegate else None,
        delegated_amount=delegated,
        state=TokenAccountState(state),
        close_authority=str(Pubkey(close)) if has_close else None,
    )


@dataclass(frozen=True)
class PreparedTransaction:
    """A signed transaction not yet sent. Store ``signature`` before :meth:`submit`: after
    a crash, ``confirmed(signature)`` tells whether it landed, and resubmitting the same
    prepared transaction never executes it twice."""

    signature: str
    transaction: Transaction
    last_valid_block_height: int | None = None


@runtime_checkable
class SolanaChain(Protocol):
    """The cluster operations nosgrid uses; every method may raise ``SettlementFailed``."""

    async def latest_blockhash(self) -> Hash: ...

    async def prepare(
        self, instructions: Sequence[Instruction], signers: Sequence[Keypair], payer: Keypair
    ) -> PreparedTransaction: ...

    async def submit(self, prepared: PreparedTransaction) -> str: ...

    async def send(
        self, instructions: Sequence[Instruction], signers: Sequence[Keypair], payer: Keypair
    ) -> str: ...

    async def confirmed(self, signature: str) -> bool: ...

    async def expired(self, prepared: PreparedTransaction) -> bool: ...

    async def transaction_logs(self, signature: str) -> list[str] | None: ...

    async def token_balance(self, token_account: Pubkey | str) -> int | None: ...

    async def token_account_info(self, token_account: Pubkey | str) -> TokenAccountInfo | None: ...

    async def token_account_infos(
        self, token_accounts: Sequence[Pubkey | str]
    ) -> list[TokenAccountInfo | None]: ...

    async def account_program(self, address: Pubkey | str) -> str | None: ...

    async def mint_supply(self, mint: Pubkey | str) -> int: ...

    async def create_mint(
        self,
        authority: Keypair,
        decimals: int = DECIMALS,
        freeze_authority: Pubkey | None = None,
    ) -> Pubkey: ...

    async def create_ata(
        self, owner: Pubkey | str, mint: Pubkey | str, payer: Keypair
    ) -> Pubkey: ...

    async def create_token_account(
        self, owner: Pubkey | str, mint: Pubkey | str, payer: Keypair
    ) -> Pubkey: ...

    async def mint_to(
        self, mint: Pubkey | str, destination: Pubkey | str, amount: int, authority: Keypair
    ) -> str: ...

    async def freeze(
        self, token_account: Pubkey | str, mint: Pubkey | str, authority: Keypair
    ) -> str: ...

    async def airdrop_sol(self, owner: Pubkey | str, lamports: int) -> None: ...


def _sign(
    instructions: Sequence[Instruction], signers: Sequence[Keypair], payer: Keypair, blockhash: Hash
) -> Transaction:
    keys: dict[Pubkey, Keypair] = {payer.pubkey(): payer}
    for signer in signers:
        keys.setdefault(signer.pubkey(), signer)
    message = Message.new_with_blockhash(list(instructions), payer.pubkey(), blockhash)
    required = message.account_keys[: message.header.num_required_signatures]
    missing = [str(key) for key in required if key not in keys]
    if missing:
        raise SettlementFailed(f"transaction needs signatures from {', '.join(missing)}")
    return Transaction([keys[key] for key in required], message, blockhash)


class _ChainBase:
    """Setup helpers shared by both adapters, written against ``send`` and rent."""

    async def send(
        self, instructions: Sequence[Instruction], signers: Sequence[Keypair], payer: Keypair
    ) -> str:
        raise NotImplementedError

    async def _rent(self, size: int) -> int:
        raise NotImplementedError

    async def token_account_infos(
        self, token_accounts: Sequence[Pubkey | str]
    ) -> list[TokenAccountInfo | None]:
        raise NotImplementedError

    async def token_account_info(self, token_account: Pubkey | str) -> TokenAccountInfo | None:
        """The decoded token account, or ``None`` if it does not exist or is no token account."""
        return (await self.token_account_infos([token_account]))[0]

    async def token_balance(self, token_account: Pubkey | str) -> int | None:
        """Base units held, or ``None`` if the token account does not exist."""
        info = await self.token_account_info(token_account)
        return None if info is None else info.amount

    async def create_mint(
        self,
        authority: Keypair,
        decimals: int = DECIMALS,
        freeze_authority: Pubkey | None = None,
    ) -> Pubkey:
        """A new mint whose mint (and by default freeze) authority is ``authority``, who pays."""
        mint = Keypair()
        ixs = spl.create_mint_instructions(
            authority.pubkey(),
            mint.pubkey(),
            authority.pubkey(),
            await self._rent(spl.MINT_LEN),
            freeze_authority or authority.pubkey(),
            decimals,
        )
        await self.send(ixs, [mint], authority)
        log.info("created mint", extra={"mint": str(mint.pubkey()), "decimals": decimals})
        return mint.pubkey()

    async def create_ata(self, owner: Pubkey | str, mint: Pubkey | str, payer: Keypair) -> Pubkey:
        """``owner``'s associated token account, created (idempotently) if missing."""
        owner_key, mint_key = spl.to_pubkey(owner), spl.to_pubkey(mint)
        await self.send(
            [spl.create_ata_instruction(payer.pubkey(), owner_key, mint_key)], [], payer
        )
        return spl.ata(owner_key, mint_key)

    async def create_token_account(
        self, owner: Pubkey | str, mint: Pubkey | str, payer: Keypair
    ) -> Pubkey:
        """A token account at a fresh address owned by ``owner`` (a vault)."""
        account = Keypair()
        ixs = spl.create_token_account_instructions(
            payer.pubkey(),
            account.pubkey(),
            spl.to_pubkey(mint),
            spl.to_pubkey(owner),
            await self._rent(spl.ACCOUNT_LEN),
        )
        await self.send(ixs, [account], payer)
        return account.pubkey()

    async def mint_to(
        self, mint: Pubkey | str, destination: Pubkey | str, amount: int, authority: Keypair
    ) -> str:
        """Mint ``amount`` base units into ``destination`` (dev faucet, tests)."""
        ix = spl.mint_to_instruction(
            spl.to_pubkey(mint), spl.to_pubkey(destination), authority.pubkey(), amount
        )
        return await self.send([ix], [], authority)

    async def freeze(
        self, token_account: Pubkey | str, mint: Pubkey | str, authority: Keypair
    ) -> str:
        """Freeze a token account with the mint's freeze authority (tests)."""
        ix = spl.freeze_instruction(
            spl.to_pubkey(token_account), spl.to_pubkey(mint), authority.pubkey()
        )
        return await self.send([ix], [], authority)


class LiteSVMChain(_ChainBase):
    """The real SVM in this process. No slots pass: a transaction is final when ``send``
    returns. Sending the same instructions twice under one blockhash would make an identical
    transaction, which the SVM rejects as already processed, so ``send`` expires the
    blockhash first in that case; resubmitting one *prepared* transaction stays idempotent.
    """

    def __init__(self, svm: LiteSVM | None = None) -> None:
        self.svm = svm or LiteSVM()

    async def latest_blockhash(self) -> Hash:
        """The SVM's current blockhash."""
        return self.svm.latest_blockhash()

    async def prepare(
        self, instructions: Sequence[Instruction], signers: Sequence[Keypair], payer: Keypair
    ) -> PreparedTransaction:
        """Sign under the current blockhash, moving to a new one if this exact
        transaction was already processed."""
        tx = _sign(instructions, signers, payer, self.svm.latest_blockhash())
        if self.svm.get_transaction(tx.signatures[0]) is not None:
            self.svm.expire_blockhash()
            tx = _sign(instructions, signers, payer, self.svm.latest_blockhash())
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
        return prepared.signature

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


class RpcChain(_ChainBase):
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
        tx = _sign(instructions, signers, payer, resp.value.blockhash)
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
