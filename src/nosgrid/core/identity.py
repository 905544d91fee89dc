"""What a signed request signs: the canonical message and the header names.

Every state-changing request (and every read that reveals balances or logs) carries the
signer's base58 public key, a unix timestamp, a random nonce and an ed25519 signature
over :func:`request_message`. The coordinator accepts a timestamp within
``SIGNATURE_WINDOW_S`` of its own clock (either side, to allow for clock skew) and each
nonce once per key; it remembers nonces for twice the window, so a captured request can
neither be replayed inside the window (nonce) nor after it (timestamp).

>>> request_message("POST", "/v1/jobs", b"{}", 1700000000, "n1").decode().splitlines()[0]
'nosgrid-v1'
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Final

from solders.keypair import Keypair

from nosgrid.core.errors import InvalidInput

HEADER_PUBKEY: Final = "x-nosgrid-pubkey"
HEADER_TIMESTAMP: Final = "x-nosgrid-timestamp"
HEADER_NONCE: Final = "x-nosgrid-nonce"
HEADER_SIGNATURE: Final = "x-nosgrid-signature"
SIGNATURE_WINDOW_S: Final = 60
NONCE_RE: Final = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def request_message(method: str, path: str, body: bytes, timestamp: int, nonce: str) -> bytes:
    """The bytes a client signs: method, path (with query), sha256(body), timestamp, nonce."""
    return "\n".join(
        ["nosgrid-v1", method.upper(), path, hashlib.sha256(body).hexdigest(), str(timestamp),
         nonce]
    ).encode()


def keypair_from_json(text: str, source: str = "the keypair") -> Keypair:
    """A keypair from the ``solana-keygen`` ``id.json`` text (a JSON array of 64 bytes).

    >>> kp = Keypair()
    >>> keypair_from_json(json.dumps(list(bytes(kp)))) == kp
    True
    """
    try:
        raw = json.loads(text)
        if not (isinstance(raw, list) and len(raw) == 64
                and all(isinstance(b, int) and 0 <= b < 256 for b in raw)):
            raise ValueError("expected a JSON array of 64 byte values")
        return Keypair.from_bytes(bytes(raw))
    except ValueError as exc:
        raise InvalidInput(f"{source} is not a solana-keygen keypair file: {exc}") from None
