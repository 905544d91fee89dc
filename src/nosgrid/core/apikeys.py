"""API keys for the OpenAI-compatible gateway: delegations signed by the owner's keypair.

An OpenAI client can only send ``Authorization: Bearer KEY``, so a key carries its own
proof. It is ``ngk_`` + base64url(JSON claims) + ``.`` + base58(ed25519 signature), the
signature made by the owner's keypair over ``KEY_DOMAIN + claims part``. The gateway checks
it with the public key inside the claims; no password or secret is stored anywhere. What
the coordinator keeps per key is only what a signature cannot say: revocations and spend.

Claims: ``v`` (1), ``owner`` (base58 pubkey, the wallet that pays), ``kid`` (key id),
``cap`` (spend cap, NOS base units), ``exp`` (unix seconds), ``models`` (allowed model
names; empty means any), ``iat`` (issued at).

>>> from solders.keypair import Keypair
>>> kp = Keypair()
>>> key = issue_key(kp, cap=5_000_000, expires_at=2_000_000_000, models=("smollm2",),
...                 issued_at=1_700_000_000, kid="k1")
>>> verify_key(key, now=1_800_000_000).cap
5000000
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from nosgrid.core.errors import InvalidApiKey

KEY_PREFIX: Final = "ngk_"
KEY_DOMAIN: Final = b"nosgrid-api-key-v1:"
MAX_KEY_CHARS: Final = 4096
#: what a key id may be (``new_kid``'s alphabet): it is part of ledger account names
#: (``gwhold:<kid>:<worker>``), so it never holds the ``:`` that separates them
KID_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class KeyClaims:
    """What a key says, once its signature checked out."""

    owner: str
    kid: str
    cap: int
    expires_at: int
    models: tuple[str, ...] = ()
    issued_at: int = 0

    def allows(self, model: str) -> bool:
        return not self.models or model in self.models

    def as_json(self) -> dict[str, Any]:
        return {"v": 1, "owner": self.owner, "kid": self.kid, "cap": self.cap,
                "exp": self.expires_at, "models": list(self.models), "iat": self.issued_at}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_kid() -> str:
    """A fresh random key id (16 url-safe characters)."""
    return secrets.token_urlsafe(12)


def encode_claims(claims: KeyClaims) -> str:
    return _b64(json.dumps(claims.as_json(), sort_keys=True, separators=(",", ":")).encode())


def issue_key(keypair: Keypair, *, cap: int, expires_at: int, issued_at: int,
              models: Sequence[str] = (), kid: str | None = None) -> str:
    """Sign a new key for ``keypair``'s wallet (pure apart from a random ``kid``)."""
    if isinstance(cap, bool) or not isinstance(cap, int) or cap <= 0:
        raise ValueError("the spend cap is a positive number of base units")
    if kid is not None and not KID_PATTERN.match(kid):
        raise ValueError("a key id is 1-64 letters, digits, '-' or '_'")
    claims = KeyClaims(str(keypair.pubkey()), kid or new_kid(), cap, int(expires_at),
                       tuple(models), int(issued_at))
    body = encode_claims(claims)
    sig = keypair.sign_message(KEY_DOMAIN + body.encode())
    return f"{KEY_PREFIX}{body}.{sig}"


def parse_claims(key: str) -> tuple[KeyClaims, str, str]:
    """Split and decode a key without checking its signature: (claims, body, signature)."""
    if not key.startswith(KEY_PREFIX) or len(key) > MAX_KEY_CHARS or key.count(".") != 1:
        raise InvalidApiKey("this is not a nosgrid API key (ngk_…); create one with "
                            "`nosgrid keys create`", reason="malformed")
    body, sig = key[len(KEY_PREFIX):].split(".")
    try:
        raw = json.loads(_unb64(body))
        if not isinstance(raw, dict) or raw.get("v") != 1:
            raise ValueError("unknown key version")
        models = raw.get("models") or []
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise ValueError("models must be a list of names")
        cap, exp, iat = raw["cap"], raw["exp"], raw.get("iat", 0)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (cap, exp, iat)):
            raise ValueError("cap, exp and iat are integers")
        claims = KeyClaims(str(raw["owner"]), str(raw["kid"]), cap, exp, tuple(models), iat)
        if not KID_PATTERN.match(claims.kid):
            raise ValueError("the key id is 1-64 letters, digits, '-' or '_'")
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise InvalidApiKey(f"the API key cannot be read: {exc}", reason="malformed") from None
    return claims, body, sig


def verify_key(key: str, *, now: float) -> KeyClaims:
    """The claims of a correctly signed, unexpired key; :class:`InvalidApiKey` otherwise."""
    claims, body, sig_text = parse_claims(key)
    try:
        owner = Pubkey.from_string(claims.owner)
        sig = Signature.from_string(sig_text)
    except ValueError:
        raise InvalidApiKey("the API key's owner or signature is not base58",
                            reason="malformed") from None
    if not sig.verify(owner, KEY_DOMAIN + body.encode()):
        raise InvalidApiKey("the API key's signature does not match its owner; it was "
                            "altered or made up", reason="bad_signature")
    if now >= claims.expires_at:
        raise InvalidApiKey(f"the API key {claims.kid} expired; create a new one with "
                            "`nosgrid keys create`", reason="expired")
    return claims


def parse_duration(text: str) -> int:
    """Seconds in ``30d``, ``12h``, ``15m``, ``90s`` or a bare number of seconds.

    >>> parse_duration("30d")
    2592000
    """
    units = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
    text = text.strip().lower()
    mult = units.get(text[-1:], 0)
    number = text[:-1] if mult else text
    if not number.isdigit() or int(number) <= 0:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30d, 12h, 15m)")
    return int(number) * (mult or 1)


__all__ = ["KEY_PREFIX", "KID_PATTERN", "InvalidApiKey", "KeyClaims", "issue_key",
           "parse_claims", "parse_duration", "verify_key"]
