"""`nosgrid coordinator start` — serve the marketplace API with uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from nosgrid.coordinator.settings import CoordinatorSettings, default_data_dir

app = typer.Typer(help="Run a coordinator.", no_args_is_help=True)


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
    settlement: Annotated[str, typer.Option(help="local")] = "local",
    log_level: str = "warning",
) -> None:
    """Start the coordinator (Ctrl-C stops it)."""
    import uvicorn

    from nosgrid.coordinator.app import create_app

    if settlement != "local":
        raise typer.BadParameter("only 'local' settlement is wired into the coordinator yet",
                                 param_hint="--settlement")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    app_ = create_app(settings_from(db, data_dir, admin, faucet, settlement))
    uvicorn.run(app_, host=host, port=port, log_level=log_level, access_log=False)
