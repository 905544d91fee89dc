"""The gateway's knobs, apart from the runtime so that every gateway module can read them."""

from __future__ import annotations

from dataclasses import dataclass, field

from nosgrid.core.metering import Prices
from nosgrid.core.verification.inference import InferenceAuditParams, SamplerParams


@dataclass(frozen=True)
class GatewaySettings:
    """Knobs of the gateway; prices are NOS base units per token."""

    flush_every: int = 64  # requests between journal entries
    flush_interval_s: float = 2.0  # … or this long, whichever comes first
    topup_chunk: int = 1_000_000  # moved wallet → hold at a time (1 NOS)
    fee_bps: int = 1_000  # treasury's share of token revenue
    default_prices: Prices = field(default_factory=Prices)
    default_max_tokens: int = 256  # when a request names none (bounds the reservation)
    max_tokens_limit: int = 8_192
    idle_release_s: float = 300.0  # an unused key's hold returns to its owner
    cold_start_timeout_s: float = 300.0
    unhealthy_wait_s: float = 15.0  # how long a request waits for a flapping replica
    tick_s: float = 1.0
    scale_up_outstanding: int = 4  # start another replica above this per replica
    upstream_timeout_s: float = 600.0
    #: a worker (coordinator process) whose lease is older than this is dead: another one
    #: pays its charges and returns its holds
    worker_lease_s: float = 30.0
    #: how stale a key's revocation may be: its row is read again after this long
    key_recheck_s: float = 1.0
    #: charges of requests ending within this window share one commit (0: each request
    #: commits its own before answering; measured in docs/gateway.md, "Performance")
    charge_batch_s: float = 0.005
    #: record every chat/completion request as a content-addressed usage record (issue 14)
    record_requests: bool = True
    #: the sampler a request gets where it names none (sent upstream explicitly)
    sampler: SamplerParams = field(default_factory=SamplerParams)
    #: inference audits: rate per (node, model digest), thresholds, hold and retention
    audit: InferenceAuditParams = field(default_factory=InferenceAuditParams)
    #: hold the cost of recorded requests in ``gwaudit:<owner>:<node>`` for the audit window
    #: (``audit.audit_window_s``) instead of paying the node at the flush
    audit_hold: bool = False
    #: how often the tick draws audits, ends due holds and prunes records
    audit_every_s: float = 5.0
