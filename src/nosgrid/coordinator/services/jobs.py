"""Job use cases: each loads through a unit of work, calls a rule, and saves.

Every function here runs inside the caller's :class:`~nosgrid.store.db.UnitOfWork`; the
caller commits. A rule that raises leaves the transaction to be rolled back, so bad input
never changes state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from nosgrid.coordinator.services import audit_runs, economics, pricing, verification
from nosgrid.coordinator.services.lifecycle import (
    assign_to,
    new_job_id,
    record,
)
from nosgrid.core.errors import (
    Forbidden,
    IllegalTransition,
    InsufficientFunds,
    InvalidInput,
    MarketNotFound,
    RateLimited,
)
from nosgrid.core.events import Fault, JobQueued, MarketCreated
from nosgrid.core.jobs import queueing
from nosgrid.core.jobs import state as rules
from nosgrid.core.jobs.load import canonical_json, spec_hash
from nosgrid.core.jobs.spec import JobDefinition
from nosgrid.core.jobs.state import Job, JobState
from nosgrid.core.jobs.terms import MarketChoice, requested_market, terms_of
from nosgrid.core.ledger import wallet
from nosgrid.core.markets import MarketParams, Matcher
from nosgrid.core.money import format_nos
from nosgrid.core.pricing import DEFAULT_ORACLE, OracleParams
from nosgrid.core.slashing import Offence, may_take_jobs
from nosgrid.store.db import UnitOfWork


def create_market(uow: UnitOfWork, market: MarketParams, now: int) -> MarketParams:
    """Add a market; the registered nodes that qualify for it join it (``MarketCreated``)."""
    uow.markets.add(market, now)
    uow.publish(MarketCreated(at=now, market=market.name))
    return market


def post_job(
    uow: UnitOfWork,
    *,
    client: str,
    definition: JobDefinition,
    now: int,
    market: str | None = None,
    timeout: int | None = None,
    max_price: int | None = None,
    job_id: str | None = None,
    default_market: str | None = None,
    oracle: OracleParams = DEFAULT_ORACLE,
    max_queued: int = 1_000,
) -> Job:
    """Escrow the deposit and queue a validated definition under its terms (the request's
    market, timeout and max price over the definition's). Raises InsufficientFunds if the
    wallet is short. :func:`post_job_in` also says how the market was chosen."""
    return post_job_in(uow, client=client, definition=definition, now=now, market=market,
                       timeout=timeout, max_price=max_price, job_id=job_id,
                       default_market=default_market, oracle=oracle,
                       max_queued=max_queued)[0]


def post_job_in(
    uow: UnitOfWork,
    *,
    client: str,
    definition: JobDefinition,
    now: int,
    market: str | None = None,
    timeout: int | None = None,
    max_price: int | None = None,
    job_id: str | None = None,
    default_market: str | None = None,
    oracle: OracleParams = DEFAULT_ORACLE,
    max_queued: int = 1_000,
) -> tuple[Job, MarketChoice]:
    """:func:`post_job`, and the market it went to and why: the request's, else the
    definition's, else ``default_market`` (the coordinator's), else the only market.

    A market quoted in USD charges its USD price at the price oracle's NOS/USD rate of
    the newest published epoch, recorded as ``terms.nos_usd_rate`` (no rate: its
    configured NOS price, and the job's rate stays None).

    The market's posting fee goes to the treasury and is never refunded; a client with
    ``max_queued`` jobs waiting already is refused (``RateLimited``); the job's place in
    the queue gets a bounded head start from what it offers and its client's record
    (``core.jobs.queueing``: an old job is never starved)."""
    choice = requested_market(definition, market, default=default_market,
                              markets=uow.markets.names())
    params = uow.markets.find(choice.name)
    if params is None:
        raise MarketNotFound(f"no market {choice.name!r} ({choice.why}); `nosgrid market "
                             "list` shows the markets")
    name = choice.name
    meta = definition.meta.nosgrid if definition.meta and definition.meta.nosgrid else None
    if (problem := params.network_problem(meta.network if meta else "none")) is not None:
        raise InvalidInput(problem)
    # a market quoted in USD: its price now, at the oracle's NOS/USD rate (recorded)
    params, rate = pricing.charged_market(uow, params, now, oracle)
    terms = replace(terms_of(definition, market=name, max_timeout=params.max_timeout,
                             timeout=timeout, max_price=max_price), nos_usd_rate=rate,
                    posting_fee=params.posting_fee)
    queued = uow.jobs.queued_of(client)
    if queued >= max_queued:
        raise RateLimited(f"you have {queued} jobs queued, the most a client may have "
                          "waiting; wait for some to start or cancel some",
                          queued=queued, cap=max_queued)
    full = params.price_per_second * terms.timeout
    terms = replace(terms, head_start=queueing.head_start(
        offered=queueing.offered_share(params.deposit_for(terms.timeout, terms.max_price),
                                       full),
        client_reputation=queueing.client_reputation(*uow.jobs.client_record(client))))
    for sha in terms.inputs:
        if not uow.blobs.may_read(sha, client):
            raise InvalidInput(f"input blob {sha} is not uploaded by you; upload it first "
                               "(SDK: upload_blob)")
    digest = spec_hash(definition)
    tr = rules.post(job_id=job_id or new_job_id(), client=client, market=params,
                    spec_hash=digest, terms=terms, now=now)
    needed = tr.job.deposit * terms.replicas + terms.posting_fee
    uow.settlement.check_post(uow, client, needed)
    have = uow.ledger.balance(wallet(client))
    if have < needed:
        runs = f" × {terms.replicas} replicas" if terms.replicas > 1 else ""
        fee = (f" + a posting fee of {format_nos(terms.posting_fee)} NOS"
               if terms.posting_fee else "")
        raise InsufficientFunds(
            f"posting needs a deposit of {format_nos(needed)} NOS "
            f"({format_nos(params.price_per_second)} NOS/s × {terms.timeout}s{runs}{fee}) but "
            f"the wallet holds {format_nos(have)} NOS; top up with `nosgrid faucet` or lower "
            "the timeout", needed=needed, balance=have,
        )
    uow.jobs.put_spec(digest, canonical_json(definition).decode())
    return record(uow, tr, kind="job.posted", new=True), choice


def assign_next(uow: UnitOfWork, node_id: str, markets: Sequence[str], now: int) -> Job | None:
    """Hand the oldest queued job in one of ``markets`` to ``node_id``, if it may take it."""
    account, history = uow.economics.stake(node_id), uow.economics.offences(node_id)
    allowed = [name for name in markets
               if (m := uow.markets.find(name)) is not None
               and may_take_jobs(account, history, m, now)]
    job = uow.jobs.oldest_queued(allowed) if allowed else None
    return None if job is None else assign_to(uow, job, node_id, now)


def dispatch(uow: UnitOfWork, job: Job, now: int, matcher: Matcher) -> Job:
    """Offer a freshly queued job to the idle nodes of its market, weighted by the matcher.

    The seed comes from the ledger head and the job id, so anyone can recompute the pick.
    With nobody waiting the job stays queued for the next node that polls.
    """
    market = uow.markets.get(job.market)
    pool = tuple(economics.candidates(uow, market, now))
    head = uow.ledger.head()
    chosen = matcher.pick(pool, economics.dispatch_seed(job.id, head[1] if head else ""))
    if chosen is None:
        uow.publish(JobQueued(at=now, job_id=job.id, market=job.market))
        return job
    return assign_to(uow, job, chosen.node_id, now)


def _node_job(uow: UnitOfWork, job_id: str, node_id: str) -> Job:
    job = uow.jobs.get(job_id)
    if job.node != node_id:
        raise Forbidden(f"job {job_id} is not assigned to this node")
    return job


def start_job(uow: UnitOfWork, job_id: str, node_id: str, now: int) -> Job:
    return record(uow, rules.start(_node_job(uow, job_id, node_id), now), kind="job.started")


def finish_job(uow: UnitOfWork, job_id: str, node_id: str, now: int, *,
               seconds_used: int | None, result: dict[str, object]) -> Job:
    """The node reports success; the job completes and settles at once, or is held for audit
    when its spec asks for verification (see ``services.verification``)."""
    client = uow.jobs.get(job_id).client
    outputs = result.get("outputs") or []
    for output in outputs if isinstance(outputs, list) else []:
        uow.blobs.grant(str(output["sha256"]), client)
    job = record(uow, rules.complete(_node_job(uow, job_id, node_id), now, seconds_used, result),
                 kind="job.completed")
    return verification.hold_if_verified(uow, job, now) or settle_job(uow, job, now)


def fail_job(uow: UnitOfWork, job_id: str, node_id: str, now: int, *, fault: Fault,
             reason: str, seconds_used: int | None = None, timed_out: bool = False) -> Job:
    job = _node_job(uow, job_id, node_id)
    tr = (rules.time_out(job, now, fault=fault) if timed_out
          else rules.fail(job, now, fault=fault, reason=reason, seconds_used=seconds_used))
    settled = settle_job(uow, record(uow, tr, kind="job.failed"), now)
    if fault == "node":  # the node took the job and could not or would not run it
        _slash(uow, settled, Offence.ABANDONED_JOB, now)
    return settled


def cancel_job(uow: UnitOfWork, job_id: str, client: str, now: int) -> Job:
    job = uow.jobs.get(job_id)
    if job.client != client:
        raise Forbidden(f"job {job_id} belongs to another key")
    if not rules.can(job, "cancel"):
        raise IllegalTransition(f"job {job_id} is already {job.state.value}; nothing to cancel")
    if uow.verification.run(job_id) is not None:
        raise Forbidden(f"job {job_id} is a verification run of one of your jobs; it cannot "
                        "be cancelled")
    return settle_job(uow, record(uow, rules.cancel(job, now), kind="job.cancelled"), now)


def extend_job(uow: UnitOfWork, job_id: str, client: str, seconds: int, now: int) -> Job:
    """Give the client's open job ``seconds`` more, escrowing price × ``seconds`` more;
    the node reads the new timeout from the job. Raises (changing nothing) for another's
    job, an ended job, or a wallet that cannot pay."""
    job = uow.jobs.get(job_id)
    if job.client != client:
        raise Forbidden(f"job {job_id} belongs to another key")
    tr = rules.extend(job, uow.markets.get(job.market), seconds, now)
    added = tr.job.deposit - job.deposit
    uow.settlement.check_post(uow, client, added)
    have = uow.ledger.balance(wallet(client))
    if have < added:
        raise InsufficientFunds(
            f"extending by {seconds}s escrows {format_nos(added)} NOS more "
            f"({format_nos(job.price_per_second)} NOS/s) but the wallet holds "
            f"{format_nos(have)} NOS", needed=added, balance=have)
    return record(uow, tr, kind="job.extended")


def settle_job(uow: UnitOfWork, job: Job, now: int) -> Job:
    """Pay out a finished job; a verification run settles as a run (see ``audit_runs``).

    The handlers of ``JobSettled`` do the rest in this transaction: the settlement
    backend's payout, the stakers' fee and the node's reputation, the unused replicas
    reserve back to the client.
    """
    run = audit_runs.settle_run(uow, job, now)
    if run is not None:
        return run
    return record(uow, rules.settle(job, now), kind="job.settled")


def _slash(uow: UnitOfWork, job: Job, offence: Offence, now: int) -> None:
    """Slash the job's node, citing the job and its settle entry as evidence."""
    last = uow.ledger.last_entry
    evidence = last.hash if last is not None and last.ref == job.id else ""
    economics.slash_for(uow, job, offence, now, journal_hash=evidence)


def requeue_or_refund(uow: UnitOfWork, job: Job, now: int, reason: str,
                      max_attempts: int = 3) -> Job:
    """A job whose node vanished goes back to the queue, or is refunded after max attempts."""
    if job.attempts < max_attempts:
        _slash(uow, job, Offence.MISSED_HEARTBEATS, now)
        return record(uow, rules.requeue(job, now, reason), kind="job.requeued")
    settled = settle_job(uow, record(uow, rules.time_out(job, now, fault="node"),
                                     kind="job.failed"), now)
    _slash(uow, settled, Offence.MISSED_HEARTBEATS, now)
    return settled


def expire_overdue(uow: UnitOfWork, now: int, grace: int = 30) -> list[Job]:
    """Jobs running past their deadline (+ grace for the node's report) end as timed out.

    The node never reported, so it is the node's fault: full refund.
    """
    ended = []
    for job in uow.jobs.in_states([JobState.RUNNING]):
        if job.deadline is not None and now > job.deadline + grace:
            tr = rules.time_out(job, now, fault="node")
            settled = settle_job(uow, record(uow, tr, kind="job.failed"), now)
            _slash(uow, settled, Offence.MISSED_DEADLINE, now)
            ended.append(settled)
    return ended
