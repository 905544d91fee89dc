"""Routes: jobs for clients (post, list, get, cancel, logs, result) and nodes (reports)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from nosgrid.coordinator.api import idempotency
from nosgrid.coordinator.api.deps import Coord, Signer
from nosgrid.coordinator.api.schemas import (
    ERROR_RESPONSES,
    SQL_INT_MAX,
    ExtendRequest,
    FailRequest,
    FinishRequest,
    LogChunk,
    LogsRequest,
    PostJobRequest,
    PostJobsRequest,
    job_view,
)
from nosgrid.coordinator.runtime import Coordinator
from nosgrid.coordinator.services import jobs as job_services
from nosgrid.coordinator.services import lifecycle, pricing
from nosgrid.core.errors import Forbidden, InsufficientFunds, InvalidInput, NosgridError
from nosgrid.core.jobs.load import load_job_definition, parse_job_definition
from nosgrid.core.jobs.spec import JobDefinition
from nosgrid.core.jobs.state import OPEN, Job
from nosgrid.core.ledger import wallet
from nosgrid.core.money import parse_nos
from nosgrid.core.views import (
    JobList,
    JobResultView,
    JobSpecView,
    JobView,
    LogChunkView,
    LogsStored,
    LogStreamEnd,
    LogsView,
    PostedJob,
    PostedJobs,
)
from nosgrid.store.db import PIGGYBACK, UnitOfWork

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)


@router.post("", status_code=201)
async def post_job(body: PostJobRequest, request: Request, coord: Coord,
                   signer: Signer) -> PostedJob:
    """Post one job. With an ``Idempotency-Key`` header a retry returns the first answer."""
    key = idempotency.key_of(request)
    _require_funds(coord, signer)
    defn = _definition(body)
    now = int(coord.now())
    with coord.store.uow() as uow:
        if (first := await idempotency.replay(uow, request, signer, key, now)) is not None:
            return first  # type: ignore[return-value]  # the first answer, as it was sent
        posted = _post_one(uow, coord, signer, body, defn, now)
        await idempotency.remember(uow, request, signer, key, 201, posted, now)
        uow.commit()  # the handlers wake the chosen node, or the market's waiting nodes
    return posted


@router.post("/batch", status_code=201)
async def post_jobs(body: PostJobsRequest, request: Request, coord: Coord,
                    signer: Signer) -> PostedJobs:
    """Post up to ``max_batch_jobs`` jobs in one signed request: all of them, in one
    transaction, or none (the error names the first job that could not be posted)."""
    key = idempotency.key_of(request)
    if len(body.jobs) > coord.settings.max_batch_jobs:
        raise InvalidInput(f"a batch holds at most {coord.settings.max_batch_jobs} jobs; "
                           f"this one holds {len(body.jobs)}", field="jobs")
    _require_funds(coord, signer)
    definitions = []
    for i, item in enumerate(body.jobs):
        try:
            definitions.append(_definition(item))
        except NosgridError as err:
            err.details.setdefault("index", i)
            err.message = f"jobs[{i}]: {err.message}"
            raise
    now = int(coord.now())
    with coord.store.uow() as uow:
        if (first := await idempotency.replay(uow, request, signer, key, now)) is not None:
            return first  # type: ignore[return-value]
        posted = []
        for i, (item, defn) in enumerate(zip(body.jobs, definitions, strict=True)):
            try:
                posted.append(_post_one(uow, coord, signer, item, defn, now))
            except NosgridError as err:
                err.details.setdefault("index", i)
                err.message = f"jobs[{i}]: {err.message} (no job of the batch was posted)"
                raise
        answer = PostedJobs(jobs=posted)
        await idempotency.remember(uow, request, signer, key, 201, answer, now)
        uow.commit()
    return answer


def _require_funds(coord: Coordinator, signer: str) -> None:
    """Refuse an unfunded key before its definition is parsed or anything is written (its
    nonce stays in this process's memory for the signature window, which refuses a replay
    just as well: a refused request has nothing to replay)."""
    piggyback = PIGGYBACK.get()
    with coord.store.uow(write=False) as uow:
        try:  # the backend's own words first (on Solana: approve an allowance)
            uow.settlement.check_post(uow, signer, 1)
        except NosgridError:
            if piggyback is not None:
                piggyback.stored = True
            raise
        if uow.ledger.balance(wallet(signer)) > 0:
            return
    if piggyback is not None:
        piggyback.stored = True
    raise InsufficientFunds("this key's wallet is empty: posting needs a funded wallet (the "
                            "deposit and the market's posting fee); top up with `nosgrid "
                            "faucet` (dev) or a deposit", needed=1, balance=0)


def _definition(body: PostJobRequest) -> JobDefinition:
    if (body.spec is None) == (body.spec_text is None):
        raise InvalidInput("send the job definition as exactly one of `spec` or `spec_text`")
    return (parse_job_definition(body.spec) if body.spec is not None
            else load_job_definition(body.spec_text or ""))


def _post_one(uow: UnitOfWork, coord: Coordinator, signer: str, body: PostJobRequest,
              defn: JobDefinition, now: int) -> PostedJob:
    max_price = parse_nos(body.max_price) if body.max_price is not None else None
    job, choice = job_services.post_job_in(
        uow, client=signer, definition=defn, market=body.market, timeout=body.timeout,
        max_price=max_price, now=now, default_market=coord.settings.default_market,
        oracle=coord.settings.oracle, max_queued=coord.settings.max_queued_per_client)
    job = job_services.dispatch(uow, job, now, coord.matcher)
    prices = pricing.post_answer(uow, job, max_price_given=job.terms is not None
                                 and job.terms.max_price is not None,
                                 now=now, params=coord.settings.oracle)
    return PostedJob(**dict(job_view(job)), market_chosen_by=choice.chosen_by,
                     market_why=choice.why, **prices)


@router.get("")
async def list_jobs(coord: Coord, signer: Signer, limit: int = Query(20, ge=1, le=200),
                    cursor: int | None = Query(None, ge=0, le=SQL_INT_MAX)) -> JobList:
    with coord.store.uow(write=False) as uow:
        # the audit, replica and tiebreak runs of a job are shown by its verification view
        jobs, nxt = uow.jobs.list_for_client(signer, limit=limit, cursor=cursor,
                                             hide_runs=True)
    return JobList(jobs=[job_view(j) for j in jobs], next=nxt)


@router.get("/{job_id}")
async def get_job(job_id: str, coord: Coord, signer: Signer) -> JobView:
    with coord.store.uow(write=False) as uow:
        return job_view(lifecycle.get_job_for(uow, job_id, signer))


@router.get("/{job_id}/spec")
async def get_spec(job_id: str, coord: Coord, signer: Signer) -> JobSpecView:
    with coord.store.uow(write=False) as uow:
        job = lifecycle.get_job_for(uow, job_id, signer)
        spec = uow.jobs.spec(job.spec_hash)
    return JobSpecView(spec_hash=job.spec_hash, spec=json.loads(spec or "{}"))


@router.get("/{job_id}/result")
async def get_result(job_id: str, coord: Coord, signer: Signer) -> JobResultView:
    with coord.store.uow(write=False) as uow:
        job = lifecycle.get_job_for(uow, job_id, signer)
    return JobResultView(id=job.id, state=job.state, result=dict(job.result),
                         reason=job.reason)


@router.post("/{job_id}/cancel")
async def cancel(job_id: str, request: Request, coord: Coord, signer: Signer) -> JobView:
    key = idempotency.key_of(request)
    now = int(coord.now())
    with coord.store.uow() as uow:
        if (first := await idempotency.replay(uow, request, signer, key, now)) is not None:
            return first  # type: ignore[return-value]
        view = job_view(job_services.cancel_job(uow, job_id, signer, now))
        await idempotency.remember(uow, request, signer, key, 200, view, now)
        uow.commit()
    return view


@router.post("/{job_id}/extend")
async def extend(job_id: str, body: ExtendRequest, request: Request, coord: Coord,
                 signer: Signer) -> JobView:
    """Give an open job more seconds (escrow grows by price × seconds); with an
    ``Idempotency-Key`` a retry extends once."""
    key = idempotency.key_of(request)
    now = int(coord.now())
    with coord.store.uow() as uow:
        if (first := await idempotency.replay(uow, request, signer, key, now)) is not None:
            return first  # type: ignore[return-value]
        view = job_view(job_services.extend_job(uow, job_id, signer, body.seconds, now))
        await idempotency.remember(uow, request, signer, key, 200, view, now)
        uow.commit()
    return view


@router.post("/{job_id}/start")
async def start(job_id: str, coord: Coord, signer: Signer) -> JobView:
    with coord.store.uow() as uow:
        job = job_services.start_job(uow, job_id, signer, int(coord.now()))
        uow.commit()
    return job_view(job)


@router.post("/{job_id}/finish")
async def finish(job_id: str, body: FinishRequest, coord: Coord,
                 signer: Signer) -> JobView:
    result = {"exit_code": body.exit_code, "outputs": [o.model_dump() for o in body.outputs],
              "results": body.results}
    if len(json.dumps(result)) > 256_000:
        raise InvalidInput("the result is larger than 256 kB; upload big outputs as blobs")
    with coord.store.uow() as uow:
        if body.logs:
            _store_logs(uow, coord, lifecycle.get_job_for(uow, job_id, signer), signer,
                        body.logs)
        job = job_services.finish_job(uow, job_id, signer, int(coord.now()),
                                      seconds_used=body.seconds_used, result=result)
        uow.commit()
    return job_view(job)


@router.post("/{job_id}/fail")
async def fail(job_id: str, body: FailRequest, coord: Coord, signer: Signer) -> JobView:
    with coord.store.uow() as uow:
        if body.logs:
            _store_logs(uow, coord, lifecycle.get_job_for(uow, job_id, signer), signer,
                        body.logs)
        job = job_services.fail_job(uow, job_id, signer, int(coord.now()), fault=body.fault,
                                    reason=body.reason, seconds_used=body.seconds_used,
                                    timed_out=body.timed_out)
        uow.commit()
    return job_view(job)


@router.post("/{job_id}/logs")
async def push_logs(job_id: str, body: LogsRequest, coord: Coord,
                    signer: Signer) -> LogsStored:
    with coord.store.uow() as uow:
        job = lifecycle.get_job_for(uow, job_id, signer)
        stored, count, truncated = _store_logs(uow, coord, job, signer, body.chunks)
        uow.commit()
    coord.wake_logs(job_id)
    return LogsStored(stored=stored, next_seq=count, truncated=truncated)


def _store_logs(uow: UnitOfWork, coord: Coordinator, job: Job, signer: str,
                chunks: list[LogChunk]) -> tuple[int, int, bool]:
    """Append a node's log chunks up to the per-job cap: (stored, next seq, truncated)."""
    if job.node != signer:
        raise Forbidden("only the job's node sends its logs")
    now = coord.now()
    room = coord.settings.max_log_bytes_per_job - uow.logs.total_bytes(job.id)
    rows, truncated = [], False
    for c in chunks:
        data = c.data.encode()
        if len(data) > room:
            truncated = True
            break
        room -= len(data)
        rows.append((c.stream, c.at or now, data))
    return len(rows), uow.logs.append(job.id, rows), truncated


