"""Jobs requested from chain: post the job a vault payment asks for, or refund it.

The watcher (``coordinator/chain_watcher.py``) records each payment into the request vault
first (``settlement.request_vault.record_payment``, with its cursor, in one transaction);
:func:`process_request` then turns one recorded request into a posted job **or** a queued
refund with a reason, in one transaction that also marks the request. A crash between the
two leaves the request ``seen``, and the next pass does it: nothing lost, nothing twice.

The job's client is the vault itself (its payouts leave the vault); it pays at most what
the definition's own ``max_price`` at most, and a payment short of the job's full deposit (price ×
timeout) is refunded as ``price_too_low`` rather than run with less time than asked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from nosgrid.coordinator.services import jobs as job_services
from nosgrid.coordinator.services import pricing
from nosgrid.core.chain_requests import (
    MAX_INLINE_BYTES,
    BadRequest,
    RefundReason,
    RequestMemo,
    check_payment,
    parse_request_memo,
)
from nosgrid.core.errors import InvalidJobSpec, MarketNotFound, NosgridError, NotFound
from nosgrid.core.events import JobCompleted
from nosgrid.core.jobs.load import load_job_definition
from nosgrid.core.jobs.spec import JobDefinition
from nosgrid.core.jobs.state import Job
from nosgrid.core.jobs.terms import requested_market, terms_of
from nosgrid.core.pricing import DEFAULT_ORACLE, OracleParams
from nosgrid.core.views import ChainRefundView, ChainRequestView
from nosgrid.settlement import request_vault
from nosgrid.store.db import UnitOfWork
from nosgrid.store.outbox import OutboxKind, OutboxRepo, OutboxStatus
from nosgrid.store.receipts import ChainRefundRepo, ChainRequest, ChainRequestRepo, RequestStatus

DefinitionSource = Callable[[str], bytes | None]
"""sha256 hex → the stored definition's bytes (a blob), or None."""


def _definition(uow: UnitOfWork, memo: RequestMemo, blobs: DefinitionSource) -> JobDefinition:
    if memo.inline is not None:
        if len(memo.inline) > MAX_INLINE_BYTES:
            raise BadRequest(RefundReason.BAD_MEMO, f"an inline definition is at most "
                             f"{MAX_INLINE_BYTES} bytes; store it as a blob and name it")
        data = memo.inline
    else:
        sha = memo.definition_sha256 or ""
        stored = uow.jobs.spec(sha)  # a definition posted before, by its content address
        found = stored.encode() if stored is not None else blobs(sha)
        if found is None:
            raise BadRequest(RefundReason.UNKNOWN_DEFINITION,
                             f"no definition {sha} is stored; upload it as a blob first")
        data = found
        if stored is None and hashlib.sha256(data).hexdigest() != sha:
            raise BadRequest(RefundReason.UNKNOWN_DEFINITION, f"blob {sha} does not match")
    try:
        return load_job_definition(data)
    except InvalidJobSpec as exc:
        raise BadRequest(RefundReason.INVALID_DEFINITION, exc.message) from exc


def _deposit_needed(uow: UnitOfWork, defn: JobDefinition, memo: RequestMemo, now: int,
                    default_market: str | None, oracle: OracleParams) -> int:
    """The job's full deposit (price × timeout × runs) at today's price, before posting."""
    choice = requested_market(defn, memo.market, default=default_market,
                              markets=uow.markets.names())
    params = uow.markets.find(choice.name)
    if params is None:
        raise BadRequest(RefundReason.UNKNOWN_MARKET, f"no market {choice.name!r}")
    params, _rate = pricing.charged_market(uow, params, now, oracle)
    terms = terms_of(defn, market=choice.name, max_timeout=params.max_timeout,
                     timeout=memo.timeout)
    return params.price_per_second * terms.timeout * terms.replicas


