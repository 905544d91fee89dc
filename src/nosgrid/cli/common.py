"""Options and helpers shared by the client commands: coordinator URL, keypair, tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from nosgrid.sdk.client import Client, default_url
from nosgrid.sdk.wallet import load_keypair

UrlOpt = Annotated[str | None, typer.Option("--url", envvar="NOSGRID_URL",
                                            help="coordinator URL (default http://127.0.0.1:8700)")]
KeypairOpt = Annotated[Path | None, typer.Option("--keypair", envvar="NOSGRID_KEYPAIR",
                                                 help="id.json keypair file")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def client(url: str | None, keypair: Path | None, *, need_key: bool = True) -> Client:
    """A sync SDK client; loads the keypair only when the command needs to sign."""
    kp = load_keypair(keypair) if (need_key or keypair) else None
    return Client(url or default_url(), kp)


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*[("" if v is None else str(v)) for v in row])
    return t
