"""What nosgrid needs from a Solana cluster: one async protocol and what its adapters share.

``LiteSVMChain`` (``litesvm_chain.py``) runs the real SVM with the real SPL Token, ATA and
Memo programs inside this process (tests, ``nosgrid up --settlement litesvm``);
``RpcChain`` (``rpc_chain.py``) speaks JSON-RPC to a validator. Both only sign, send,
confirm and read; instructions come from ``spl.py``.

>>> import asyncio
>>> from solders.keypair import Keypair
>>> from nosgrid.settlement.litesvm_chain import LiteSVMChain
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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import Transaction

from nosgrid.core.errors import SettlementFailed
from nosgrid.core.money import DECIMALS
from nosgrid.settlement import spl

log = logging.getLogger(__name__)

_ACCOUNT_LAYOUT: Final = struct.Struct("<32s32sQI32sBIQQI32s")


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


@dataclass(frozen=True)
class ChainInstruction:
    """One executed instruction (top-level or inner), public keys as base58 strings."""

    program: str
    accounts: tuple[str, ...]
    data: bytes


@dataclass(frozen=True)
class ChainTransaction:
    """A successful transaction as the request watcher reads it: every instruction it
    executed, top-level ones first in order, then the inner ones (CPIs of a program)."""

    signature: str
    slot: int
    instructions: tuple[ChainInstruction, ...]


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

    async def slot(self) -> int: ...

    async def signatures_for(self, address: Pubkey | str, after: str | None = None,
                             limit: int = 1000) -> list[str]: ...

    async def transaction(self, signature: str) -> ChainTransaction | None: ...

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


def sign_transaction(
    instructions: Sequence[Instruction], signers: Sequence[Keypair], payer: Keypair, blockhash: Hash
) -> Transaction:
    """A transaction paid by ``payer``, signed by exactly the keys its message requires."""
    keys: dict[Pubkey, Keypair] = {payer.pubkey(): payer}
    for signer in signers:
        keys.setdefault(signer.pubkey(), signer)
    message = Message.new_with_blockhash(list(instructions), payer.pubkey(), blockhash)
    required = message.account_keys[: message.header.num_required_signatures]
    missing = [str(key) for key in required if key not in keys]
    if missing:
        raise SettlementFailed(f"transaction needs signatures from {', '.join(missing)}")
    return Transaction([keys[key] for key in required], message, blockhash)


class ChainBase:
    """Setup helpers shared by both adapters (``LiteSVMChain``, ``RpcChain``), written
    against ``send`` and rent."""

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
