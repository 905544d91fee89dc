"""What the API answers: one pydantic model per response shape, shared by server and SDK.

The coordinator's routes declare these as their ``response_model`` (so ``/openapi.json``
describes every answer) and the SDK parses the same JSON back into them
(``nosgrid.sdk.models`` re-exports this module). Money is integer base units; the
``*_nos`` fields are the same amounts as decimal NOS strings, for display only.

Models ignore keys they do not know, so an SDK keeps reading a newer coordinator. A key
that a route may leave out is a field with a default (``None`` unless said otherwise).

Example::

    job = JobView.model_validate(response.json())
    if job.state in ENDED:
        print(job.settlement.cost_nos if job.settlement else job.deposit_nos)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nosgrid.core.jobs.state import JobState
from nosgrid.core.markets import HardwareReport, MarketParams

__all__ = [
    "AccountView",
    "BlobView",
    "ClaimView",
    "Comparison",
    "DeploymentEvent",
    "DeploymentEvents",
    "DeploymentList",
    "DeploymentReplica",
    "DeploymentStatus",
    "DeploymentView",
    "ErrorBody",
    "ErrorDetail",
    "FaucetView",
    "HealthView",
    "HeartbeatView",
    "JobList",
    "JobPayouts",
    "JobResultView",
    "JobSpecView",
    "JobView",
    "JournalEntryView",
    "JournalView",
    "KeyDetail",
    "KeyList",
    "KeyRevoked",
    "KeyView",
    "LedgerSummary",
    "LedgerVerifyReport",
    "LogChunkView",
    "LogStreamEnd",
    "LogsStored",
    "LogsView",
    "MarketDetail",
    "MarketNodeView",
    "MarketParams",
    "MarketPriceView",
    "MarketView",
    "NodeStanding",
    "NodeView",
    "NosUsdView",
    "OnchainAccountCheck",
    "OnchainVerifyReport",
    "OracleEpochView",
    "OracleReportView",
    "OracleSourceView",
    "PayoutLegView",
    "PayoutView",
    "PollView",
    "PostedJob",
    "PostedJobs",
    "RegistrationView",
    "ReplicaView",
    "ReporterView",
    "ServiceDeploymentList",
    "ServiceDeploymentView",
    "ServiceView",
    "SettlementSplit",
    "SolanaAccountView",
    "SolanaFaucetView",
    "SolanaInfo",
    "SolanaSubmitted",
    "StakeView",
    "Undeployed",
    "UsageRow",
    "UsageView",
    "VerificationRun",
    "VerificationSummary",
    "VerificationView",
    "View",
]


class View(BaseModel):
    """Base of every response model: unknown keys are ignored (newer servers add some)."""

    model_config = ConfigDict(extra="ignore")


# ------------------------------------------------------------------------------ errors


class ErrorDetail(View):
    """``code`` is stable (see ``nosgrid.core.errors``); ``message`` says what to do."""

    model_config = ConfigDict(extra="allow")

    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorBody(View):
    """The body of every 4xx/5xx answer of the API."""

    error: ErrorDetail


# ------------------------------------------------------------------------------ accounts


class AccountView(View):
    pubkey: str
    balance: int
    balance_nos: str
    stake: int
    stake_nos: str


class JournalEntryView(View):
    """One posting touching the account; ``delta`` is what it changed there."""

    seq: int
    kind: str
    ref: str
    at: int
    src: str
    dst: str
    amount: int
    amount_nos: str
    delta: int
    entry_hash: str


class JournalView(View):
    entries: list[JournalEntryView]
    #: pass as ``before`` for the next (older) page; None on the last page
    next: int | None = None


class FaucetView(View):
    pubkey: str
    balance: int
    balance_nos: str


class BlobView(View):
    sha256: str
    size: int


# ------------------------------------------------------------------------------ jobs


class SettlementSplit(View):
    """Where a settled job's escrow went."""

    node_pay: int
    treasury_fee: int
    stakers_fee: int
    refund: int
    cost_nos: str


