"""`nosgrid market` — list, show and (admin) create markets."""

from __future__ import annotations

from typing import Annotated

import typer

from nosgrid.cli.common import JsonOpt, KeypairOpt, UrlOpt, client, table
from nosgrid.cli.output import console, print_json
from nosgrid.core.money import format_nos, parse_nos

app = typer.Typer(help="Markets: where jobs and nodes meet.", no_args_is_help=True)


@app.command("list")
def list_(url: UrlOpt = None, json: JsonOpt = False) -> None:
    """All markets and their terms."""
    with client(url, None, need_key=False) as c:
        markets = c.markets()
    if json:
        print_json(markets)
        return
    console.print(table("markets", ["name", "NOS/s", "max timeout", "fee", "min stake", "GPUs"], [
        [m.name, format_nos(m.price_per_second), f"{m.max_timeout}s",
         f"{m.fee_bps / 100:g}%", format_nos(m.min_stake),
         ", ".join(m.gpu_models) or "-"] for m in markets]))


@app.command("show")
def show(name: str, url: UrlOpt = None, json: JsonOpt = False) -> None:
    """One market's terms and how many nodes serve it."""
    with client(url, None, need_key=False) as c:
        m = c.market(name)
    if json:
        print_json(m)
        return
    console.print(table(f"market {name}", ["field", "value"],
                        [[k, v] for k, v in sorted(m.model_dump(mode="json").items())]))


@app.command("nodes")
def nodes(name: str, url: UrlOpt = None, json: JsonOpt = False) -> None:
    """Nodes serving a market, best reputation × stake first."""
    with client(url, None, need_key=False) as c:
        rows = c.market_nodes(name)
    if json:
        print_json(rows)
        return
    console.print(table(f"nodes in {name}", ["node", "status", "reputation", "stake (NOS)",
                                              "jobs", "offences", "jailed until"], [
        [r.id, r.status, f"{r.reputation:.3f}", format_nos(r.stake),
         r.jobs_done, r.offences, r.jailed_until or "-"] for r in rows]))


@app.command("create")
def create(
    name: str,
    price_per_second: Annotated[str, typer.Option(help="NOS per second of compute")],
    max_timeout: Annotated[int, typer.Option(help="longest job, seconds")] = 3600,
    fee_bps: Annotated[int, typer.Option(help="treasury fee, basis points")] = 500,
    min_stake: Annotated[str, typer.Option(help="NOS a node must stake")] = "0",
    gpu: Annotated[list[str] | None, typer.Option(help="GPU model (repeatable)")] = None,
    min_vram_mb: int = 0,
    url: UrlOpt = None,
    keypair: KeypairOpt = None,
    json: JsonOpt = False,
) -> None:
    """Create a market (the coordinator's admin key only)."""
    params = {"name": name, "price_per_second": parse_nos(price_per_second),
              "max_timeout": max_timeout, "fee_bps": fee_bps, "min_stake": parse_nos(min_stake),
              "gpu_models": gpu or [], "min_vram_mb": min_vram_mb}
    with client(url, keypair) as c:
        m = c.create_market(params)
    if json:
        print_json(m)
    else:
        console.print(f"market [bold]{m.name}[/] created")
