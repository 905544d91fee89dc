"""Issuing result receipts: the handlers of ``JobSettled`` and ``JobHeldForAudit``.

A receipt is written in the transaction that settled (or held) the job, so it exists
exactly when that did; ``ReceiptIssued`` follows for whoever publishes it (the Solana
backend queues it in the outbox). Only jobs that delivered a result get one: a failed,
cancelled or timed-out job has no result for a program to consume. Verification runs are
the market's own business and get none.

Which verdict (``core.receipts.Verdict``): an ``AuditVerdictReached`` for the job earlier in
the same transaction decides it (``agreed``, or a dispute's verdict); without one the job
settled unaudited (``settled``). A job held for audit gets ``held`` at once, then its
final receipt when the verification ends.
"""

from __future__ import annotations

from collections.abc import Callable

from solders.pubkey import Pubkey

from nosgrid.coordinator.attestor_keys import AttestorKeys
from nosgrid.core import receipts as rules
from nosgrid.core.errors import ReceiptNotFound
from nosgrid.core.events import AuditVerdictReached, JobHeldForAudit, JobSettled, ReceiptIssued
from nosgrid.core.jobs.state import Job, Outcome
from nosgrid.core.views import AttestorChainView, AttestorEpochView, ReceiptFields, ReceiptView
from nosgrid.store.db import Handlers, UnitOfWork
from nosgrid.store.outbox import OutboxKind, OutboxRepo, OutboxStatus
from nosgrid.store.receipts import AttestorRepo, ChainRequestRepo, ReceiptRepo, StoredReceipt

#: outcomes whose job has a result a receipt can name
WITH_RESULT = (Outcome.COMPLETED, Outcome.REJECTED)


class ReceiptIssuer:
    """Signs receipts with the current attestor key. ``slot`` gives the chain slot the
    coordinator last saw (0 under local settlement; the Solana backend sets it)."""

    def __init__(self, keys: AttestorKeys, slot: Callable[[], int] = lambda: 0) -> None:
        self.keys = keys
        self.slot = slot

    def register(self, handlers: Handlers) -> Handlers:
        handlers.on(JobSettled, self.on_job_settled)
        handlers.on(JobHeldForAudit, self.on_job_held)
        return handlers

    def on_job_settled(self, uow: UnitOfWork, event: JobSettled) -> None:
        job = event.job
        if job.outcome not in WITH_RESULT or uow.verification.run(job.id) is not None:
            return
        verdicts = [e for e in uow.events
                    if isinstance(e, AuditVerdictReached) and e.job_id == job.id]
        verdict = (rules.Verdict.from_dispute(verdicts[-1].verdict) if verdicts
                   else rules.Verdict.SETTLED)
        seq = event.entry.seq if event.entry is not None else self._head(uow)
        self.issue(uow, job, verdict, seq, event.at)

    def on_job_held(self, uow: UnitOfWork, event: JobHeldForAudit) -> None:
        if uow.verification.run(event.job_id) is not None:
            return  # a client-paid replica held until the verdict: not a result of its own
        self.issue(uow, uow.jobs.get(event.job_id), rules.Verdict.HELD, self._head(uow),
                   event.at)

    def issue(self, uow: UnitOfWork, job: Job, verdict: rules.Verdict, seq: int,
              now: int) -> int | None:
        """Sign and store the job's receipt with ``verdict`` (once per verdict)."""
        epoch, key = self.keys.current(uow, now)
        request = ChainRequestRepo(uow.conn).for_job(job.id)
        reply = (bytes(Pubkey.from_string(request.reply_key))
                 if request is not None and request.reply_key else bytes(32))
        receipt = rules.Receipt(
            verdict=verdict, epoch=epoch.epoch, seq=seq, slot=self.slot(),
            market=rules.market_digest(job.market), job=rules.job_digest(job.id),
            definition=bytes.fromhex(job.spec_hash), result=rules.result_digest(job.result),
            reply_key=reply)
        receipt_id = ReceiptRepo(uow.conn).add(job_id=job.id, verdict=verdict.label, seq=seq,
                                               epoch=epoch.epoch,
                                               signed=rules.sign(receipt, key), at=now)
        if receipt_id is not None:
            uow.publish(ReceiptIssued(at=now, job_id=job.id, receipt_id=receipt_id,
                                      verdict=verdict.label))
        return receipt_id

    @staticmethod
    def _head(uow: UnitOfWork) -> int:
        head = uow.ledger.head()
        return 0 if head is None else head[0]


def receipt_of(uow: UnitOfWork, job_id: str) -> tuple[StoredReceipt, list[StoredReceipt]]:
    """The job's current receipt (the newest) and all of them; typed errors if none."""
    found = ReceiptRepo(uow.conn).for_job(job_id)
    if not found:
        uow.jobs.get(job_id)  # JobNotFound for a job that does not exist
        raise ReceiptNotFound(f"job {job_id} has no receipt yet: it is issued when the job "
                              "settles with a result or is held for audit")
    return found[-1], found


def receipt_view(uow: UnitOfWork, job_id: str) -> ReceiptView:
    """What ``GET /v1/jobs/{id}/receipt`` answers."""
    current, every = receipt_of(uow, job_id)
    signed = current.signed
    published = [r for r in OutboxRepo(uow.conn).for_job(job_id)
                 if r.kind is OutboxKind.RECEIPT and r.seq == current.id
                 and r.status is OutboxStatus.CONFIRMED]
    return ReceiptView(job_id=job_id, verdict=current.verdict, attestor=signed.attestor,
                       receipt=signed.receipt.hex(), signature=signed.signature.hex(),
                       fields=ReceiptFields.model_validate(signed.parsed.describe()),
                       onchain=published[0].signature if published else None,
                       earlier=[r.verdict for r in every[:-1]])


def chain_view(uow: UnitOfWork) -> AttestorChainView:
    """What ``GET /v1/attestor`` answers."""
    epochs = [AttestorEpochView(epoch=e.epoch, key=e.key, signature=e.signature)
              for e in AttestorRepo(uow.conn).epochs()]
    return AttestorChainView(current=epochs[-1] if epochs else None, epochs=epochs)