class JobView(View):
    """A job: base units plus NOS strings; ``settlement`` once it is settled."""

    id: str
    client: str
    market: str
    state: JobState
    node: str | None = None
    spec_hash: str
    timeout: int
    deposit: int
    deposit_nos: str
    price_per_second: int
    created_at: int
    assigned_at: int | None = None
    started_at: int | None = None
    finished_at: int | None = None
    seconds_used: int = 0
    fault: Literal["client", "node"] | None = None
    reason: str = ""
    attempts: int = 0
    result: dict[str, Any] = Field(default_factory=dict)
    settlement: SettlementSplit | None = None
    #: how the run ended for the client (filled by coordinators that record it)
    outcome: str | None = None
    #: a market quoted in USD: the price oracle's NOS/USD rate (µUSD per NOS) its USD price
    #: was converted at when it was posted (``price_per_second`` is the result); None: the
    #: job is priced in NOS (or no rate existed and the configured NOS price was used)
    nos_usd_rate: int | None = None


class PostedJob(JobView):
    """A job just posted, and how its market was chosen: ``market_chosen_by`` is
    ``request``, ``definition`` (``meta.nosgrid.market``), ``default`` (the coordinator's)
    or ``only`` (the only market); ``market_why`` says it in words."""

    market_chosen_by: Literal["request", "definition", "default", "only"] | None = None
    market_why: str = ""
    #: posted without a max price: the reference price × timeout, as a suggestion (the
    #: job is charged as usual), where it comes from (``oracle``/``configured``) and why
    suggested_max_price: int | None = None
    suggested_max_price_nos: str | None = None
    suggested_price_source: Literal["oracle", "configured"] | None = None
    suggested_price_why: str = ""
    #: how ``price_per_second`` was set: the market's NOS price, or its USD price at the
    #: oracle's NOS/USD rate (``nos_usd_rate``), or the configured fallback and why
    charged_reason: str = ""


class PostedJobs(View):
    """The jobs of a batch post, in the order they were sent."""

    jobs: list[PostedJob]


class JobList(View):
    jobs: list[JobView]
    #: pass as ``cursor`` for the next page; None on the last page
    next: int | None = None


class JobSpecView(View):
    spec_hash: str
    spec: dict[str, Any]


class JobResultView(View):
    id: str
    state: JobState
    result: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""


class LogChunkView(View):
    seq: int
    stream: str
    at: float
    data: str


class LogsView(View):
    chunks: list[LogChunkView]
    #: pass as ``after`` to read on
    next: int


class LogStreamEnd(View):
    """The last line of a followed log stream: the job is no longer running."""

    end: Literal[True]
    #: the job's state (a JobState value)
    state: str


class LogsStored(View):
    stored: int
    next_seq: int
    truncated: bool


# ------------------------------------------------------------------------------ price oracle


class OracleSourceView(View):
    """One independent operator's value in an oracle epoch (its keys collapsed to one)."""

    operator: str
    value: int
    #: its standing × the weight of the strongest kind it used, in basis points
    weight: int
    kinds: list[Literal["ask", "settled", "report"]]
    #: rejected as an outlier (farther from the median than the MAD bound)
    outlier: bool = False


class OracleEpochView(View):
    """The oracle's aggregate for one market (or ``nos_usd``: the NOS/USD rate in µUSD
    per NOS) and epoch. ``price`` None: too few fresh independent sources (``reason``).
    ``final``: the epoch closed and this is its published price; otherwise it is the
    open epoch's, from the sources fresh now."""

    market: str
    epoch: int
    price: int | None = None
    reason: str
    final: bool = False
    sources: int
    min_sources: int
    median: int | None = None
    #: the lower and upper medians of every fresh source: the price never leaves them
    band_low: int | None = None
    band_high: int | None = None
    #: the previous published price (the move bound's anchor) and its epoch
    previous: int | None = None
    previous_epoch: int | None = None
    #: the move bound held the price back this epoch
    bounded: bool = False
    stale: int = 0
    duplicates: int = 0
    operators: list[OracleSourceView] = Field(default_factory=list)
    #: the keys that signed two prices for this epoch (slashed), by operator
    equivocators: list[str] = Field(default_factory=list)


class MarketPriceView(View):
    """A market's reference price per second: the oracle's published price
    (``source: oracle``), or the market's configured price when the oracle has none
    (``source: configured``, ``reason`` says why); what a job posted now is charged
    (``charged_price_per_second``: the configured NOS price, or the market's USD price at
    the oracle's NOS/USD rate ``nos_usd_rate``); and the open epoch in progress."""

    market: str
    source: Literal["oracle", "configured"]
    reason: str
    price_per_second: int
    price_per_second_nos: str
    #: the closed epoch the oracle price was published for
    epoch: int | None = None
    configured_price_per_second: int
    charged_price_per_second: int
    charged_reason: str
    #: the market's own USD price (µUSD per second); None: priced in NOS
    price_usd_micros_per_second: int | None = None
    #: the published NOS/USD rate, µUSD per NOS (None: the oracle has none)
    nos_usd_rate: int | None = None
    #: the reference price in µUSD per second at that rate
    price_usd_micros: int | None = None
    provisional: OracleEpochView


