"""`nosgrid coordinator start` — serve the marketplace API with uvicorn."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from nosgrid.coordinator.settings import CoordinatorSettings, default_data_dir
from nosgrid.core.money import parse_nos
from nosgrid.core.pricing import DEFAULT_ORACLE, OracleParams

#: seconds in-flight requests get after SIGTERM before waiting long-polls are cancelled
GRACEFUL_SHUTDOWN_S = 3

app = typer.Typer(help="Run a coordinator.", no_args_is_help=True)


def _oracle(epoch_s: int, min_sources: int, stake: str) -> OracleParams:
    """The oracle's parameters from the start options (reports stay fresh 2 epochs)."""
    return replace(DEFAULT_ORACLE, epoch_seconds=epoch_s, min_sources=min_sources,
                   max_age_report_s=2 * epoch_s, min_reporter_stake=parse_nos(stake))


def settings_from(db: Path | None, data_dir: Path | None, admin: list[str] | None,
                  faucet: bool, settlement: str) -> CoordinatorSettings:
    data = data_dir or default_data_dir()
    return CoordinatorSettings(db=str(db) if db else "", data_dir=data,
                               admin_keys=frozenset(admin or []), faucet=faucet,
                               settlement=settlement)


@app.command("start")
def start(
    db: Annotated[Path | None, typer.Option(help="SQLite file (DATA_DIR/coordinator.db)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="state directory")] = None,
    host: str = "127.0.0.1",
    port: int = 8700,
    admin: Annotated[list[str] | None, typer.Option(help="admin public key (repeatable)")] = None,
    faucet: Annotated[bool, typer.Option("--faucet", help="enable the dev faucet")] = False,
    settlement: Annotated[str, typer.Option(
        help="local (NOS in the ledger), litesvm (in-process Solana) or solana (RPC)")] = "local",
    rpc_url: Annotated[str, typer.Option(help="Solana RPC URL (--settlement solana)")
                       ] = "http://127.0.0.1:8899",
    commitment: Annotated[str, typer.Option(help="processed, confirmed or finalized")
                          ] = "confirmed",
    authority_keypair: Annotated[Path | None, typer.Option(
        help="settlement authority id.json (delegate, vault owner, fee payer)")] = None,
    anchor_every: Annotated[int, typer.Option(
        help="anchor the ledger head on chain every N entries (0: never)")] = 100,
    batch_size: Annotated[int, typer.Option(help="jobs per payout pass (batched txs)")] = 1,
    heartbeat_timeout: Annotated[float, typer.Option(
        min=1.0, help="a node silent this long is offline; its jobs are requeued")] = 30.0,
    audit_window: Annotated[int, typer.Option(
        min=1, help="seconds an auditable job's pay is held for an audit")] = 24 * 3600,
    default_market: Annotated[str | None, typer.Option(
        help="market of a post that names none (default: the only market, if just one)")
    ] = None,
    oracle_epoch: Annotated[int, typer.Option(
        min=1, help="seconds of a price oracle epoch (docs/pricing.md)")] = 600,
    oracle_min_sources: Annotated[int, typer.Option(
        min=1, help="independent operators the oracle needs for a price")] = 3,
    oracle_reporter_stake: Annotated[str, typer.Option(
        help="NOS an operator stakes for its asks and reports to count")] = "100",
    log_level: str = "warning",
) -> None:
    """Start the coordinator (Ctrl-C stops it)."""
    import dataclasses

    import uvicorn

    from nosgrid.coordinator.app import create_app

    if settlement not in ("local", "litesvm", "solana"):
        raise typer.BadParameter("use local, litesvm or solana", param_hint="--settlement")
    if commitment not in ("processed", "confirmed", "finalized"):
        raise typer.BadParameter("use processed, confirmed or finalized",
                                 param_hint="--commitment")
    if settlement == "solana" and authority_keypair is None:
        raise typer.BadParameter("--settlement solana needs the market's settlement authority",
                                 param_hint="--authority-keypair")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    config = dataclasses.replace(
        settings_from(db, data_dir, admin, faucet, settlement), solana_rpc_url=rpc_url,
        solana_commitment=commitment, solana_authority_keypair=authority_keypair,
        anchor_every=anchor_every, settlement_batch_size=batch_size,
        heartbeat_timeout_s=heartbeat_timeout, audit_window_s=audit_window,
        default_market=default_market or None,
        oracle=_oracle(oracle_epoch, oracle_min_sources, oracle_reporter_stake))
    app_ = create_app(config)
    # SIGTERM/Ctrl-C: in-flight requests get a few seconds, then waiting long-polls are
    # cancelled (they hold no transaction while they wait) instead of keeping the process
    # up for their full wait
    uvicorn.run(app_, host=host, port=port, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
