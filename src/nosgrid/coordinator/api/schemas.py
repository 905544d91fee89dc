"""Request and response bodies of the HTTP API (what the OpenAPI document describes)."""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from nosgrid.core.jobs.state import Job, payout
from nosgrid.core.markets import HardwareReport
from nosgrid.core.money import format_nos
from nosgrid.core.views import ErrorBody, JobView, SettlementSplit

#: the largest integer the store can hold (SQLite and PostgreSQL BIGINT); bounds cursors
SQL_INT_MAX: Final = 2**63 - 1
#: every router documents its error answers with this (``{"error": {"code", "message"}}``)
ERROR_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    "4XX": {"model": ErrorBody, "description": "The caller's fault; `error.message` says "
            "what to do (codes in nosgrid.core.errors)"},
    "5XX": {"model": ErrorBody, "description": "The coordinator or a component it needs "
            "failed (`unavailable` and its subclasses: retry later)"},
}


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FaucetRequest(Body):
    amount: str = Field(description="NOS as a decimal string, e.g. '100'", max_length=32)


class RegisterRequest(Body):
    hardware: HardwareReport
    markets: list[str] = Field(default_factory=list, max_length=64)
    #: the operator key vouching for this node, and its signature of
    #: ``core.markets.node_operator_message(node)`` (SDK: ``operator_consent``)
    operator: str | None = Field(default=None, max_length=64)
    operator_consent: str | None = Field(default=None, max_length=128)


class PollRequest(Body):
    wait: float = Field(default=25.0, ge=0, le=60)


class PostJobRequest(Body):
    spec: dict[str, Any] | None = Field(default=None, description="job definition as JSON")
    spec_text: str | None = Field(default=None, max_length=300_000,
                                  description="job definition as JSON or YAML text")
    market: str | None = Field(default=None, max_length=64)
    timeout: int | None = Field(default=None, ge=1, le=7 * 24 * 3600)
    max_price: str | None = Field(default=None, max_length=32)


class ExtendRequest(Body):
    seconds: int = Field(ge=1, le=7 * 24 * 3600, description="seconds to add to the timeout")


class PostJobsRequest(Body):
    jobs: list[PostJobRequest] = Field(min_length=1, max_length=1000,
                                       description="the jobs, posted all or none")


class OutputFile(Body):
    path: str = Field(max_length=4096)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class LogChunk(Body):
    stream: Literal["stdout", "stderr", "nodeerr"] = "stdout"
    data: str = Field(max_length=256_000)
    at: float | None = None


class FinishRequest(Body):
    seconds_used: int | None = Field(default=None, ge=0)
    exit_code: int = 0
    outputs: list[OutputFile] = Field(default_factory=list, max_length=1000)
    results: dict[str, Any] = Field(default_factory=dict)
    #: the last log lines, stored in the same transaction (the client sees them all)
    logs: list[LogChunk] = Field(default_factory=list, max_length=1000)


class FailRequest(Body):
    reason: str = Field(max_length=2000)
    fault: Literal["client", "node"] = "client"
    seconds_used: int | None = Field(default=None, ge=0)
    timed_out: bool = False
    logs: list[LogChunk] = Field(default_factory=list, max_length=1000)


class LogsRequest(Body):
    chunks: list[LogChunk] = Field(max_length=1000)


def job_view(job: Job) -> JobView:
    """A job as the API shows it: base units plus NOS strings for display."""
    settlement = None
    if job.state.value == "settled":
        pay = payout(job)
        settlement = SettlementSplit(
            node_pay=pay.node_pay, treasury_fee=pay.treasury_fee,
            stakers_fee=pay.stakers_fee, refund=pay.refund,
            cost_nos=format_nos(job.deposit - pay.refund))
    return JobView(
        id=job.id, client=job.client, market=job.market, state=job.state,
        node=job.node, spec_hash=job.spec_hash, timeout=job.timeout,
        deposit=job.deposit, deposit_nos=format_nos(job.deposit),
        price_per_second=job.price_per_second, created_at=job.created_at,
        assigned_at=job.assigned_at, started_at=job.started_at,
        finished_at=job.finished_at, seconds_used=job.seconds_used, fault=job.fault,
        reason=job.reason, attempts=job.attempts, result=dict(job.result),
        outcome=None if job.outcome is None else job.outcome.value, settlement=settlement,
        nos_usd_rate=job.terms.nos_usd_rate if job.terms is not None else None)