class NosUsdView(View):
    """The oracle's published NOS/USD rate (µUSD per NOS; ``rate_usd`` as dollars), or
    none with the reason, and the open epoch in progress."""

    rate: int | None = None
    rate_usd: str | None = None
    epoch: int | None = None
    reason: str
    provisional: OracleEpochView


class ReporterView(View):
    """A registered price reporter key and the operator it counts for."""

    key: str
    operator: str
    registered_at: int
    #: the operator's active stake (base units) and the minimum a reporter needs
    stake: int
    min_stake: int


class OracleReportView(View):
    """A stored report or ask. ``status``: ``accepted``, ``duplicate`` (the same price
    again: the first report answers), or ``equivocation`` (a second price for the epoch:
    both reports are evidence, the operator was slashed ``slashed`` base units)."""

    hash: str
    source: str
    operator: str
    kind: Literal["ask", "settled", "report"]
    market: str
    epoch: int
    price: int
    at: int
    signature: str
    #: what the key signed: path, timestamp, nonce and the body (check it with the key)
    signed: dict[str, Any] = Field(default_factory=dict)
    evidence: bool = False
    status: Literal["accepted", "duplicate", "equivocation", "stored"] = "stored"
    slashed: int = 0
    #: an equivocation: the hashes of both conflicting reports
    conflicts_with: list[str] = Field(default_factory=list)


# ------------------------------------------------------------------------------ markets


MarketView = MarketParams
"""A market's terms (the model markets are created from)."""


class MarketDetail(MarketParams):
    """A market's terms and how many nodes serve it now."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    nodes_online: int
    nodes_waiting: int
    #: the reference price the oracle gives it now (or its configured price, and why)
    price: MarketPriceView | None = None


class NodeStanding(View):
    """Stake, reputation and jail state of a node."""

    stake: int
    reputation: float
    jobs_done: int
    offences: int
    jailed_until: int | None = None


class MarketNodeView(NodeStanding):
    id: str
    status: str


# ------------------------------------------------------------------------------ nodes


class RegistrationView(View):
    node_id: str
    markets: list[str]
    #: market → why this node may not serve it
    rejected: dict[str, list[str]] = Field(default_factory=dict)


class HeartbeatView(View):
    ok: bool
    #: the markets the node serves now (they follow new markets and its stake)
    markets: list[str] = Field(default_factory=list)


class PollView(View):
    """A job assigned to the polling node and its definition, or both None after the wait."""

    job: JobView | None = None
    spec: str | None = None


class NodeView(NodeStanding):
    id: str
    hardware: HardwareReport
    markets: list[str]
    status: str
    registered_at: int
    last_heartbeat: float
    waiting_since: float | None = None
    #: the markets its operator pinned; None: any market it qualifies for
    pinned_markets: list[str] | None = None
    balance: int
    balance_nos: str


# ------------------------------------------------------------------------------ staking


class StakeView(View):
    """The signer's stake; only ``owner`` and ``staked`` when there is none."""

    owner: str
    staked: bool
    amount: int | None = None
    amount_nos: str | None = None
    days: int | None = None
    multiplier_bps: int | None = None
    score: int | None = None
    staked_at: int | None = None
    unstaked_at: int | None = None
    withdrawable: int | None = None
    withdrawable_nos: str | None = None
    pending_rewards: int | None = None
    pending_rewards_nos: str | None = None
    active: bool | None = None


class ClaimView(StakeView):
    claimed: int
    claimed_nos: str


# ------------------------------------------------------------------------------ system


class HealthView(View):
    ok: bool
    ledger_seq: int | None = None
    #: "local", "litesvm" or "solana"
    settlement: str


class LedgerSummary(View):
    """Protocol account balances and the ledger head."""

    treasury: int
    rewards_pool: int
    stakers_pool: int
    entries: int
    head_hash: str | None = None


class LedgerVerifyReport(View):
    ok: bool
    entries: int
    accounts: int
    #: minted supply, in NOS
    supply: str
    head_hash: str
    problems: list[str] = Field(default_factory=list)


# ------------------------------------------------------------------------------ verification


