"""Result receipts: the market's signed statement of how a job ended, in a fixed binary layout.

A receipt is what another Solana program checks inside its own transaction (through an
Ed25519 signature-check instruction and the Instructions sysvar), so it is bytes, not JSON:
172 bytes, little-endian, every field at a fixed offset (``docs/composability.md`` has the
table and a Rust snippet of the consuming side)::

    off  size  field
      0     4  magic            b"NGRC"
      4     1  version          1
      5     1  verdict          Verdict (0 settled, 1 audit agreed, 2 node wrong, ...)
      6     2  flags            bit 0: reply_key is set (a chain-requested job)
      8     4  attestor epoch   u32, the key epoch that signed (see core.attestor)
     12     8  journal seq      u64, the ledger entry that settled the job
     20     8  slot             u64, the chain slot the coordinator last saw (0 off chain)
     28    16  market           sha256(market name)[:16]
     44    32  job              sha256(job id)
     76    32  definition       sha256 of the job definition (its content address)
    108    32  result           sha256 of the result document (:func:`result_digest`)
    140    32  reply key        a Solana public key, or 32 zero bytes
    172

The signature (ed25519 by the attestor key of ``epoch``) is over exactly these bytes.
Pure: no I/O, no clock; signing takes the key.

>>> from solders.keypair import Keypair
>>> key = Keypair()
>>> r = Receipt(verdict=Verdict.SETTLED, epoch=0, seq=7, slot=0, market=market_digest("cpu"),
...             job=job_digest("j1"), definition=bytes(32), result=result_digest({}))
>>> raw = r.encode()
>>> len(raw), decode(raw) == r
(172, True)
>>> signed = sign(r, key)
>>> verify_receipt(signed.receipt, signed.signature, str(key.pubkey())).seq
7
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from nosgrid.core.errors import InvalidInput, InvalidReceipt

MAGIC: Final = b"NGRC"
VERSION: Final = 1
RECEIPT_LEN: Final = 172
SIGNATURE_LEN: Final = 64
FLAG_REPLY_KEY: Final = 0x0001
_HEADER: Final = struct.Struct("<4sBBHIQQ")  # magic, version, verdict, flags, epoch, seq, slot
_ZERO_KEY: Final = bytes(32)
#: field name → (offset, size): the table of the module docstring, for docs and tests
OFFSETS: Final = {
    "magic": (0, 4), "version": (4, 1), "verdict": (5, 1), "flags": (6, 2), "epoch": (8, 4),
    "seq": (12, 8), "slot": (20, 8), "market": (28, 16), "job": (44, 32),
    "definition": (76, 32), "result": (108, 32), "reply_key": (140, 32),
}


class Verdict(IntEnum):
    """How the job ended, as far as its result can be trusted.

    ``SETTLED``: paid without an audit (none drawn, or the window closed unaudited);
    ``AUDIT_AGREED``: an independent re-run matched; ``NODE_WRONG``: a dispute found the
    result wrong (the client was refunded, the node slashed) — a consumer must not use it;
    ``AUDITOR_WRONG``: a dispute upheld the result; ``INCONCLUSIVE``: a dispute could not
    decide; ``HELD``: the result is in, its audit window is open (a later receipt follows).
    """

    SETTLED = 0
    AUDIT_AGREED = 1
    NODE_WRONG = 2
    AUDITOR_WRONG = 3
    INCONCLUSIVE = 4
    HELD = 5

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_dispute(cls, verdict: str) -> Verdict:
        """The receipt verdict of a dispute's ``core.verification.Verdict`` value."""
        try:
            return {"agreed": cls.AUDIT_AGREED, "node_wrong": cls.NODE_WRONG,
                    "auditor_wrong": cls.AUDITOR_WRONG,
                    "inconclusive": cls.INCONCLUSIVE}[verdict]
        except KeyError as exc:
            raise InvalidInput(f"unknown audit verdict {verdict!r}") from exc


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def market_digest(market: str) -> bytes:
    """The 16 bytes naming a market: ``sha256(name)[:16]``."""
    return _sha(market.encode())[:16]


def job_digest(job_id: str) -> bytes:
    """The 32 bytes naming a job: ``sha256(job id)``."""
    return _sha(job_id.encode())


