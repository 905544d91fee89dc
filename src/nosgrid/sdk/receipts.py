"""Result receipts on the client side: the receipt parsed and raw, and its verification.

A receipt is the market's signed statement of how a job ended (``docs/composability.md``):
172 bytes signed with ed25519 by the market's attestor key. Check it against the key you
trust (``GET /v1/attestor`` gives the chain of keys from the market's first), never
against the key the coordinator's answer names.

Example::

    from nosgrid.sdk import Client, verify_receipt

    with Client() as c:
        got = c.receipt(job_id)
        receipt = verify_receipt(got.signed, TRUSTED_ATTESTOR)
        print(receipt.verdict.label, receipt.result.hex())
"""

from __future__ import annotations

from dataclasses import dataclass

from nosgrid.core import receipts as layout
from nosgrid.core.attestor import AttestorEpoch, key_of, verify_chain
from nosgrid.core.errors import InvalidReceipt
from nosgrid.core.receipts import RECEIPT_LEN, SIGNATURE_LEN, Receipt, Verdict, result_digest
from nosgrid.core.views import AttestorChainView, ReceiptView

__all__ = ["JobReceipt", "Receipt", "Verdict", "result_digest", "verify_receipt",
           "verify_with_chain"]


@dataclass(frozen=True)
class JobReceipt:
    """What :meth:`AsyncClient.receipt` returns: the raw bytes, the signature, the parsed
    fields and the coordinator's answer (``onchain``: the publishing transaction)."""

    raw: bytes
    signature: bytes
    parsed: Receipt
    view: ReceiptView

    @property
    def signed(self) -> bytes:
        """``signature ‖ receipt`` (236 bytes): what :func:`verify_receipt` takes."""
        return self.signature + self.raw

    @classmethod
    def from_view(cls, view: ReceiptView) -> JobReceipt:
        try:
            raw, signature = bytes.fromhex(view.receipt), bytes.fromhex(view.signature)
        except ValueError as exc:
            raise InvalidReceipt("the coordinator sent a receipt that is not hex") from exc
        return cls(raw, signature, layout.decode(raw), view)


def verify_receipt(data: bytes, attestor_pubkey: str, signature: bytes | None = None) -> Receipt:
    """The parsed receipt if it is signed by ``attestor_pubkey``; else :class:`InvalidReceipt`.

    ``data`` is ``signature ‖ receipt`` (236 bytes, :attr:`JobReceipt.signed`, the
    ``--raw`` output of ``nosgrid job receipt``), or the 172 receipt bytes with
    ``signature`` given apart.
    """
    if signature is None:
        if len(data) != SIGNATURE_LEN + RECEIPT_LEN:
            raise InvalidReceipt(f"a signed receipt has {SIGNATURE_LEN + RECEIPT_LEN} bytes "
                                 f"(signature then receipt), not {len(data)}")
        signature, data = data[:SIGNATURE_LEN], data[SIGNATURE_LEN:]
    return layout.verify_receipt(data, signature, attestor_pubkey)


def verify_with_chain(got: JobReceipt, chain: AttestorChainView,
                      first_key: str | None = None) -> tuple[Receipt, str]:
    """Verify ``got`` through the attestor key chain from ``first_key`` (the market's first
    attestor key, which you trust; None: the chain's own epoch 0, trust on first use).

    Returns the receipt and the key that signed it; :class:`InvalidReceipt` or
    :class:`~nosgrid.core.errors.BrokenAttestorChain` when it does not verify.
    """
    records = [AttestorEpoch(e.epoch, e.key, e.signature) for e in chain.epochs]
    if not records:
        raise InvalidReceipt("the coordinator publishes no attestor keys")
    verify_chain(records, first_key or records[0].key)
    key = key_of(records, got.parsed.epoch)
    return verify_receipt(got.signed, key), key
