"""How the ledger mirrors the request vault (compute requested from chain).

The vault's address is the *client* of every job requested from chain: ``wallet:<vault>``
holds what was paid in and is not yet reserved by a job, refunded or paid out. So, like a
client's allowance (``mirror``)::

    vault balance on chain == wallet:<vault> + open escrows of its jobs
                              + unconfirmed payouts and refunds out of it

which ``reconcile`` (``nosgrid ledger verify --onchain``) checks. A payment the watcher
has not read yet shows as more on chain than the ledger counts: a note, not a problem.

Every function runs inside the caller's unit of work, beside the rows it explains.
"""

from __future__ import annotations

from typing import Final

from nosgrid.core.chain_requests import RefundReason
from nosgrid.core.ledger import Posting, wallet
from nosgrid.settlement.mirror import ONCHAIN, reserved_for
from nosgrid.settlement.requests import VaultPayment
from nosgrid.store.db import UnitOfWork
from nosgrid.store.outbox import OutboxKind, OutboxLeg, OutboxRepo
from nosgrid.store.receipts import ChainRefund, ChainRefundRepo, ChainRequestRepo

PAID_IN: Final = "chain.request"
REFUNDED: Final = "chain.refund"


def record_payment(uow: UnitOfWork, vault: str, payment: VaultPayment, now: int) -> bool:
    """Book a payment once: the request row and ``onchain → wallet:<vault>``; False (and
    nothing booked) if this signature was recorded before — a replay, or a re-read after
    a restart."""
    added = ChainRequestRepo(uow.conn).add(
        signature=payment.signature, payer=payment.authority, source=payment.source,
        amount=payment.amount, memo=payment.memo or "", slot=payment.slot, at=now)
    if added and payment.amount > 0:
        uow.ledger.append(PAID_IN, payment.signature, now,
                          [Posting(ONCHAIN, wallet(vault), payment.amount)],
                          {"payer": payment.authority, "source": payment.source})
    return added


def enqueue_refund(uow: UnitOfWork, vault: str, request_signature: str, amount: int,
                   reason: RefundReason, now: int, job_id: str | None = None) -> str | None:
    """Queue ``amount`` back to the request's source with a reason Memo; the entry hash
    (None for nothing to refund)."""
    if amount <= 0:
        return None
    request = ChainRequestRepo(uow.conn).get(request_signature)
    if request is None:
        raise LookupError(f"no chain request {request_signature}")
    entry = uow.ledger.append(REFUNDED, request_signature, now,
                              [Posting(wallet(vault), ONCHAIN, amount)],
                              {"reason": reason.value, "to": request.source})
    ChainRefundRepo(uow.conn).add(ChainRefund(entry.hash, request_signature, reason.value,
                                              amount, request.source), now)
    OutboxRepo(uow.conn).add(kind=OutboxKind.REFUND, entry_hash=entry.hash,
                             legs=[OutboxLeg(request.source, amount, wallet(vault))],
                             at=now, source=vault, job_id=job_id)
    return entry.hash


def expected_balance(uow: UnitOfWork, vault: str) -> int:
    """What the vault must hold on chain by the ledger (see the module docstring)."""
    return uow.ledger.balance(wallet(vault)) + reserved_for(uow, vault)
