"""Request signatures: verify the ed25519 signature, the timestamp window and the nonce."""

from __future__ import annotations

from fastapi import Request
from solders.pubkey import Pubkey
from solders.signature import Signature

from nosgrid.coordinator.runtime import Coordinator
from nosgrid.core.errors import AuthError, BadSignature, ReplayedNonce, StaleRequest
from nosgrid.core.identity import (
    HEADER_NONCE,
    HEADER_PUBKEY,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    NONCE_RE,
    SIGNATURE_WINDOW_S,
    request_message,
)
from nosgrid.store.db import Piggyback


async def verify_request(request: Request, coord: Coordinator) -> tuple[str, Piggyback]:
    """The signer's base58 public key and its nonce's record, or a 401 error (no change)."""
    h = request.headers
    pubkey_s, ts_s, nonce, sig_s = (h.get(HEADER_PUBKEY), h.get(HEADER_TIMESTAMP),
                                    h.get(HEADER_NONCE), h.get(HEADER_SIGNATURE))
    if not (pubkey_s and ts_s and nonce and sig_s):
        raise AuthError("this route needs a signed request: send the x-nosgrid-pubkey, "
                        "-timestamp, -nonce and -signature headers (the SDK and CLI do)")
    try:
        pubkey = Pubkey.from_string(pubkey_s)
        signature = Signature.from_string(sig_s)
        ts = int(ts_s)
    except ValueError:
        raise BadSignature("the signature headers are malformed") from None
    if not NONCE_RE.match(nonce):
        raise BadSignature("the nonce must be 8–64 URL-safe characters")
    now = coord.now()
    if abs(now - ts) > SIGNATURE_WINDOW_S:
        raise StaleRequest(f"the request timestamp is {int(now - ts)}s away from the server's "
                           f"clock; the window is ±{SIGNATURE_WINDOW_S}s")
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    body = await request.body()
    if not signature.verify(pubkey, request_message(request.method, path, body, ts, nonce)):
        raise BadSignature()
    piggyback = coord.claim_nonce(pubkey_s, nonce, now)
    if piggyback is None:
        raise ReplayedNonce()
    return pubkey_s, piggyback