class VerificationRun(View):
    """One audit, replica or tiebreak run of a verified job."""

    job: str
    role: str
    node: str
    slot: int = 0
    paid_by: Literal["client", "pool"]
    #: whether its runner was paid (client-paid replicas, once the verdict is in)
    paid: bool | None = None


class Comparison(View):
    match: bool
    reason: str = ""
    max_abs_error: float | None = None


class VerificationView(View):
    """How a job is being checked. ``status``: not_verified, not_held, held, waiting,
    auditing, disputed, passed, released, or a verdict."""

    job: str
    state: JobState
    status: str
    mode: str
    replicas: int | None = None
    rate_bps: int | None = None
    audited: bool | None = None
    beacon: str | None = None
    result_hash: str | None = None
    release_at: int | None = None
    auditor: str | None = None
    auditors: list[str] | None = None
    audit_job: str | None = None
    panel: list[str] | None = None
    verdict: str | None = None
    verdict_entry: str | None = None
    comparison: Comparison | None = None
    slashed: list[str] | None = None
    reason: str | None = None
    runs: list[VerificationRun] = Field(default_factory=list)


class VerificationSummary(View):
    jobs_held: int
    by_status: dict[str, int]
    audit_runs: int
    audit_pool: int
    audit_compute_seconds: int
    all_compute_seconds: int
    #: audit compute ÷ all compute
    audit_overhead: float


# ------------------------------------------------------------------------------ gateway


class ServiceView(View):
    job_id: str
    model: str
    healthy: bool


class KeyView(View):
    """A registered gateway API key (the key itself never comes back)."""

    kid: str
    owner: str
    cap: int
    cap_nos: str
    expires_at: int
    models: list[str]


class KeyDetail(KeyView):
    label: str = ""
    created_at: int
    revoked_at: int | None = None
    spent: int
    spent_nos: str
    #: reserved by requests in flight
    hold: int = 0


class KeyList(View):
    keys: list[KeyDetail]


class KeyRevoked(View):
    kid: str
    revoked: bool


class UsageRow(View):
    kid: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost: int
    cost_nos: str


class UsageView(View):
    usage: list[UsageRow]


class RequestRecordRow(View):
    """One of the caller's recorded gateway requests (issue 14) and its audit: ``state`` is
    recorded, passed (not drawn), sampled, clean or faulted; ``verdict`` the evidence."""

    hash: str
    model: str
    node: str
    model_digest: str
    cost: int
    at: int
    entry: int | None
    state: str
    verdict: dict[str, Any] | None = None


class RequestRecordList(View):
    records: list[RequestRecordRow]


class DeploymentView(View):
    """A model deployment; prices are base units per token."""

    model: str
    owner: str
    market: str
    min: int
    max: int
    idle_s: int
    prompt_price: int
    completion_price: int
    created_at: int


class ReplicaView(View):
    job_id: str
    node: str
    healthy: bool
    outstanding: int


class DeploymentStatus(DeploymentView):
    replicas: list[ReplicaView]
    #: jobs posted for replicas that are not healthy yet
    starting: list[str]
    #: the last cold starts, seconds
    cold_starts_s: list[float]


class DeploymentList(View):
    deployments: list[DeploymentStatus]


class Undeployed(View):
    model: str
    deleted: bool


# ------------------------------------------------------------------------------ Solana


class SolanaInfo(View):
    """What a client needs to approve the market: mint, delegate, vaults, a blockhash."""

    settlement: str
    cluster: str
    mint: str
    authority: str
    treasury: str
    stake_vault: str
    rewards_vault: str
    audit_vault: str = ""
    emissions_vault: str = ""
    #: where a transfer with a ``nosgrid request`` Memo buys a job (docs/composability.md)
    request_vault: str = ""
    decimals: int
    recent_blockhash: str


class SolanaAccountView(View):
    """On-chain balance and allowance next to what the ledger holds free and reserved."""

    pubkey: str
    token_account: str
    onchain_balance: int
    onchain_balance_nos: str
    allowance: int
    allowance_nos: str
    free: int
    free_nos: str
    reserved: int
    reserved_nos: str


class SolanaSubmitted(SolanaAccountView):
    signature: str


class SolanaFaucetView(View):
    pubkey: str
    onchain_balance: int
    onchain_balance_nos: str


class PayoutLegView(View):
    destination: str
    amount: int
    account: str


class PayoutView(View):
    kind: str
    status: str
    signature: str | None = None
    attempts: int
    error: str = ""
    entry_hash: str
    legs: list[PayoutLegView]
    created_at: float
    confirmed_at: float | None = None


