"""The database schema (SQLAlchemy Core). Alembic's migrations create exactly these tables."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

#: one row (id=1): the last journal entry's seq and hash; updating it serialises writers
ledger_head = Table(
    "ledger_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("name", String(160), primary_key=True),
    Column("balance", BigInteger, nullable=False),
)

journal = Table(
    "journal",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", String(64), nullable=False, unique=True),
    Column("prev_hash", String(64), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("ref", String(160), nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("meta", Text, nullable=False),
    Index("ix_journal_ref", "ref"),
)

postings = Table(
    "postings",
    metadata,
    Column("entry_seq", BigInteger, ForeignKey("journal.seq"), primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("src", String(160), nullable=False),
    Column("dst", String(160), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Index("ix_postings_src", "src"),
    Index("ix_postings_dst", "dst"),
)

markets = Table(
    "markets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("params", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

specs = Table(
    "specs",
    metadata,
    Column("hash", String(64), primary_key=True),
    Column("body", Text, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("rowid_", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("client", String(64), nullable=False),
    Column("market", String(64), nullable=False),
    Column("spec_hash", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("node", String(64)),
    Column("timeout", Integer, nullable=False),
    Column("deposit", BigInteger, nullable=False),
    Column("price_per_second", BigInteger, nullable=False),
    Column("fee_bps", Integer, nullable=False),
    Column("stakers_share_bps", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("assigned_at", BigInteger),
    Column("started_at", BigInteger),
    Column("finished_at", BigInteger),
    Column("seconds_used", Integer, nullable=False),
    Column("fault", String(16)),
    Column("reason", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("result", Text, nullable=False),
    #: how the last run ended (core.jobs.state.Outcome); NULL while it has not
    Column("outcome", String(16)),
    #: what it was posted under (core.jobs.terms.JobTerms as JSON)
    Column("terms", Text, nullable=False),
    #: the queue's order: posted_at less the job's bounded head start (core.jobs.queueing)
    Column("queue_at", BigInteger),
    Index("ix_jobs_client", "client", "rowid_"),
    Index("ix_jobs_queue", "state", "market", "queue_at", "rowid_"),
    Index("ix_jobs_client_state", "client", "state"),
    Index("ix_jobs_state_market", "state", "market", "rowid_"),
    Index("ix_jobs_node", "node", "state"),
    Index("ix_jobs_market_finished", "market", "finished_at"),
)

nodes = Table(
    "nodes",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("hardware", Text, nullable=False),
    Column("markets", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("registered_at", BigInteger, nullable=False),
    Column("last_heartbeat", Float, nullable=False),
    Column("waiting_since", Float),
    #: the markets the operator asked for (JSON list); NULL: any it qualifies for
    Column("pinned_markets", Text),
    #: the operator key that vouched for the node (NULL: the node is its own operator)
    Column("operator", String(64)),
    Index("ix_nodes_operator", "operator"),
)

nonces = Table(
    "nonces",
    metadata,
    Column("pubkey", String(64), primary_key=True),
    Column("nonce", String(64), primary_key=True),
    Column("at", Float, nullable=False),
    Index("ix_nonces_at", "at"),
)

blobs = Table(
    "blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("owner", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

#: who may download a blob: its uploader, a job's node for its inputs, a client for outputs
blob_grants = Table(
    "blob_grants",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("pubkey", String(64), primary_key=True),
)

job_logs = Table(
    "job_logs",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("stream", String(8), nullable=False),
    Column("at", Float, nullable=False),
    Column("data", LargeBinary, nullable=False),
)

faucet_grants = Table(
    "faucet_grants",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pubkey", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("at", BigInteger, nullable=False),
    Index("ix_faucet_pubkey_at", "pubkey", "at"),
)

#: the economic rules' small state objects (stake accounts, the stakers' reward pool,
#: reputations, offence histories) as JSON: their integers can exceed 64 bits (the
#: reward accumulator is scaled by 1e24), and the rules own their shape
protocol_state = Table(
    "protocol_state",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("body", Text, nullable=False),
)

#: verification (core/verification/case.py): one case per held job, its runs on other
#: nodes, and per node the clean jobs since its last fault and its recent partners
verification_cases = Table(
    "verification_cases",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("node", String(64), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("replicas", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("result_seq", BigInteger, nullable=False),
    Column("result_hash", String(64), nullable=False),
    Column("held_at", BigInteger, nullable=False),
    Column("beacon", String(64), nullable=False),
    Column("rate_bps", Integer, nullable=False),
    Column("draw", Integer, nullable=False),
    Column("audited", Boolean, nullable=False),
    Column("decided_at", BigInteger),
    Column("release_at", BigInteger),
    Column("auditor", String(64)),
    Column("audit_job", String(64)),
    Column("auditors", Text, nullable=False),
    Column("comparison", Text),
    Column("panel_closed", Boolean, nullable=False),
    Column("panel", Text, nullable=False),
    Column("verdict", String(16)),
    Column("verdict_entry", String(64), nullable=False),
    Column("slashed", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Index("ix_verification_cases_status", "status"),
)

verification_runs = Table(
    "verification_runs",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("case_job", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("role", String(16), nullable=False),
    Column("node", String(64), nullable=False),
    Column("slot", Integer, nullable=False),
    Column("paid_by", String(8), nullable=False),
    Column("paid", Boolean),
    Column("retired", Boolean, nullable=False),
    Index("ix_verification_runs_case", "case_job", "seq"),
)

audit_records = Table(
    "audit_records",
    metadata,
    Column("node", String(64), primary_key=True),
    Column("clean_jobs", Integer, nullable=False),
    Column("faults", Integer, nullable=False),
)

audit_partners = Table(
    "audit_partners",
    metadata,
    Column("node", String(64), primary_key=True),
    Column("partner", String(64), primary_key=True),
    Column("at", BigInteger, nullable=False),
)

#: settlement transactions to send (issue 9): a payout per settled job, ledger anchors and
#: stake withdrawals; written in the same transaction as the journal entry they pay out
settlement_outbox = Table(
    "settlement_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("job_id", String(64)),
    Column("entry_hash", String(64), nullable=False),
    Column("seq", BigInteger),
    Column("legs", Text, nullable=False),
    Column("client", String(64)),
    Column("status", String(16), nullable=False),
    Column("signature", String(96)),
    Column("tx", LargeBinary),
    Column("last_valid_block_height", BigInteger),
    Column("attempts", Integer, nullable=False),
    Column("error", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("confirmed_at", Float),
    Index("ix_outbox_status", "status", "id"),
    Index("ix_outbox_client", "client", "status"),
    Index("ix_outbox_kind_entry", "kind", "entry_hash", unique=True),
)

#: OpenAI gateway (issue 10): what a signed API key cannot say about itself — revocation
#: and spend — plus usage per key and model, service endpoints nodes report, deployments
gateway_keys = Table(
    "gateway_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("cap", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("models", Text, nullable=False),
    Column("label", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger),
    Column("spent", BigInteger, nullable=False),
    #: the key's gateway holds summed over all workers (the cap bounds spent + held)
    Column("held", BigInteger, nullable=False),
    Index("ix_gateway_keys_owner", "owner"),
)

gateway_usage = Table(
    "gateway_usage",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("model", String(128), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("requests", BigInteger, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("cost", BigInteger, nullable=False),
    Index("ix_gateway_usage_owner", "owner"),
)

gateway_services = Table(
    "gateway_services",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("op_id", String(64), primary_key=True),
    Column("node", String(64), nullable=False),
    Column("model", String(128), nullable=False),
    Column("endpoint", String(255), nullable=False),
    Column("healthy", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    #: when a gateway worker last sent it a request (idle replicas stop on this)
    Column("last_used_at", Float),
)

gateway_deployments = Table(
    "gateway_deployments",
    metadata,
    Column("model", String(128), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("market", String(64), nullable=False),
    Column("spec", Text, nullable=False),
    Column("min_replicas", Integer, nullable=False),
    Column("max_replicas", Integer, nullable=False),
    Column("idle_s", Integer, nullable=False),
    Column("prompt_price", BigInteger, nullable=False),
    Column("completion_price", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

#: gateway workers (issue 13): one row per coordinator process running the gateway, its
#: lease renewed every tick. A worker owns its holds (``gwhold:<kid>:<worker>``) and its
#: charges; when its lease expires another worker pays those and releases these.
gateway_workers = Table(
    "gateway_workers",
    metadata,
    Column("worker", String(32), primary_key=True),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
)

#: one row per billed gateway request, written when it ends; the worker's next flush pays
#: it (one journal entry per key owner) and deletes it, in one transaction
gateway_charges = Table(
    "gateway_charges",
    metadata,
    Column("worker", String(32), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("kid", String(64), nullable=False),
    Column("owner", String(64), nullable=False),
    Column("model", String(128), nullable=False),
    Column("node", String(64), nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("cost", BigInteger, nullable=False),
    Column("at", Float, nullable=False),
    #: the request's usage record (sha256, '' for embeddings): issue 14
    Column("record", String(64), nullable=False, server_default=""),
)

#: gateway usage records (issue 14): one row per billed chat/completion request; the
#: record itself is a content-addressed blob (``hash``), pruned after its retention
gateway_records = Table(
    "gateway_records",
    metadata,
    Column("hash", String(64), primary_key=True),
    Column("kid", String(64), nullable=False),
    Column("owner", String(64), nullable=False),
    Column("node", String(64), nullable=False),
    Column("model", String(128), nullable=False),
    Column("model_digest", String(64), nullable=False),
    Column("job", String(64), nullable=False),
    Column("cost", BigInteger, nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("replayable", Integer, nullable=False),
    #: the journal entry that billed it (its successor's hash is the audit beacon)
    Column("entry", BigInteger),
    #: recorded → sampled | passed (not drawn) → clean | faulted; pruned once expired
    Column("state", String(16), nullable=False),
    Column("verdict", Text),
    #: when its cost left the audit hold (paid out or refunded); None while held or unheld
    Column("settled_at", BigInteger),
    Index("ix_gateway_records_owner", "owner", "at"),
    Index("ix_gateway_records_state", "state", "node", "model_digest"),
)

#: the price oracle (core/pricing.py, issue 16): reporter keys and the operator each one
#: counts for (``consent``: the operator's signature taking the key, '' for itself)
oracle_reporters = Table(
    "oracle_reporters",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("operator", String(64), nullable=False),
    Column("consent", String(128), nullable=False),
    Column("registered_at", BigInteger, nullable=False),
    Index("ix_oracle_reporters_operator", "operator"),
)

#: what the sources said: nodes' asks (the latest per node and market) and reporters'
#: signed reports per epoch (``signed``: the request's path, timestamp, nonce and body, so
#: anyone can check ``signature``; ``hash`` is the sha256 of the signed bytes). A report
#: that is evidence of an equivocation is never pruned. ``market`` may be ``nos_usd``.
oracle_reports = Table(
    "oracle_reports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hash", String(64), nullable=False, unique=True),
    Column("source", String(64), nullable=False),
    Column("operator", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("market", String(64), nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("price", BigInteger, nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("signature", String(128), nullable=False),
    Column("signed", Text, nullable=False),
    Column("evidence", Boolean, nullable=False),
    Index("ix_oracle_reports_market_at", "market", "at"),
    Index("ix_oracle_reports_source", "source", "market", "epoch"),
)

#: how much each operator's values count in a market (deviation loses weight)
oracle_standings = Table(
    "oracle_standings",
    metadata,
    Column("market", String(64), primary_key=True),
    Column("operator", String(64), primary_key=True),
    Column("weight_bps", Integer, nullable=False),
    Column("deviations", Integer, nullable=False),
    Column("epoch", BigInteger, nullable=False),
)

#: each closed epoch's published price (NULL: too few sources, ``reason`` says why)
oracle_prices = Table(
    "oracle_prices",
    metadata,
    Column("market", String(64), primary_key=True),
    Column("epoch", BigInteger, primary_key=True),
    Column("price", BigInteger),
    Column("sources", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", BigInteger, nullable=False),
)

#: result receipts (issue 17): the signed 172-byte layout of core.receipts, one per job and
#: verdict (a held job gets ``held`` first, its final verdict when the audit ends)
receipts = Table(
    "receipts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(64), nullable=False),
    Column("verdict", String(16), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("receipt", LargeBinary, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("attestor", String(64), nullable=False),
    Column("issued_at", BigInteger, nullable=False),
    Index("ix_receipts_job_verdict", "job_id", "verdict", unique=True),
)

#: the attestor key of each epoch and the previous key's signature over it (core.attestor)
attestor_epochs = Table(
    "attestor_epochs",
    metadata,
    Column("epoch", Integer, primary_key=True),
    Column("key", String(64), nullable=False),
    Column("signature", String(128), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

#: token transfers into the request vault, by the signature of the transaction that paid
#: (seen once: a replayed or re-read signature is the same row)
chain_requests = Table(
    "chain_requests",
    metadata,
    Column("signature", String(96), primary_key=True),
    Column("payer", String(64), nullable=False),
    Column("source", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("memo", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("job_id", String(64)),
    Column("reply_key", String(64)),
    Column("reason", Text, nullable=False),
    Column("slot", BigInteger, nullable=False),
    Column("seen_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_chain_requests_status", "status"),
    Index("ix_chain_requests_job", "job_id"),
)

#: refunds out of the request vault, by the ledger entry (and outbox row) that books them:
#: what the reason Memo says
chain_refunds = Table(
    "chain_refunds",
    metadata,
    Column("entry_hash", String(64), primary_key=True),
    Column("request", String(96), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("destination", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_chain_refunds_request", "request"),
)

#: where each chain watcher stopped reading (the newest signature it processed)
chain_cursors = Table(
    "chain_cursors",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", String(96), nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

#: a client's retried requests (``Idempotency-Key``): the first answer, for a day
idempotency_records = Table(
    "idempotency_records",
    metadata,
    Column("owner", String(64), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("route", String(200), nullable=False),
    Column("body_sha256", String(64), nullable=False),
    Column("status", Integer, nullable=False),
    Column("response", Text, nullable=False),
    Column("at", BigInteger, nullable=False),
    Index("ix_idempotency_at", "at"),
)

#: seconds each node was seen online, per hour (``hour`` = unix seconds // 3600), credited
#: by its heartbeats; ``last_at`` is the latest heartbeat counted (the next one credits the
#: gap since). The dashboard's uptime over 24 h / 7 d is read from here.
node_uptime = Table(
    "node_uptime",
    metadata,
    Column("node_id", String(64), primary_key=True),
    Column("hour", BigInteger, primary_key=True),
    Column("seconds", Float, nullable=False),
    Column("last_at", Float, nullable=False),
)

#: deployments (core.deployments): the state (config, revision, flags) as JSON
deployments = Table(
    "deployments",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("owner", String(64), nullable=False),
    Column("state", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("owner", "name", name="uq_deployments_owner_name"),
)
deployment_revisions = Table(
    "deployment_revisions",
    metadata,
    Column("deployment_id", String(64), primary_key=True),
    Column("revision", Integer, primary_key=True),
    Column("spec_hash", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)
deployment_replicas = Table(
    "deployment_replicas",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("deployment_id", String(64), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("replaces", String(64)),
    Column("stopping", Boolean, nullable=False),
    Column("posted_at", BigInteger, nullable=False),
    Index("ix_deployment_replicas_deployment", "deployment_id"),
)
deployment_events = Table(
    "deployment_events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("deployment_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Column("job_id", String(64)),
    Column("at", BigInteger, nullable=False),
    Index("ix_deployment_events_deployment", "deployment_id", "seq"),
)