def process_request(uow: UnitOfWork, vault: str, signature: str, now: int, *,
                    blobs: DefinitionSource, default_market: str | None = None,
                    oracle: OracleParams = DEFAULT_ORACLE) -> Job | None:
    """Post the job the request paid by ``signature`` asks for (refunding what it does not
    need), or refund it whole with the reason. Returns the job; None when it was refunded
    or was no longer waiting (another process acted on it first)."""
    repo = ChainRequestRepo(uow.conn)
    request = repo.claim(signature)
    if request is None:
        return None
    try:
        memo = parse_request_memo(request.memo)
        defn = _definition(uow, memo, blobs)
        check_payment(request.amount,
                      _deposit_needed(uow, defn, memo, now, default_market, oracle))
        job, _choice = job_services.post_job_in(
            uow, client=vault, definition=defn, now=now, market=memo.market,
            timeout=memo.timeout, default_market=default_market, oracle=oracle)
    except NosgridError as err:  # nothing was posted: the use case changes state last
        reason = (err.reason if isinstance(err, BadRequest)
                  else RefundReason.UNKNOWN_MARKET if isinstance(err, MarketNotFound)
                  else RefundReason.CANNOT_POST)
        repo.mark(request.signature, RequestStatus.REFUNDING, now, reason=err.message)
        request_vault.enqueue_refund(uow, vault, request.signature, request.amount, reason,
                                     now)
        return None
    repo.mark(request.signature, RequestStatus.POSTED, now, job_id=job.id,
              reply_key=memo.reply_key)
    runs = job.terms.replicas if job.terms is not None else 1
    request_vault.enqueue_refund(uow, vault, request.signature,
                                 request.amount - job.deposit * runs, RefundReason.UNUSED, now,
                                 job_id=job.id)
    return job


def on_job_completed(uow: UnitOfWork, event: JobCompleted) -> None:
    """A job requested from chain delivered: its output blobs become readable by the key
    that paid and by the reply key (its client, the vault, can sign for nothing)."""
    request = ChainRequestRepo(uow.conn).for_job(event.job_id)
    if request is None:
        return
    outputs = uow.jobs.get(event.job_id).result.get("outputs") or []
    for output in outputs if isinstance(outputs, list) else []:
        if isinstance(output, dict) and "sha256" in output:
            for reader in {request.payer, request.reply_key or request.payer}:
                uow.blobs.grant(str(output["sha256"]), reader)


def pending(uow: UnitOfWork) -> list[ChainRequest]:
    """Requests recorded but not yet posted or refunded (after a crash, too)."""
    return ChainRequestRepo(uow.conn).in_status(RequestStatus.SEEN)


def request_view(uow: UnitOfWork, signature: str) -> ChainRequestView:
    """What ``GET /v1/requests/{signature}`` answers."""
    request = ChainRequestRepo(uow.conn).get(signature)
    if request is None:
        raise NotFound(f"no request paid by transaction {signature} has been read (yet); "
                       "the watcher reads the vault every second or so")
    refunds = []
    for refund in ChainRefundRepo(uow.conn).for_request(signature):
        row = OutboxRepo(uow.conn).by_entry(OutboxKind.REFUND, refund.entry_hash)
        refunds.append(ChainRefundView(
            amount=refund.amount, reason=refund.reason,
            onchain=row.signature if row is not None and row.status is OutboxStatus.CONFIRMED
            else None))
    job = uow.jobs.get(request.job_id) if request.job_id else None
    status = request.status
    if status is RequestStatus.REFUNDING and refunds and all(r.onchain for r in refunds):
        status = RequestStatus.REFUNDED  # the refund landed
    return ChainRequestView(
        signature=signature, payer=request.payer, source=request.source,
        amount=request.amount, status=status.value, job_id=request.job_id,
        job_state=job.state.value if job is not None else None, reply_key=request.reply_key,
        reason=request.reason, refunds=refunds,
        result=dict(job.result) if job is not None and job.result else None)