class JobPayouts(View):
    job_id: str
    payouts: list[PayoutView]


class OnchainAccountCheck(View):
    """One account reconciled: what the ledger says should be on chain, and what is."""

    account: str
    ledger: int
    pending: int | None = None
    leaving: int | None = None
    reserved: int | None = None
    onchain: int
    expected_onchain: int


class OnchainVerifyReport(LedgerVerifyReport):
    notes: list[str] = Field(default_factory=list)
    accounts_checked: list[OnchainAccountCheck] = Field(default_factory=list)
    anchors_checked: int = 0
    #: unconfirmed outbox rows by status
    outbox: dict[str, int] = Field(default_factory=dict)
    mint: str
    settlement: str


# ------------------------------------------------------------------------------ receipts


class ReceiptFields(View):
    """A receipt's fields decoded (``core.receipts``): digests in hex, the reply key in
    base58 (None: the job was not requested from chain)."""

    version: int
    verdict: str
    epoch: int
    seq: int
    slot: int
    market: str
    job: str
    definition: str
    result: str
    reply_key: str | None = None


class ReceiptView(View):
    """``GET /v1/jobs/{id}/receipt``: the job's current receipt, signed by ``attestor``.

    ``receipt`` is the 172-byte layout in hex, ``signature`` the attestor's ed25519
    signature over those bytes in hex (docs/composability.md); ``onchain`` the signature of
    the transaction that published it, once confirmed; ``earlier`` the verdicts of the
    job's earlier receipts (``held``)."""

    job_id: str
    verdict: str
    attestor: str
    receipt: str
    signature: str
    fields: ReceiptFields
    onchain: str | None = None
    earlier: list[str] = Field(default_factory=list)


class AttestorEpochView(View):
    epoch: int
    key: str
    #: the previous epoch's key's signature over ``nosgrid attestor epoch=N key=K``
    signature: str = ""


class AttestorChainView(View):
    """``GET /v1/attestor``: every attestor key epoch, from the market's first key."""

    current: AttestorEpochView | None = None
    epochs: list[AttestorEpochView] = Field(default_factory=list)


class ChainRefundView(View):
    amount: int
    reason: str
    #: the refund transaction once confirmed
    onchain: str | None = None


class ChainRequestView(View):
    """``GET /v1/requests/{signature}``: what became of a payment into the request vault
    (public, like the payment itself): its job (then ``GET /v1/jobs/{id}/receipt``), or
    why it was refunded; the job's result document once it has one."""

    signature: str
    payer: str
    source: str
    amount: int
    status: str
    job_id: str | None = None
    job_state: str | None = None
    reply_key: str | None = None
    reason: str = ""
    refunds: list[ChainRefundView] = Field(default_factory=list)
    result: dict[str, Any] | None = None


__all__ += ["AttestorChainView", "AttestorEpochView", "ChainRefundView", "ChainRequestView",
            "ReceiptFields", "ReceiptView"]
# ------------------------------------------------------------------ service deployments


class DeploymentReplica(View):
    """One replica job of a deployment: its revision, state and health."""

    job_id: str
    revision: int
    state: str
    node: str | None = None
    healthy: bool | None = None
    unhealthy_since: int | None = None
    replaces: str | None = None
    stopping: bool = False
    deadline: int | None = None
    #: the node's own URLs for its exposed ports (service name → URL)
    endpoints: dict[str, str] = {}


class ServiceDeploymentView(View):
    """A deployment the market keeps alive (``nosgrid deployment``; docs/deployments.md)."""

    id: str
    name: str
    owner: str
    strategy: str
    status: str
    replicas: int
    timeout: int
    market: str
    schedule: str | None = None
    max_spend: int | None = None
    overlap: str = "forbid"
    grace_s: int
    lead_s: int
    revision: int
    rolling_to: int | None = None
    spent: int
    spent_nos: str
    out_of_funds: bool = False
    created_at: int
    #: the stable URL path of each exposed port, through the coordinator
    urls: dict[str, str] = {}
    running: list[DeploymentReplica] = []
    private: bool = False


class ServiceDeploymentList(View):
    deployments: list[ServiceDeploymentView]


class DeploymentEvent(View):
    seq: int
    kind: str
    detail: str
    job_id: str | None = None
    at: int


class DeploymentEvents(View):
    events: list[DeploymentEvent]
    #: pass as ``after`` for the next ones
    next: int
