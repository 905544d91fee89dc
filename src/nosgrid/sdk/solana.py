"""The client side of Solana settlement (SDK): build and sign an approval locally, relay it.

The coordinator never sees a client key: :func:`approve_transaction` is pure (the
message and the signature are made here), and :func:`approve` sends the signed bytes to
``POST /v1/solana/submit``, which relays them to the chain and mirrors the allowance.

>>> from solders.hash import Hash
>>> from solders.keypair import Keypair
>>> info = {"mint": str(Keypair().pubkey()), "authority": str(Keypair().pubkey()),
...         "decimals": 6, "recent_blockhash": str(Hash.default())}
>>> len(approve_transaction(info, Keypair(), 5_000_000)) > 200
True
"""

from __future__ import annotations

import base64
from typing import Any

from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import Transaction
from spl.memo.constants import MEMO_PROGRAM_ID
from spl.memo.instructions import create_memo
from spl.memo.models import MemoParams
from spl.token.constants import TOKEN_PROGRAM_ID
from spl.token.instructions import approve_checked, transfer_checked
from spl.token.instructions import get_associated_token_address as ata
from spl.token.models import ApproveCheckedParams, TransferCheckedParams

from nosgrid.core.errors import InvalidInput
from nosgrid.core.money import check_amount
from nosgrid.core.views import (
    JobPayouts,
    OnchainVerifyReport,
    SolanaAccountView,
    SolanaFaucetView,
    SolanaInfo,
    SolanaSubmitted,
)
from nosgrid.sdk.client import AsyncClient, _parse


def _pubkey(value: str, what: str) -> Pubkey:
    try:
        return Pubkey.from_string(value)
    except ValueError:
        raise InvalidInput(f"the market's {what} {value!r} is not a base58 public key") from None


def approve_transaction(info: SolanaInfo | dict[str, Any], owner: Keypair,
                        amount: int) -> bytes:
    """A signed transaction approving the market's authority (from ``info``, the answer of
    ``GET /v1/solana/info``) as delegate of ``owner``'s NOS account for ``amount``."""
    if isinstance(info, SolanaInfo):
        info = info.model_dump()
    mint = _pubkey(str(info["mint"]), "mint")
    approve = approve_checked(ApproveCheckedParams(
        program_id=TOKEN_PROGRAM_ID, source=ata(owner.pubkey(), mint), mint=mint,
        delegate=_pubkey(str(info["authority"]), "authority"), owner=owner.pubkey(),
        amount=check_amount(amount), decimals=int(info["decimals"])))
    blockhash = Hash.from_string(str(info["recent_blockhash"]))
    message = Message.new_with_blockhash([approve], owner.pubkey(), blockhash)
    return bytes(Transaction([owner], message, blockhash))


def request_transaction(info: SolanaInfo | dict[str, Any], owner: Keypair, amount: int,
                        memo: str) -> bytes:
    """A signed transaction paying ``amount`` from ``owner``'s NOS account into the market's
    request vault with the ``nosgrid request`` Memo ``memo`` (docs/composability.md)."""
    if isinstance(info, SolanaInfo):
        info = info.model_dump()
    if not info.get("request_vault"):
        raise InvalidInput("this market has no request vault (it settles locally, or its "
                           "accounts file predates chain requests)")
    mint = _pubkey(str(info["mint"]), "mint")
    pay = transfer_checked(TransferCheckedParams(
        program_id=TOKEN_PROGRAM_ID, source=ata(owner.pubkey(), mint), mint=mint,
        dest=_pubkey(str(info["request_vault"]), "request vault"), owner=owner.pubkey(),
        amount=check_amount(amount), decimals=int(info["decimals"])))
    note = create_memo(MemoParams(program_id=MEMO_PROGRAM_ID, message=memo.encode(),
                                  signer=owner.pubkey()))
    blockhash = Hash.from_string(str(info["recent_blockhash"]))
    message = Message.new_with_blockhash([pay, note], owner.pubkey(), blockhash)
    return bytes(Transaction([owner], message, blockhash))


async def request_compute(client: AsyncClient, amount: int, memo: str) -> str:
    """Pay the request vault for a job (signed here, relayed by the coordinator); the
    transaction signature, to follow with ``client.chain_request(signature)``."""
    raw = request_transaction(await info(client), client.keypair, amount, memo)
    body = {"transaction": base64.b64encode(raw).decode()}
    answer = _parse(SolanaSubmitted,
                    await client.request("POST", "/v1/solana/submit", json_body=body),
                    "/v1/solana/submit")
    return answer.signature


async def info(client: AsyncClient) -> SolanaInfo:
    """The market's mint, settlement authority, vaults and a fresh blockhash."""
    return _parse(SolanaInfo, await client.request("GET", "/v1/solana/info", signed=False),
                  "/v1/solana/info")


async def approve(client: AsyncClient, amount: int) -> SolanaSubmitted:
    """Approve ``amount`` base units for the market and mirror it; the account view."""
    raw = approve_transaction(await info(client), client.keypair, amount)
    body = {"transaction": base64.b64encode(raw).decode()}
    return _parse(SolanaSubmitted,
                  await client.request("POST", "/v1/solana/submit", json_body=body),
                  "/v1/solana/submit")


async def sync(client: AsyncClient) -> SolanaAccountView:
    """Mirror the signer's on-chain allowance into the ledger (after approving elsewhere)."""
    return _parse(SolanaAccountView, await client.request("POST", "/v1/solana/sync"),
                  "/v1/solana/sync")


async def onchain_account(client: AsyncClient) -> SolanaAccountView:
    """On-chain balance and allowance, and what the ledger reserves of it."""
    return _parse(SolanaAccountView, await client.request("GET", "/v1/solana/account"),
                  "/v1/solana/account")


async def faucet(client: AsyncClient, amount: str) -> SolanaFaucetView:
    """Dev NOS minted on the coordinator's LiteSVM chain (and SOL for fees)."""
    return _parse(SolanaFaucetView,
                  await client.request("POST", "/v1/solana/faucet", json_body={"amount": amount}),
                  "/v1/solana/faucet")


async def payouts(client: AsyncClient, job_id: str) -> JobPayouts:
    """The on-chain payouts of one of the signer's jobs."""
    path = f"/v1/solana/payouts/{job_id}"
    return _parse(JobPayouts, await client.request("GET", path), path)


async def verify_onchain(client: AsyncClient) -> OnchainVerifyReport:
    """The coordinator's ``verify --onchain`` report."""
    return _parse(OnchainVerifyReport,
                  await client.request("GET", "/v1/solana/verify", signed=False),
                  "/v1/solana/verify")
