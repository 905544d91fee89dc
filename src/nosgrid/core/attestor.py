"""The attestor key chain: which key signs receipts in each epoch, and why it is trusted.

The market's first attestor key (epoch 0) is published by the settlement authority. Each
rotation to epoch ``N`` is a record ``nosgrid attestor epoch=N key=<base58>`` signed by the
key of epoch ``N-1``; published as a Memo (``… sig=<base58>``), so anyone can follow the
chain from the first key and know which key signed a receipt of any epoch — a consuming
program only needs the current key, an auditor of old receipts the whole chain.

Pure: signing takes the key; :func:`verify_chain` takes the records.

>>> from solders.keypair import Keypair
>>> k0, k1 = Keypair(), Keypair()
>>> chain = [genesis(str(k0.pubkey())), rotate(0, k0, str(k1.pubkey()))]
>>> verify_chain(chain, str(k0.pubkey())) == str(k1.pubkey())
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from nosgrid.core.errors import BrokenAttestorChain, InvalidInput
from nosgrid.core.receipts import signature_valid

MEMO_KIND: Final = "attestor"


@dataclass(frozen=True, slots=True)
class AttestorEpoch:
    """The key of one epoch; ``signature`` is the previous key's over :attr:`statement`
    (empty for epoch 0, which the settlement authority vouches for by publishing it)."""

    epoch: int
    key: str
    signature: str = ""

    @property
    def statement(self) -> bytes:
        """What the previous key signs: ``nosgrid attestor epoch=N key=K``."""
        return f"nosgrid {MEMO_KIND} epoch={self.epoch} key={self.key}".encode()

    def memo(self) -> str:
        """The Memo text that publishes this epoch."""
        text = self.statement.decode()
        return f"{text} sig={self.signature}" if self.signature else text


def _check_key(key: str) -> str:
    try:
        Pubkey.from_string(key)
    except ValueError as exc:
        raise InvalidInput(f"attestor key {key!r} is not a base58 public key") from exc
    return key


def genesis(key: str) -> AttestorEpoch:
    """Epoch 0: the market's first attestor key."""
    return AttestorEpoch(0, _check_key(key))


def rotate(current_epoch: int, current_key: Keypair, new_key: str) -> AttestorEpoch:
    """The record moving from ``current_epoch`` (signed by its key) to ``new_key``."""
    record = AttestorEpoch(current_epoch + 1, _check_key(new_key))
    return AttestorEpoch(record.epoch, record.key,
                         str(current_key.sign_message(record.statement)))


def parse_memo(text: str) -> AttestorEpoch:
    """The record of an attestor Memo (the inverse of :meth:`AttestorEpoch.memo`)."""
    parts = text.split(" ")
    fields = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
    if parts[:2] != ["nosgrid", MEMO_KIND] or "epoch" not in fields or "key" not in fields:
        raise InvalidInput(f"{text!r} is not an attestor memo")
    try:
        epoch = int(fields["epoch"])
    except ValueError as exc:
        raise InvalidInput(f"attestor memo epoch {fields['epoch']!r} is not a number") from exc
    return AttestorEpoch(epoch, _check_key(fields["key"]), fields.get("sig", ""))


def verify_chain(records: Sequence[AttestorEpoch], first_key: str) -> str:
    """The key of the last epoch, if every record follows from ``first_key``.

    Raises :class:`BrokenAttestorChain` naming the first epoch that does not: a gap, a first key
    other than ``first_key``, or a rotation not signed by the key before it.
    """
    ordered = sorted(records, key=lambda r: r.epoch)
    if not ordered or ordered[0].epoch != 0 or ordered[0].key != first_key:
        raise BrokenAttestorChain(f"the chain must start at epoch 0 with key {first_key}")
    key = first_key
    for expected, record in enumerate(ordered):
        if record.epoch != expected:
            raise BrokenAttestorChain(f"epoch {expected} is missing (found {record.epoch})",
                                      epoch=expected)
        if expected == 0:
            continue
        try:
            sig = bytes(Signature.from_string(record.signature))
        except ValueError:
            sig = b""
        if not signature_valid(record.statement, sig, key):
            raise BrokenAttestorChain(f"epoch {record.epoch} (key {record.key}) is not signed "
                                      f"by the key of epoch {expected - 1}",
                                      epoch=record.epoch)
        key = record.key
    return key


def key_of(records: Sequence[AttestorEpoch], epoch: int) -> str:
    """The key that signed receipts of ``epoch`` (records already verified)."""
    for record in records:
        if record.epoch == epoch:
            return record.key
    raise InvalidInput(f"no attestor epoch {epoch}; known: {sorted(r.epoch for r in records)}")