_NDJSON: dict[int | str, dict[str, Any]] = {200: {
    "description": "Log chunks; with `follow`, NDJSON lines (LogChunkView …, LogStreamEnd)",
    "content": {"application/x-ndjson": {"schema": {"anyOf": [
        {"$ref": "#/components/schemas/LogChunkView"}, LogStreamEnd.model_json_schema()]}}},
}}


@router.get("/{job_id}/logs", response_model=LogsView, responses=_NDJSON)
async def read_logs(job_id: str, coord: Coord, signer: Signer,
                    after: int = Query(-1, ge=-1, le=SQL_INT_MAX),
                    follow: bool = False) -> LogsView | StreamingResponse:
    """Log chunks after ``after``; with ``follow`` a stream of NDJSON until the job ends."""
    with coord.store.uow(write=False) as uow:
        lifecycle.get_job_for(uow, job_id, signer)
        chunks = uow.logs.read(job_id, after)
    if not follow:
        return LogsView(chunks=[_chunk(c) for c in chunks],
                        next=chunks[-1]["seq"] if chunks else after)

    async def stream() -> AsyncIterator[bytes]:
        cursor = after
        while True:
            event = coord.log_events[job_id]
            with coord.store.uow(write=False) as uow:
                new = uow.logs.read(job_id, cursor)
                state = uow.jobs.get(job_id).state
            for c in new:
                cursor = c["seq"]
                yield (_chunk(c).model_dump_json() + "\n").encode()
            if state not in OPEN and not new:
                yield (json.dumps({"end": True, "state": state.value}) + "\n").encode()
                return
            if not new:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), 5.0)

    return StreamingResponse(stream(), media_type="application/x-ndjson")


def _chunk(c: dict[str, Any]) -> LogChunkView:
    return LogChunkView(seq=c["seq"], stream=c["stream"], at=c["at"],
                        data=c["data"].decode("utf-8", "replace"))