def result_digest(result: Mapping[str, Any]) -> bytes:
    """``sha256`` of the result document as ``GET /v1/jobs/{id}/result`` returns it in
    ``result``: keys sorted, no spaces, UTF-8 — anyone holding the result recomputes it.

    >>> result_digest({"b": 1, "a": [2]}).hex()[:16]
    '63c9663de90ee828'
    """
    text = json.dumps(dict(result), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _sha(text.encode())


def _fixed(name: str, value: bytes, size: int) -> bytes:
    if len(value) != size:
        raise InvalidInput(f"receipt field {name} needs {size} bytes, not {len(value)}")
    return value


@dataclass(frozen=True, slots=True)
class Receipt:
    """One receipt's fields; :meth:`encode` gives the signed bytes."""

    verdict: Verdict
    epoch: int
    seq: int
    slot: int
    market: bytes
    job: bytes
    definition: bytes
    result: bytes
    reply_key: bytes = _ZERO_KEY
    version: int = VERSION

    @property
    def flags(self) -> int:
        return FLAG_REPLY_KEY if self.reply_key != _ZERO_KEY else 0

    @property
    def reply_pubkey(self) -> str | None:
        """The reply key in base58, or ``None`` for a job not requested from chain."""
        return str(Pubkey(self.reply_key)) if self.flags & FLAG_REPLY_KEY else None

    def encode(self) -> bytes:
        """The 172 bytes of the layout (raises :class:`InvalidInput` on a bad field)."""
        for name, value, bits in (("epoch", self.epoch, 32), ("seq", self.seq, 64),
                                  ("slot", self.slot, 64)):
            if isinstance(value, bool) or not 0 <= value < 1 << bits:
                raise InvalidInput(f"receipt field {name} {value!r} is not a u{bits}")
        head = _HEADER.pack(MAGIC, self.version, int(self.verdict), self.flags, self.epoch,
                            self.seq, self.slot)
        return b"".join([head, _fixed("market", self.market, 16),
                         _fixed("job", self.job, 32),
                         _fixed("definition", self.definition, 32),
                         _fixed("result", self.result, 32),
                         _fixed("reply_key", self.reply_key, 32)])

    def describe(self) -> dict[str, Any]:
        """The fields as JSON-friendly values (hex digests, base58 reply key)."""
        return {"version": self.version, "verdict": self.verdict.label, "epoch": self.epoch,
                "seq": self.seq, "slot": self.slot, "market": self.market.hex(),
                "job": self.job.hex(), "definition": self.definition.hex(),
                "result": self.result.hex(), "reply_key": self.reply_pubkey}


def decode(raw: bytes) -> Receipt:
    """Parse the layout; :class:`InvalidInput` for anything that is not a v1 receipt."""
    if len(raw) != RECEIPT_LEN:
        raise InvalidReceipt(f"a receipt has {RECEIPT_LEN} bytes, not {len(raw)}")
    magic, version, verdict, flags, epoch, seq, slot = _HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise InvalidReceipt("not a nosgrid receipt (bad magic)")
    if version != VERSION:
        raise InvalidReceipt(f"receipt version {version} is not supported (this reads {VERSION})")
    try:
        kind = Verdict(verdict)
    except ValueError as exc:
        raise InvalidReceipt(f"unknown receipt verdict {verdict}") from exc
    reply = raw[140:172]
    if bool(flags & FLAG_REPLY_KEY) != (reply != _ZERO_KEY) or flags & ~FLAG_REPLY_KEY:
        raise InvalidReceipt(f"receipt flags {flags:#x} do not match its reply key")
    return Receipt(verdict=kind, epoch=epoch, seq=seq, slot=slot, market=raw[28:44],
                   job=raw[44:76], definition=raw[76:108], result=raw[108:140],
                   reply_key=reply, version=version)


@dataclass(frozen=True, slots=True)
class SignedReceipt:
    """A receipt with the attestor's signature over its bytes."""

    receipt: bytes
    signature: bytes
    attestor: str

    @property
    def parsed(self) -> Receipt:
        return decode(self.receipt)

    def wire(self) -> str:
        """``base64(signature ‖ receipt)``: the 236-byte form a memo carries."""
        return base64.b64encode(self.signature + self.receipt).decode()


def sign(receipt: Receipt, key: Keypair) -> SignedReceipt:
    """Sign ``receipt`` with the attestor key."""
    raw = receipt.encode()
    return SignedReceipt(raw, bytes(key.sign_message(raw)), str(key.pubkey()))


def signature_valid(message: bytes, signature: bytes, pubkey: str) -> bool:
    """Whether ``signature`` is ``pubkey``'s ed25519 signature of ``message``."""
    try:
        return Signature.from_bytes(signature).verify(Pubkey.from_string(pubkey), message)
    except (ValueError, TypeError):
        return False


def verify_receipt(raw: bytes, signature: bytes, attestor_pubkey: str) -> Receipt:
    """The parsed receipt if ``signature`` is the attestor's over ``raw``; else
    :class:`InvalidInput` (a receipt that does not verify is worth nothing)."""
    if len(signature) != SIGNATURE_LEN or not signature_valid(raw, signature, attestor_pubkey):
        raise InvalidReceipt(f"the receipt is not signed by attestor {attestor_pubkey}")
    return decode(raw)


def from_wire(text: str) -> tuple[bytes, bytes]:
    """``(receipt, signature)`` from :meth:`SignedReceipt.wire`."""
    try:
        blob = base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise InvalidReceipt("a wire receipt is base64 of signature ‖ receipt") from exc
    if len(blob) != SIGNATURE_LEN + RECEIPT_LEN:
        raise InvalidReceipt(f"a wire receipt has {SIGNATURE_LEN + RECEIPT_LEN} bytes, "
                           f"not {len(blob)}")
    return blob[SIGNATURE_LEN:], blob[:SIGNATURE_LEN]
