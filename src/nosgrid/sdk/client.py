"""The nosgrid SDK: an async client over httpx, and a typed sync client made from it.

Example::

    from nosgrid.sdk import ENDED, Client

    with Client("http://127.0.0.1:8700") as c:        # keypair: ~/.config/nosgrid/id.json
        c.faucet("100")
        job = c.post_job(spec={"version": "0.1", "type": "container", "ops": [...]},
                         market="cpu")
        done = c.wait(job.id)
        assert done.state in ENDED
        print(done.state, c.balance().balance_nos)

Every method returns a response model of :mod:`nosgrid.sdk.models` (parsed from the
coordinator's JSON); ``request`` is the raw escape hatch and returns the JSON. Every
request is signed with the keypair (see ``nosgrid.core.identity``). Server errors come
back as the matching :class:`~nosgrid.core.errors.NosgridError` subclass.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar
from urllib.parse import urlencode

import httpx
from pydantic import BaseModel, ValidationError
from solders.keypair import Keypair

from nosgrid.core.dashboard_views import (
    AccountList,
    JobValidation,
    LedgerPage,
    MarketStats,
    NodeList,
    NodeStats,
    TokenomicsView,
)
from nosgrid.core.errors import NosgridError, Unavailable
from nosgrid.core.jobs.state import ENDED
from nosgrid.core.markets import NOS_USD, node_operator_message
from nosgrid.core.money import format_nos
from nosgrid.core.pricing import reporter_consent_message
from nosgrid.core.views import (
    AccountView,
    AttestorChainView,
    AttestorEpochView,
    ChainRequestView,
    ClaimView,
    DeploymentEvents,
    DeploymentList,
    DeploymentView,
    FaucetView,
    HealthView,
    HeartbeatView,
    JobList,
    JobResultView,
    JobSpecView,
    JobView,
    JournalView,
    KeyList,
    KeyRevoked,
    KeyView,
    LedgerSummary,
    LedgerVerifyReport,
    LogChunkView,
    LogsStored,
    LogsView,
    MarketDetail,
    MarketNodeView,
    MarketParams,
    MarketPriceView,
    NodeView,
    NosUsdView,
    OracleReportView,
    PollView,
    PostedJob,
    PostedJobs,
    ReceiptView,
    RegistrationView,
    ReporterView,
    RequestRecordList,
    ServiceDeploymentList,
    ServiceDeploymentView,
    ServiceView,
    StakeView,
    Undeployed,
    UsageView,
    VerificationSummary,
    VerificationView,
)
from nosgrid.sdk.receipts import JobReceipt
from nosgrid.sdk.wallet import load_keypair, sign_headers

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
P = ParamSpec("P")
DEFAULT_URL = "http://127.0.0.1:8700"
StakeAction = Literal["stake", "top_up", "extend", "unstake", "restake", "withdraw"]


def default_url() -> str:
    """``$NOSGRID_URL`` or the local default."""
    return os.environ.get("NOSGRID_URL", DEFAULT_URL)


class AsyncClient:
    """Async client for one coordinator, signing as one keypair."""

    def __init__(self, url: str | None = None, keypair: Keypair | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 timeout: float = 60.0, clock: Callable[[], float] | None = None) -> None:
        self.url = (url or default_url()).rstrip("/")
        self._keypair = keypair
        self._clock = clock
        self._http = httpx.AsyncClient(base_url=self.url, transport=transport,
                                       timeout=httpx.Timeout(timeout, connect=5.0))
        #: how often a request refused for its budget (429 + Retry-After) is sent again
        self.rate_limit_retries = 3
        #: the longest Retry-After the client waits for before giving the error back
        self.max_retry_wait = 10.0

    @property
    def keypair(self) -> Keypair:
        if self._keypair is None:
            self._keypair = load_keypair()
        return self._keypair

    @property
    def pubkey(self) -> str:
        return str(self.keypair.pubkey())

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- transport ---------------------------------------------------------------------

    def _prepare(self, method: str, path: str, params: dict[str, Any] | None,
                 body: bytes, signed: bool) -> tuple[str, dict[str, str]]:
        query = urlencode({k: _q(v) for k, v in (params or {}).items() if v is not None})
        full = f"{path}?{query}" if query else path
        headers = {"content-type": "application/json"} if body else {}
        if signed:
            now = self._clock() if self._clock else None
            headers.update(sign_headers(self.keypair, method, full, body, now=now))
        return full, headers

    async def request(self, method: str, path: str, *, json_body: Any = None,
                      content: bytes | None = None, params: dict[str, Any] | None = None,
                      signed: bool = True, idempotency_key: str | None = None) -> Any:
        """Send one request and return its JSON, raising NosgridError on an error answer.

        A 429 with ``Retry-After`` (the coordinator's request budget) is retried after the
        wait it names, up to :attr:`rate_limit_retries` times if the wait is at most
        :attr:`max_retry_wait` seconds, each time signed afresh; ``idempotency_key`` is
        sent as ``Idempotency-Key`` so that a retried write happens once.
        """
        body = content if content is not None else (
            b"" if json_body is None else json.dumps(json_body).encode())
        for attempt in range(self.rate_limit_retries + 1):
            full, headers = self._prepare(method, path, params, body, signed)
            if content is not None:
                headers["content-type"] = "application/octet-stream"
            if idempotency_key is not None:
                headers["idempotency-key"] = idempotency_key
            try:
                resp = await self._http.request(method, full, content=body or None,
                                                headers=headers)
            except httpx.TransportError as exc:
                raise Unavailable(f"cannot reach the coordinator at {self.url}: {exc}") from None
            wait = _retry_after(resp)
            if wait is None or wait > self.max_retry_wait or attempt == self.rate_limit_retries:
                return _decode(resp)
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    async def _model(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        """``request`` and parse the answer as ``model``."""
        return _parse(model, await self.request(method, path, **kwargs), path)

    # -- markets & accounts -------------------------------------------------------------

    async def markets(self) -> list[MarketParams]:
        return [_parse(MarketParams, m, "/v1/markets")
                for m in await self.request("GET", "/v1/markets", signed=False)]

    async def market(self, name: str) -> MarketDetail:
        return await self._model(MarketDetail, "GET", f"/v1/markets/{name}", signed=False)

    async def market_nodes(self, name: str) -> list[MarketNodeView]:
        """Nodes serving the market, best reputation × stake first."""
        path = f"/v1/markets/{name}/nodes"
        return [_parse(MarketNodeView, n, path)
                for n in await self.request("GET", path, signed=False)]

    async def create_market(self, params: dict[str, Any]) -> MarketParams:
        return await self._model(MarketParams, "POST", "/v1/markets", json_body=params)

    # -- price oracle (docs/pricing.md) -------------------------------------------------

    async def market_price(self, name: str) -> MarketPriceView:
        """The market's reference price (the oracle's, or its configured price and why),
        what a job posted now is charged, and the open epoch's provisional aggregate."""
        return await self._model(MarketPriceView, "GET", f"/v1/markets/{name}/price",
                                 signed=False)

    async def nos_usd(self) -> NosUsdView:
        """The oracle's published NOS/USD rate (µUSD per NOS), or why there is none."""
        return await self._model(NosUsdView, "GET", "/v1/oracle/nos_usd", signed=False)

    async def publish_ask(self, market: str, price_per_second: int) -> OracleReportView:
        """This node's ask for ``market`` (base units per second; replaces the last)."""
        return await self._model(OracleReportView, "POST", f"/v1/markets/{market}/ask",
                                 json_body={"price": price_per_second})

    async def submit_report(self, market: str, price: int,
                            epoch: int | None = None) -> OracleReportView:
        """A signed price report for the open epoch (``market`` ``nos_usd``: the rate in
        µUSD per NOS); without ``epoch``, the coordinator's open one (one read more)."""
        if epoch is None:
            epoch = (await self.nos_usd() if market == NOS_USD
                     else await self.market_price(market)).provisional.epoch
        return await self._model(OracleReportView, "POST", f"/v1/markets/{market}/reports",
                                 json_body={"epoch": epoch, "price": price})

    async def register_reporter(self, operator: str, consent: str) -> ReporterView:
        """Register this key as a price reporter for ``operator``; ``consent`` is the
        operator's signature (:func:`reporter_consent`)."""
        return await self._model(ReporterView, "POST", "/v1/oracle/reporters",
                                 json_body={"operator": operator, "consent": consent})

    async def reporter(self, key: str) -> ReporterView:
        return await self._model(ReporterView, "GET", f"/v1/oracle/reporters/{key}",
                                 signed=False)

    async def oracle_report(self, digest: str) -> OracleReportView:
        """A stored report or ask by hash, with what its key signed."""
        return await self._model(OracleReportView, "GET", f"/v1/oracle/reports/{digest}",
                                 signed=False)

    async def balance(self) -> AccountView:
        return await self._model(AccountView, "GET", "/v1/accounts/me")

    async def journal(self, limit: int = 50, before: int | None = None) -> JournalView:
        return await self._model(JournalView, "GET", "/v1/accounts/me/journal",
                                 params={"limit": limit, "before": before})

    async def faucet(self, amount: str, *, idempotency_key: str | None = None) -> FaucetView:
        return await self._model(FaucetView, "POST", "/v1/faucet", json_body={"amount": amount},
                                 idempotency_key=idempotency_key)

    # -- staking -------------------------------------------------------------------------

    async def stake(self) -> StakeView:
        """The signer's stake (``staked`` False when there is none)."""
        return await self._model(StakeView, "GET", "/v1/stake")

    async def change_stake(self, action: StakeAction, *, amount: str | None = None,
                           days: int | None = None) -> StakeView:
        """Stake, top up, extend, unstake, restake or withdraw; ``amount`` is NOS."""
        body = {"action": action, "amount": amount, "days": days}
        return await self._model(StakeView, "POST", "/v1/stake",
                                 json_body={k: v for k, v in body.items() if v is not None})

    async def claim_rewards(self) -> ClaimView:
        return await self._model(ClaimView, "POST", "/v1/rewards/claim")

    # -- jobs (client side) -------------------------------------------------------------

    async def post_job(self, *, spec: dict[str, Any] | None = None, spec_text: str | None = None,
                       market: str | None = None, timeout: int | None = None,
                       max_price: str | None = None,
                       idempotency_key: str | None = None) -> PostedJob:
        """Post a definition; without ``market`` the coordinator picks it (the definition's
        ``meta.nosgrid.market``, its default market, or its only one) and says how in
        ``market_chosen_by`` / ``market_why``. With ``idempotency_key`` (a UUID, say) a
        retry after a lost answer returns the first answer instead of posting twice."""
        body = {"spec": spec, "spec_text": spec_text, "market": market, "timeout": timeout,
                "max_price": max_price}
        return await self._model(PostedJob, "POST", "/v1/jobs",
                                 json_body={k: v for k, v in body.items() if v is not None},
                                 idempotency_key=idempotency_key)

    async def post_jobs(self, jobs: list[dict[str, Any]], *,
                        idempotency_key: str | None = None) -> PostedJobs:
        """Post several jobs in one signed request, all or none: each item has the fields
        of :meth:`post_job` (``spec`` or ``spec_text``, ``market``, ``timeout``,
        ``max_price``)."""
        items = [{k: v for k, v in job.items() if v is not None} for job in jobs]
        return await self._model(PostedJobs, "POST", "/v1/jobs/batch",
                                 json_body={"jobs": items}, idempotency_key=idempotency_key)

    async def job(self, job_id: str) -> JobView:
        return await self._model(JobView, "GET", f"/v1/jobs/{job_id}")

    async def jobs(self, limit: int = 20, cursor: int | None = None) -> JobList:
        return await self._model(JobList, "GET", "/v1/jobs",
                                 params={"limit": limit, "cursor": cursor})

    async def cancel(self, job_id: str, *, idempotency_key: str | None = None) -> JobView:
        return await self._model(JobView, "POST", f"/v1/jobs/{job_id}/cancel",
                                 idempotency_key=idempotency_key)

    async def extend(self, job_id: str, seconds: int, *,
                     idempotency_key: str | None = None) -> JobView:
        """Give an open job ``seconds`` more (the escrow grows by its price × seconds);
        the node keeps its container running under the new timeout."""
        return await self._model(JobView, "POST", f"/v1/jobs/{job_id}/extend",
                                 json_body={"seconds": seconds},
                                 idempotency_key=idempotency_key)

    async def result(self, job_id: str) -> JobResultView:
        return await self._model(JobResultView, "GET", f"/v1/jobs/{job_id}/result")

    async def spec(self, job_id: str) -> JobSpecView:
        return await self._model(JobSpecView, "GET", f"/v1/jobs/{job_id}/spec")

    async def verification(self, job_id: str) -> VerificationView:
        """How the job is being checked: mode, audit decision, runs, verdict."""
        return await self._model(VerificationView, "GET", f"/v1/jobs/{job_id}/verification")

    async def receipt(self, job_id: str) -> JobReceipt:
        """The job's current result receipt, raw and parsed (check it with
        :func:`nosgrid.sdk.receipts.verify_receipt` against the key you trust)."""
        view = await self._model(ReceiptView, "GET", f"/v1/jobs/{job_id}/receipt",
                                 signed=False)
        return JobReceipt.from_view(view)

    async def attestor_chain(self) -> AttestorChainView:
        """The market's attestor key epochs, each signed by the key before it."""
        return await self._model(AttestorChainView, "GET", "/v1/attestor", signed=False)

    async def chain_request(self, signature: str) -> ChainRequestView:
        """What became of a payment into the request vault (by its transaction signature):
        the job it posted and its result, or its refunds and why."""
        return await self._model(ChainRequestView, "GET", f"/v1/requests/{signature}",
                                 signed=False)

    async def rotate_attestor(self) -> AttestorEpochView:
        """Admin: start a new attestor key epoch (signed by the current key)."""
        return await self._model(AttestorEpochView, "POST", "/v1/attestor/rotate")

    async def verification_summary(self) -> VerificationSummary:
        return await self._model(VerificationSummary, "GET", "/v1/verification/summary",
                                 signed=False)

    async def logs(self, job_id: str, after: int = -1) -> LogsView:
        return await self._model(LogsView, "GET", f"/v1/jobs/{job_id}/logs",
                                 params={"after": after})

    async def follow_logs(self, job_id: str, after: int = -1) -> AsyncGenerator[LogChunkView, None]:
        """Yield log chunks as the node sends them, until the job ends."""
        full, headers = self._prepare("GET", f"/v1/jobs/{job_id}/logs",
                                      {"after": after, "follow": True}, b"", True)
        try:
            async with self._http.stream("GET", full, headers=headers,
                                         timeout=httpx.Timeout(None, connect=5.0)) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    _decode(resp)
                async for line in resp.aiter_lines():
                    if line.strip():
                        item = json.loads(line)
                        if item.get("end"):
                            return
                        yield _parse(LogChunkView, item, full)
        except httpx.TransportError as exc:
            raise Unavailable(f"lost the log stream from {self.url}: {exc}") from None

    async def wait(self, job_id: str, *, poll_s: float = 0.5,
                   timeout_s: float | None = None) -> JobView:
        """Poll until the job has ended (its state is in ``ENDED``: the client has its
        answer, an audit may still hold the node's pay); returns the job, as it is when
        ``timeout_s`` runs out at the latest."""
        loop = asyncio.get_running_loop()
        end = None if timeout_s is None else loop.time() + timeout_s
        while True:
            job = await self.job(job_id)
            if job.state in ENDED:
                return job
            if end is not None and loop.time() > end:
                return job
            await asyncio.sleep(poll_s)

    # -- blobs -------------------------------------------------------------------------

    async def upload_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        await self.request("PUT", f"/v1/blobs/{sha}", content=data)
        return sha

    async def download_blob(self, sha256: str) -> bytes:
        full, headers = self._prepare("GET", f"/v1/blobs/{sha256}", None, b"", True)
        try:
            resp = await self._http.get(full, headers=headers)
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach the coordinator at {self.url}: {exc}") from None
        if resp.status_code >= 400:
            _decode(resp)
        return resp.content

    # -- node side ---------------------------------------------------------------------

    async def register_node(self, hardware: dict[str, Any],
                            markets: list[str] | None = None, *,
                            operator: Keypair | None = None) -> RegistrationView:
        """Register this key as a node; ``operator``: the operator key that vouches for it
        (one operator may hold a bounded number of nodes)."""
        body: dict[str, Any] = {"hardware": hardware, "markets": markets or []}
        if operator is not None:
            body["operator"] = str(operator.pubkey())
            body["operator_consent"] = operator_consent(operator, self.pubkey)
        return await self._model(RegistrationView, "POST", "/v1/nodes/register",
                                 json_body=body)

    async def heartbeat(self) -> HeartbeatView:
        return await self._model(HeartbeatView, "POST", "/v1/nodes/heartbeat")

    async def poll(self, wait: float = 25.0) -> PollView:
        return await self._model(PollView, "POST", "/v1/nodes/poll", json_body={"wait": wait})

    async def node(self, node_id: str) -> NodeView:
        return await self._model(NodeView, "GET", f"/v1/nodes/{node_id}", signed=False)

    async def start_job(self, job_id: str) -> JobView:
        return await self._model(JobView, "POST", f"/v1/jobs/{job_id}/start")

    async def finish_job(self, job_id: str, *, seconds_used: int | None = None,
                         exit_code: int = 0, outputs: list[dict[str, Any]] | None = None,
                         results: dict[str, Any] | None = None,
                         logs: list[dict[str, Any]] | None = None) -> JobView:
        """Report success; ``logs`` are the last log chunks, stored with the result."""
        body = {"seconds_used": seconds_used, "exit_code": exit_code,
                "outputs": outputs or [], "results": results or {}, "logs": logs or []}
        return await self._model(JobView, "POST", f"/v1/jobs/{job_id}/finish", json_body=body)

    async def fail_job(self, job_id: str, *, reason: str, fault: str = "client",
                       seconds_used: int | None = None, timed_out: bool = False,
                       logs: list[dict[str, Any]] | None = None) -> JobView:
        body = {"reason": reason, "fault": fault, "seconds_used": seconds_used,
                "timed_out": timed_out, "logs": logs or []}
        return await self._model(JobView, "POST", f"/v1/jobs/{job_id}/fail", json_body=body)

    async def push_logs(self, job_id: str, chunks: list[dict[str, Any]]) -> LogsStored:
        return await self._model(LogsStored, "POST", f"/v1/jobs/{job_id}/logs",
                                 json_body={"chunks": chunks})

    async def report_service(self, job_id: str, op_id: str, endpoint: str,
                             healthy: bool, model: str | None = None) -> ServiceView:
        """(node) A service op of ``job_id`` answers at ``endpoint`` and is (un)healthy."""
        body: dict[str, Any] = {"op_id": op_id, "endpoint": endpoint, "healthy": healthy}
        if model is not None:
            body["model"] = model
        return await self._model(ServiceView, "POST", f"/v1/jobs/{job_id}/service",
                                 json_body=body)

    # -- OpenAI gateway: keys, deployments, usage ------------------------------------------

    async def register_key(self, key: str, label: str = "") -> KeyView:
        return await self._model(KeyView, "POST", "/v1/keys",
                                 json_body={"key": key, "label": label})

    async def keys(self) -> KeyList:
        return await self._model(KeyList, "GET", "/v1/keys")

    async def revoke_key(self, kid: str) -> KeyRevoked:
        return await self._model(KeyRevoked, "POST", f"/v1/keys/{kid}/revoke")

    # -- service deployments (docs/deployments.md) -----------------------------------------

    async def create_deployment(self, *, strategy: str, spec: dict[str, Any] | None = None,
                                spec_text: str | None = None, name: str | None = None,
                                replicas: int = 1, timeout: int = 600,
                                schedule: str | None = None, market: str | None = None,
                                max_spend: str | None = None, overlap: str = "forbid",
                                grace_s: int = 10, lead_s: int = 30,
                                idempotency_key: str | None = None) -> ServiceDeploymentView:
        """A service the market keeps alive: ``strategy`` is ``simple``, ``simple-extend``,
        ``scheduled`` (with a 5-field UTC cron ``schedule``) or ``infinite``."""
        body = {"spec": spec, "spec_text": spec_text, "name": name, "strategy": strategy,
                "replicas": replicas, "timeout": timeout, "schedule": schedule,
                "market": market, "max_spend": max_spend, "overlap": overlap,
                "grace_s": grace_s, "lead_s": lead_s}
        return await self._model(ServiceDeploymentView, "POST", "/v1/deployments",
                                 json_body={k: v for k, v in body.items() if v is not None},
                                 idempotency_key=idempotency_key)

    async def service_deployments(self) -> ServiceDeploymentList:
        """Your service deployments (model deployments: :meth:`deployments`)."""
        return await self._model(ServiceDeploymentList, "GET", "/v1/deployments")

    async def deployment(self, ref: str) -> ServiceDeploymentView:
        """A deployment by id or by its name."""
        return await self._model(ServiceDeploymentView, "GET", f"/v1/deployments/{ref}")

    async def deployment_events(self, ref: str, after: int = 0) -> DeploymentEvents:
        return await self._model(DeploymentEvents, "GET", f"/v1/deployments/{ref}/events",
                                 params={"after": after})

    async def update_deployment(self, ref: str, *, spec: dict[str, Any] | None = None,
                                spec_text: str | None = None, replicas: int | None = None,
                                timeout: int | None = None, schedule: str | None = None,
                                market: str | None = None,
                                max_spend: str | None = None) -> ServiceDeploymentView:
        """A new definition is a new revision (rolled out replica by replica)."""
        body = {"spec": spec, "spec_text": spec_text, "replicas": replicas,
                "timeout": timeout, "schedule": schedule, "market": market,
                "max_spend": max_spend}
        return await self._model(ServiceDeploymentView, "POST",
                                 f"/v1/deployments/{ref}/update",
                                 json_body={k: v for k, v in body.items() if v is not None})

    async def deployment_action(self, ref: str, action: str) -> ServiceDeploymentView:
        """``stop``, ``start`` or ``archive``."""
        return await self._model(ServiceDeploymentView, "POST",
                                 f"/v1/deployments/{ref}/{action}")

    async def usage(self) -> UsageView:
        return await self._model(UsageView, "GET", "/v1/usage")

    async def usage_records(self, limit: int = 100) -> RequestRecordList:
        """Your recorded gateway requests and their audits, newest first."""
        return await self._model(RequestRecordList, "GET", "/v1/usage/records",
                                 params={"limit": limit})

    async def usage_record(self, record_hash: str) -> dict[str, Any]:
        """One of your usage records as stored (sha256 ``record_hash``)."""
        out: dict[str, Any] = await self.request("GET", f"/v1/usage/records/{record_hash}")
        return out

    async def deploy(self, model: str, spec: dict[str, Any], *, market: str, min: int = 0,
                     max: int = 1, idle_s: int = 300, prompt_price: int = 1,
                     completion_price: int = 2) -> DeploymentView:
        return await self._model(DeploymentView, "POST", "/v1/models/deployments", json_body={
            "model": model, "spec": spec, "market": market, "min": min, "max": max,
            "idle_s": idle_s, "prompt_price": prompt_price,
            "completion_price": completion_price})

    async def deployments(self) -> DeploymentList:
        return await self._model(DeploymentList, "GET", "/v1/models/deployments", signed=False)

    async def undeploy(self, model: str) -> Undeployed:
        return await self._model(Undeployed, "DELETE", f"/v1/models/deployments/{model}")

    # -- system ------------------------------------------------------------------------

    async def health(self) -> HealthView:
        return await self._model(HealthView, "GET", "/healthz", signed=False)

    async def ledger_summary(self) -> LedgerSummary:
        return await self._model(LedgerSummary, "GET", "/v1/ledger/summary", signed=False)

    async def ledger_verify(self) -> LedgerVerifyReport:
        return await self._model(LedgerVerifyReport, "GET", "/v1/ledger/verify", signed=False)

    # -- the dashboard's figures (public reads) -------------------------------------------

    async def market_stats(self, name: str) -> MarketStats:
        """Queue length, running jobs, nodes online and jobs ended in the last hour/day."""
        return await self._model(MarketStats, "GET", f"/v1/markets/{name}/stats", signed=False)

    async def nodes(self, offset: int = 0, limit: int = 100) -> NodeList:
        """A page of the registered nodes, online and best reputation first."""
        return await self._model(NodeList, "GET", "/v1/nodes", signed=False,
                                 params={"offset": offset, "limit": limit})

    async def node_stats(self, node_id: str) -> NodeStats:
        """Uptime 24 h / 7 d, earnings per day, jobs run, audits, slashes, queue positions."""
        return await self._model(NodeStats, "GET", f"/v1/nodes/{node_id}/stats", signed=False)

    async def ledger_entries(self, from_seq: int = 0, limit: int = 50) -> LedgerPage:
        """Journal entries from ``from_seq`` with the coordinator's check of their chain."""
        return await self._model(LedgerPage, "GET", "/v1/ledger/entries", signed=False,
                                 params={"from_seq": from_seq, "limit": limit})

    async def ledger_accounts(self, prefix: str | None = None, limit: int = 100) -> AccountList:
        return await self._model(AccountList, "GET", "/v1/ledger/accounts", signed=False,
                                 params={"prefix": prefix, "limit": limit})

    async def tokenomics(self, epochs: int = 52) -> TokenomicsView:
        return await self._model(TokenomicsView, "GET", "/v1/tokenomics", signed=False,
                                 params={"epochs": epochs})

    async def validate_job(self, spec_text: str) -> JobValidation:
        """What ``nosgrid job validate`` says of a definition, asked of the coordinator."""
        return await self._model(JobValidation, "POST", "/v1/jobs/validate", signed=False,
                                 json_body={"spec_text": spec_text})


