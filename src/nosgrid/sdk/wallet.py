"""Keypairs in the `solana-keygen` ``id.json`` format, and request signing.

>>> kp = new_keypair()
>>> headers = sign_headers(kp, "POST", "/v1/faucet", b'{"amount":"1"}', now=1700000000)
>>> sorted(headers)[0]
'x-nosgrid-nonce'
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

from solders.keypair import Keypair

from nosgrid.core.errors import InvalidInput, NotFound
from nosgrid.core.identity import (
    HEADER_NONCE,
    HEADER_PUBKEY,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    keypair_from_json,
    request_message,
)


def default_keypair_path() -> Path:
    """``$NOSGRID_KEYPAIR`` or ``~/.config/nosgrid/id.json``."""
    env = os.environ.get("NOSGRID_KEYPAIR")
    return Path(env).expanduser() if env else Path.home() / ".config" / "nosgrid" / "id.json"


def new_keypair() -> Keypair:
    return Keypair()


def save_keypair(kp: Keypair, path: Path, *, overwrite: bool = False) -> Path:
    """Write ``kp`` as a JSON array of its 64 secret-key bytes (mode 0600)."""
    if path.exists() and not overwrite:
        raise InvalidInput(f"{path} already exists; pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(list(bytes(kp)), fh)
    os.replace(tmp, path)
    return path


def load_keypair(path: Path | None = None) -> Keypair:
    """Read an ``id.json`` keypair; a clear error when it is missing or malformed."""
    path = path or default_keypair_path()
    if not path.exists():
        raise NotFound(f"no keypair at {path}; create one with `nosgrid wallet new`")
    return keypair_from_json(path.read_text(), str(path))


def sign_headers(kp: Keypair, method: str, path: str, body: bytes,
                 now: float | None = None) -> dict[str, str]:
    """The four headers that sign one request."""
    ts = int(time.time() if now is None else now)
    nonce = secrets.token_urlsafe(16)
    sig = kp.sign_message(request_message(method, path, body, ts, nonce))
    return {
        HEADER_PUBKEY: str(kp.pubkey()),
        HEADER_TIMESTAMP: str(ts),
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: str(sig),
    }
