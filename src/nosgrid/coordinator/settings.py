"""Coordinator settings: where state lives, who the admin is, limits and timings."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from nosgrid.core.budgets import DEFAULT_BUDGETS, BudgetParams
from nosgrid.core.money import BASE_UNITS_PER_NOS
from nosgrid.core.pricing import DEFAULT_ORACLE, OracleParams


def default_data_dir() -> Path:
    """``$NOSGRID_HOME`` or ``~/.local/share/nosgrid``."""
    env = os.environ.get("NOSGRID_HOME")
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "nosgrid"


@dataclass(frozen=True)
class CoordinatorSettings:
    """Everything the coordinator can be told at start-up."""

    db: str = ""
    data_dir: Path = field(default_factory=default_data_dir)
    #: base58 public keys allowed to create markets
    admin_keys: frozenset[str] = frozenset()
    #: ``local`` (NOS only in the ledger), ``litesvm`` (in-process chain) or ``solana`` (RPC)
    settlement: str = "local"
    solana_rpc_url: str = "http://127.0.0.1:8899"
    solana_commitment: str = "confirmed"
    #: the settlement authority (delegate, vault owner, fee payer); solana needs one
    solana_authority_keypair: Path | None = None
    #: JSON with the market's mint, treasury and vaults (DATA_DIR/solana-accounts.json)
    solana_accounts_file: Path | None = None
    #: jobs checked and packed together per payout transaction pass (1 = one tx per job)
    settlement_batch_size: int = 1
    #: anchor the ledger head on chain every N journal entries (0 = never)
    anchor_every: int = 100
    #: publish result receipts and attestor epochs on chain (litesvm/solana settlement)
    publish_receipts: bool = True
    #: where a post that names no market goes (``nosgrid up``: ``cpu``); None: the only
    #: market, when there is exactly one (core.jobs.terms.requested_market)
    default_market: str | None = None
    #: the price oracle's parameters (docs/pricing.md): epochs, sources, bounds, stake
    oracle: OracleParams = DEFAULT_ORACLE
    #: request budgets per key and route class (core.budgets; docs/abuse.md)
    budgets: BudgetParams = DEFAULT_BUDGETS
    #: jobs one client may have queued at once, over all markets
    max_queued_per_client: int = 1_000
    #: nodes one operator key may have registered
    max_nodes_per_operator: int = 64
    #: jobs one batch post may hold
    max_batch_jobs: int = 100
    faucet: bool = False
    faucet_cap_per_hour: int = 10_000 * BASE_UNITS_PER_NOS
    max_body_bytes: int = 1 << 20
    max_blob_bytes: int = 256 << 20
    max_log_bytes_per_job: int = 8 << 20
    heartbeat_timeout_s: float = 30.0
    deadline_grace_s: int = 30
    long_poll_max_s: float = 30.0
    maintenance_interval_s: float = 2.0
    max_attempts: int = 3
    #: verification (docs/verification.md): how long an auditable job's pay is held
    audit_window_s: int = 24 * 3_600
    #: force this audit rate (bps) for every auditable job; None → the adaptive rate
    audit_rate_bps: int | None = None
    #: who may audit: clean jobs and reputation at least these (core defaults: 200, 0.5)
    auditor_min_clean_jobs: int = 200
    auditor_min_reputation: float = 0.5
    #: tiebreak runs per dispute (fewer when fewer unrelated nodes are online)
    audit_tiebreakers: int = 3

    @property
    def db_url(self) -> str:
        return self.db or str(self.data_dir / "coordinator.db")

    @property
    def attestor_dir(self) -> Path | None:
        """Where the attestor's secret keys live (None: in memory, for an in-memory DB)."""
        return None if self.db == "sqlite://" else self.data_dir / "attestor"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"