def _parse(model: type[M], payload: Any, path: str) -> M:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise NosgridError(f"the coordinator's answer to {path} is not a {model.__name__} "
                           f"({exc.error_count()} fields off); is it another nosgrid "
                           "version than this SDK?") from exc


def _q(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _retry_after(resp: httpx.Response) -> float | None:
    """The seconds a 429 asks the client to wait (None: not a budget refusal)."""
    if resp.status_code != 429:
        return None
    value = resp.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


def _decode(resp: httpx.Response) -> Any:
    try:
        payload = resp.json()
    except ValueError:
        payload = None
    if resp.status_code >= 400:
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            raise NosgridError.from_dict(payload["error"])
        raise NosgridError(f"the coordinator answered HTTP {resp.status_code}")
    return payload


def _blocking(fn: Callable[Concatenate[AsyncClient, P], Awaitable[T]]
              ) -> Callable[Concatenate[Client, P], T]:
    """The blocking twin of an :class:`AsyncClient` method, with its signature."""

    @functools.wraps(fn)
    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.run(fn(self.aio, *args, **kwargs))

    return call


class Client:
    """Blocking client: runs an :class:`AsyncClient` on a private event-loop thread.

    Every method is the async one's twin (same arguments, same models), e.g.
    ``Client.job(job_id) -> JobView``; ``follow_logs`` is a plain iterator.
    """

    def __init__(self, url: str | None = None, keypair: Keypair | None = None,
                 **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="nosgrid-sdk")
        self._thread.start()
        self._async = self.run(_make_async(url, keypair, kwargs))

    def run(self, aw: Awaitable[T]) -> T:
        """Run a coroutine (e.g. of ``nosgrid.sdk.solana`` on :attr:`aio`) to its result."""
        return asyncio.run_coroutine_threadsafe(_await(aw), self._loop).result()

    @property
    def aio(self) -> AsyncClient:
        """The async client underneath (for the async-only helpers)."""
        return self._async

    @property
    def url(self) -> str:
        return self._async.url

    @property
    def keypair(self) -> Keypair:
        return self._async.keypair

    @property
    def pubkey(self) -> str:
        return self._async.pubkey

    request = _blocking(AsyncClient.request)
    markets = _blocking(AsyncClient.markets)
    market = _blocking(AsyncClient.market)
    market_nodes = _blocking(AsyncClient.market_nodes)
    create_market = _blocking(AsyncClient.create_market)
    market_price = _blocking(AsyncClient.market_price)
    nos_usd = _blocking(AsyncClient.nos_usd)
    publish_ask = _blocking(AsyncClient.publish_ask)
    submit_report = _blocking(AsyncClient.submit_report)
    register_reporter = _blocking(AsyncClient.register_reporter)
    reporter = _blocking(AsyncClient.reporter)
    oracle_report = _blocking(AsyncClient.oracle_report)
    balance = _blocking(AsyncClient.balance)
    journal = _blocking(AsyncClient.journal)
    faucet = _blocking(AsyncClient.faucet)
    stake = _blocking(AsyncClient.stake)
    change_stake = _blocking(AsyncClient.change_stake)
    claim_rewards = _blocking(AsyncClient.claim_rewards)
    post_job = _blocking(AsyncClient.post_job)
    post_jobs = _blocking(AsyncClient.post_jobs)
    job = _blocking(AsyncClient.job)
    jobs = _blocking(AsyncClient.jobs)
    cancel = _blocking(AsyncClient.cancel)
    extend = _blocking(AsyncClient.extend)
    create_deployment = _blocking(AsyncClient.create_deployment)
    service_deployments = _blocking(AsyncClient.service_deployments)
    deployment = _blocking(AsyncClient.deployment)
    deployment_events = _blocking(AsyncClient.deployment_events)
    update_deployment = _blocking(AsyncClient.update_deployment)
    deployment_action = _blocking(AsyncClient.deployment_action)
    result = _blocking(AsyncClient.result)
    spec = _blocking(AsyncClient.spec)
    verification = _blocking(AsyncClient.verification)
    verification_summary = _blocking(AsyncClient.verification_summary)
    receipt = _blocking(AsyncClient.receipt)
    attestor_chain = _blocking(AsyncClient.attestor_chain)
    rotate_attestor = _blocking(AsyncClient.rotate_attestor)
    chain_request = _blocking(AsyncClient.chain_request)
    logs = _blocking(AsyncClient.logs)
    wait = _blocking(AsyncClient.wait)
    upload_blob = _blocking(AsyncClient.upload_blob)
    download_blob = _blocking(AsyncClient.download_blob)
    register_node = _blocking(AsyncClient.register_node)
    heartbeat = _blocking(AsyncClient.heartbeat)
    poll = _blocking(AsyncClient.poll)
    node = _blocking(AsyncClient.node)
    start_job = _blocking(AsyncClient.start_job)
    finish_job = _blocking(AsyncClient.finish_job)
    fail_job = _blocking(AsyncClient.fail_job)
    push_logs = _blocking(AsyncClient.push_logs)
    report_service = _blocking(AsyncClient.report_service)
    register_key = _blocking(AsyncClient.register_key)
    keys = _blocking(AsyncClient.keys)
    revoke_key = _blocking(AsyncClient.revoke_key)
    usage = _blocking(AsyncClient.usage)
    usage_records = _blocking(AsyncClient.usage_records)
    usage_record = _blocking(AsyncClient.usage_record)
    deploy = _blocking(AsyncClient.deploy)
    deployments = _blocking(AsyncClient.deployments)
    undeploy = _blocking(AsyncClient.undeploy)
    health = _blocking(AsyncClient.health)
    ledger_summary = _blocking(AsyncClient.ledger_summary)
    ledger_verify = _blocking(AsyncClient.ledger_verify)
    market_stats = _blocking(AsyncClient.market_stats)
    nodes = _blocking(AsyncClient.nodes)
    node_stats = _blocking(AsyncClient.node_stats)
    ledger_entries = _blocking(AsyncClient.ledger_entries)
    ledger_accounts = _blocking(AsyncClient.ledger_accounts)
    tokenomics = _blocking(AsyncClient.tokenomics)
    validate_job = _blocking(AsyncClient.validate_job)

    def follow_logs(self, job_id: str, after: int = -1) -> Iterator[LogChunkView]:
        """Log chunks as the node sends them, until the job ends (blocks between them)."""
        chunks = self._async.follow_logs(job_id, after)
        try:
            while True:
                try:
                    yield self.run(anext(chunks))
                except StopAsyncIteration:
                    return
        finally:
            if self._loop.is_running():
                self.run(chunks.aclose())

    def close(self) -> None:
        if self._loop.is_running():
            self.run(self._async.aclose())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _make_async(url: str | None, keypair: Keypair | None,
                      kwargs: dict[str, Any]) -> AsyncClient:
    return AsyncClient(url, keypair, **kwargs)


async def _await(aw: Awaitable[T]) -> T:
    return await aw


def operator_consent(operator: Keypair, node: str) -> str:
    """``operator``'s signature vouching for ``node`` (base58), for node registration."""
    return str(operator.sign_message(node_operator_message(node)))


def reporter_consent(operator: Keypair, reporter: str) -> str:
    """The operator's signature (base58) that takes ``reporter`` as its price reporter key.

    >>> op, rep = Keypair(), Keypair()
    >>> from nosgrid.core.pricing import reporter_consent_message, signature_valid
    >>> sig = reporter_consent(op, str(rep.pubkey()))
    >>> signature_valid(str(op.pubkey()), sig, reporter_consent_message(str(rep.pubkey())))
    True
    """
    return str(operator.sign_message(reporter_consent_message(reporter)))


def nos(amount: int) -> str:
    """Format base units as NOS (re-exported for SDK users)."""
    return format_nos(amount)
