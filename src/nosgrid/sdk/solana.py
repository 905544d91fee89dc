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
from spl.token.constants import TOKEN_PROGRAM_ID
from spl.token.instructions import approve_checked
from spl.token.instructions import get_associated_token_address as ata
from spl.token.models import ApproveCheckedParams

from nosgrid.core.errors import InvalidInput
from nosgrid.core.money import check_amount
from nosgrid.sdk.client import AsyncClient


def _pubkey(value: str, what: str) -> Pubkey:
    try:
        return Pubkey.from_string(value)
    except ValueError:
        raise InvalidInput(f"the market's {what} {value!r} is not a base58 public key") from None


def approve_transaction(info: dict[str, Any], owner: Keypair, amount: int) -> bytes:
    """A signed transaction approving the market's authority (from ``info``, the answer of
    ``GET /v1/solana/info``) as delegate of ``owner``'s NOS account for ``amount``."""
    mint = _pubkey(str(info["mint"]), "mint")
    approve = approve_checked(ApproveCheckedParams(
        program_id=TOKEN_PROGRAM_ID, source=ata(owner.pubkey(), mint), mint=mint,
        delegate=_pubkey(str(info["authority"]), "authority"), owner=owner.pubkey(),
        amount=check_amount(amount), decimals=int(info["decimals"])))
    blockhash = Hash.from_string(str(info["recent_blockhash"]))
    message = Message.new_with_blockhash([approve], owner.pubkey(), blockhash)
    return bytes(Transaction([owner], message, blockhash))


async def approve(client: AsyncClient, amount: int) -> dict[str, Any]:
    """Approve ``amount`` base units for the market and mirror it; the account view."""
    info = await client.request("GET", "/v1/solana/info", signed=False)
    raw = approve_transaction(info, client.keypair, amount)
    body = {"transaction": base64.b64encode(raw).decode()}
    return dict(await client.request("POST", "/v1/solana/submit", json_body=body))


async def onchain_account(client: AsyncClient) -> dict[str, Any]:
    """On-chain balance and allowance, and what the ledger reserves of it."""
    return dict(await client.request("GET", "/v1/solana/account"))


async def faucet(client: AsyncClient, amount: str) -> dict[str, Any]:
    """Dev NOS minted on the coordinator's LiteSVM chain (and SOL for fees)."""
    return dict(await client.request("POST", "/v1/solana/faucet", json_body={"amount": amount}))


async def verify_onchain(client: AsyncClient) -> dict[str, Any]:
    """The coordinator's ``verify --onchain`` report."""
    return dict(await client.request("GET", "/v1/solana/verify", signed=False))
