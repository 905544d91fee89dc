"""Receipts on chain: Ed25519 signature-check instructions and Memos, packed into batches.

A published batch is one transaction ``[Ed25519 signature check over N receipts, Memo
"nosgrid receipt <base64> <base64> ..."]``. The Ed25519 program is a precompile: the
runtime verifies every signature of the instruction before anything runs and rejects the
whole transaction if one fails, so a receipt that landed is one the chain checked. The
Memo makes the receipts readable from the transaction's logs. Pure builders; sending is
the outbox sender's.

The instruction data (the runtime's layout, little-endian)::

    u8 count, u8 padding,
    count × {u16 signature_offset, u16 signature_ix (0xFFFF: this one),
             u16 pubkey_offset, u16 pubkey_ix, u16 message_offset, u16 message_size,
             u16 message_ix},
    then the public keys (each once), and per receipt its signature and its message.

>>> from solders.keypair import Keypair
>>> from nosgrid.core import receipts as r
>>> key = Keypair()
>>> signed = r.sign(r.Receipt(verdict=r.Verdict.SETTLED, epoch=0, seq=1, slot=0,
...     market=r.market_digest("cpu"), job=r.job_digest("j"), definition=bytes(32),
...     result=bytes(32)), key)
>>> ix = ed25519_instruction([signed])
>>> [s.receipt for s in parse_ed25519(bytes(ix.data))] == [signed.receipt]
True
>>> payer = Keypair().pubkey()
>>> [len(batch) for batch, _ixs in pack([signed] * 5, payer)]
[2, 2, 1]
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from typing import Final

from solders.instruction import Instruction
from solders.pubkey import Pubkey

from nosgrid.core.errors import InvalidInput
from nosgrid.core.receipts import RECEIPT_LEN, SIGNATURE_LEN, SignedReceipt
from nosgrid.settlement import spl

ED25519_PROGRAM_ID: Final = Pubkey.from_string("Ed25519SigVerify111111111111111111111111111")
#: the instruction index meaning "this instruction" in the Ed25519 offsets
THIS_INSTRUCTION: Final = 0xFFFF
MEMO_PREFIX: Final = "nosgrid receipt"
_OFFSETS: Final = struct.Struct("<HHHHHHH")
_HEADER_LEN: Final = 2
_PUBKEY_LEN: Final = 32


def ed25519_instruction(receipts: Sequence[SignedReceipt]) -> Instruction:
    """One signature-check instruction over ``receipts`` (each attestor key stored once)."""
    if not receipts:
        raise InvalidInput("a signature check needs at least one receipt")
    if len(receipts) > 255:
        raise InvalidInput("one Ed25519 instruction checks at most 255 signatures")
    keys: list[bytes] = []
    for signed in receipts:
        key = bytes(spl.to_pubkey(signed.attestor))
        if key not in keys:
            keys.append(key)
    key_start = _HEADER_LEN + _OFFSETS.size * len(receipts)
    cursor = key_start + _PUBKEY_LEN * len(keys)
    offsets, bodies = [], []
    for signed in receipts:
        key_at = key_start + _PUBKEY_LEN * keys.index(bytes(spl.to_pubkey(signed.attestor)))
        offsets.append(_OFFSETS.pack(cursor, THIS_INSTRUCTION, key_at, THIS_INSTRUCTION,
                                     cursor + SIGNATURE_LEN, len(signed.receipt),
                                     THIS_INSTRUCTION))
        bodies.append(signed.signature + signed.receipt)
        cursor += SIGNATURE_LEN + len(signed.receipt)
    data = bytes([len(receipts), 0]) + b"".join(offsets) + b"".join(keys) + b"".join(bodies)
    return Instruction(ED25519_PROGRAM_ID, data, [])


def parse_ed25519(data: bytes) -> list[SignedReceipt]:
    """The receipts an Ed25519 instruction (built by :func:`ed25519_instruction`, or any
    whose offsets point into itself) checks; :class:`InvalidInput` if it is malformed."""
    if len(data) < _HEADER_LEN:
        raise InvalidInput("an Ed25519 instruction starts with a count")
    out = []
    for i in range(data[0]):
        start = _HEADER_LEN + i * _OFFSETS.size
        if start + _OFFSETS.size > len(data):
            raise InvalidInput("Ed25519 instruction offsets run past its data")
        sig_at, sig_ix, key_at, key_ix, msg_at, msg_len, msg_ix = _OFFSETS.unpack_from(data,
                                                                                    start)
        if {sig_ix, key_ix, msg_ix} != {THIS_INSTRUCTION}:
            raise InvalidInput("the Ed25519 instruction points into another instruction")
        if max(sig_at + SIGNATURE_LEN, key_at + _PUBKEY_LEN, msg_at + msg_len) > len(data):
            raise InvalidInput("Ed25519 instruction offsets run past its data")
        out.append(SignedReceipt(data[msg_at:msg_at + msg_len],
                                 data[sig_at:sig_at + SIGNATURE_LEN],
                                 str(Pubkey(data[key_at:key_at + _PUBKEY_LEN]))))
    return out


def memo_text(receipts: Sequence[SignedReceipt]) -> str:
    """``nosgrid receipt <base64 of each receipt's 172 bytes> ...``."""
    return " ".join([MEMO_PREFIX, *(base64.b64encode(s.receipt).decode() for s in receipts)])


def receipts_in_memo(text: str) -> list[bytes]:
    """The receipt bytes of a receipt Memo (the inverse of :func:`memo_text`)."""
    if not text.startswith(MEMO_PREFIX + " "):
        raise InvalidInput(f"{text[:40]!r}… is not a receipt memo")
    out = []
    for part in text[len(MEMO_PREFIX) + 1:].split(" "):
        raw = base64.b64decode(part, validate=True)
        if len(raw) != RECEIPT_LEN:
            raise InvalidInput(f"a memo receipt has {len(raw)} bytes, not {RECEIPT_LEN}")
        out.append(raw)
    return out


def receipts_in_logs(logs: Sequence[str]) -> list[bytes]:
    """Receipt bytes from a transaction's program logs (the Memo program logs its text as
    ``Program log: <text>``, after ``Program log: Memo (len N)``)."""
    out: list[bytes] = []
    marker = f"Program log: {MEMO_PREFIX} "
    for line in logs:
        if line.startswith(marker):
            out.extend(receipts_in_memo(line[len("Program log: "):]))
    return out


def batch_instructions(receipts: Sequence[SignedReceipt]) -> list[Instruction]:
    """The two instructions that publish ``receipts`` together."""
    return [ed25519_instruction(receipts), spl.memo_instruction(memo_text(receipts))]


def pack(receipts: Sequence[SignedReceipt], payer: Pubkey,
         max_size: int = spl.MAX_TRANSACTION_SIZE
         ) -> list[tuple[list[SignedReceipt], list[Instruction]]]:
    """As many receipts per transaction as fit ``max_size`` bytes, in order (two of layout
    v1 per 1,232-byte legacy transaction with one attestor key)."""
    batches: list[tuple[list[SignedReceipt], list[Instruction]]] = []
    current: list[SignedReceipt] = []
    for signed in receipts:
        if current and spl.transaction_size(batch_instructions([*current, signed]),
                                             payer) <= max_size:
            current.append(signed)
            continue
        if current:
            batches.append((current, batch_instructions(current)))
        if spl.transaction_size(batch_instructions([signed]), payer) > max_size:
            raise InvalidInput(f"one receipt does not fit a {max_size}-byte transaction")
        current = [signed]
    if current:
        batches.append((current, batch_instructions(current)))
    return batches
