"""`nosgrid market` — list, show and (admin) create markets; oracle prices and reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nosgrid.cli.common import JsonOpt, KeypairOpt, UrlOpt, client, table
from nosgrid.cli.output import console, print_json
from nosgrid.core.money import format_nos, parse_nos
from nosgrid.sdk.client import reporter_consent
from nosgrid.sdk.wallet import load_keypair

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
    rows = [[k, v] for k, v in sorted(m.model_dump(mode="json", exclude={"price"}).items())]
    if m.price is not None:
        p = m.price
        rows += [["reference price", f"{p.price_per_second_nos} NOS/s ({p.source}: "
                  f"{p.reason})"],
                 ["charged now", f"{format_nos(p.charged_price_per_second)} NOS/s "
                  f"({p.charged_reason})"]]
    console.print(table(f"market {name}", ["field", "value"], rows))


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
    posting_fee: Annotated[str, typer.Option(
        help="NOS charged per posted job, to the treasury, never refunded")] = "0",
    usd_per_second: Annotated[str | None, typer.Option(
        help="quote the market in USD per second: converted into NOS at the price "
             "oracle's NOS/USD rate when a job is posted (--price-per-second is the "
             "fallback while there is no rate)")] = None,
    egress: Annotated[bool, typer.Option(
        "--egress", help="jobs may ask for egress through the nodes' filtering proxy")] = False,
    url: UrlOpt = None,
    keypair: KeypairOpt = None,
    json: JsonOpt = False,
) -> None:
    """Create a market (the coordinator's admin key only)."""
    params = {"name": name, "price_per_second": parse_nos(price_per_second),
              "max_timeout": max_timeout, "fee_bps": fee_bps, "min_stake": parse_nos(min_stake),
              "gpu_models": gpu or [], "min_vram_mb": min_vram_mb,
              "posting_fee": parse_nos(posting_fee)}
    if egress:
        params["egress"] = True
    if usd_per_second is not None:  # µUSD, 6 decimals like NOS
        params["price_usd_micros_per_second"] = parse_nos(usd_per_second)
    with client(url, keypair) as c:
        m = c.create_market(params)
    if json:
        print_json(m)
    else:
        console.print(f"market [bold]{m.name}[/] created")


# ------------------------------------------------------------------------------ price oracle


@app.command("price")
def price(name: str, usd: Annotated[bool, typer.Option(
              "--usd", help="also show the price in USD at the oracle's NOS/USD rate")] = False,
          url: UrlOpt = None, json: JsonOpt = False) -> None:
    """The market's reference price: the oracle's (band, sources) or, with too few fresh
    sources, its configured price, and what a job posted now is charged."""
    with client(url, None, need_key=False) as c:
        p = c.market_price(name)
    if json:
        print_json(p)
        return
    prov = p.provisional
    if p.source == "oracle":
        head = (f"[bold]{p.price_per_second_nos} NOS/s[/] (oracle, epoch {p.epoch}: "
                f"{p.reason})")
    else:
        head = (f"[bold]{p.price_per_second_nos} NOS/s[/] — too few fresh sources: "
                f"configured price used ({p.reason})")
    console.print(f"market {name}: {head}", highlight=False)
    if usd:
        if p.price_usd_micros is not None and p.nos_usd_rate is not None:
            console.print(f"  = ${_usd(p.price_usd_micros)}/s at "
                          f"${_usd(p.nos_usd_rate)} per NOS", highlight=False)
        else:
            console.print("  no USD price: the oracle has no NOS/USD rate "
                          "(`nosgrid market price` of nos_usd: too few fresh sources)",
                          highlight=False)
    console.print(f"  charged now: {format_nos(p.charged_price_per_second)} NOS/s "
                  f"({p.charged_reason})", highlight=False)
    band = (f"{format_nos(prov.band_low)}–{format_nos(prov.band_high)} NOS/s"
            if prov.band_low is not None and prov.band_high is not None else "-")
    open_price = format_nos(prov.price) if prov.price is not None else "-"
    console.print(f"  open epoch {prov.epoch}: {open_price} NOS/s, band {band}, "
                  f"{prov.sources}/{prov.min_sources} sources ({prov.reason})",
                  highlight=False)
    if prov.operators:
        console.print(table("sources (open epoch)", ["operator", "NOS/s", "weight", "kinds",
                                                     "outlier"], [
            [o.operator, format_nos(o.value), f"{o.weight / 100:g}%", ",".join(o.kinds),
             "yes" if o.outlier else ""] for o in prov.operators]))


def _usd(micros: int) -> str:
    whole, frac = divmod(micros, 1_000_000)
    return f"{whole}.{frac:06d}".rstrip("0").rstrip(".")


@app.command("report")
def report(
    name: Annotated[str, typer.Argument(help="market, or nos_usd for the NOS/USD rate")],
    price_: Annotated[str, typer.Argument(
        metavar="PRICE", help="NOS per second (a market) or USD per NOS (nos_usd)")],
    epoch: Annotated[int | None, typer.Option(help="the open epoch (default: now)")] = None,
    url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False,
) -> None:
    """Sign a price report for the open epoch (a registered reporter key)."""
    value = parse_nos(price_)  # both are 6-decimal units: NOS base units, µUSD
    with client(url, keypair) as c:
        r = c.submit_report(name, value, epoch)
    if json:
        print_json(r)
    else:
        console.print(f"report {r.hash[:16]}… for {r.market} epoch {r.epoch}: {r.status}"
                      + (f", slashed {format_nos(r.slashed)} NOS" if r.slashed else ""),
                      highlight=False)


@app.command("register-reporter")
def register_reporter(
    operator_keypair: Annotated[Path, typer.Option(
        "--operator-keypair", help="the operator's id.json (it signs its consent)")],
    url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False,
) -> None:
    """Register this keypair as a price reporter of the operator (both sign; the operator
    needs the reporter stake)."""
    operator = load_keypair(operator_keypair)
    with client(url, keypair) as c:
        r = c.register_reporter(str(operator.pubkey()), reporter_consent(operator, c.pubkey))
    if json:
        print_json(r)
    else:
        console.print(f"reporter {r.key} reports for {r.operator} (stake "
                      f"{format_nos(r.stake)} NOS)", highlight=False)


@app.command("stats")
def stats(name: str, url: UrlOpt = None, json: JsonOpt = False) -> None:
    """Queue length, running jobs, nodes online and jobs ended lately (the dashboard's)."""
    with client(url, None, need_key=False) as c:
        s = c.market_stats(name)
    if json:
        print_json(s)
        return
    console.print(table(f"market {name} now", ["figure", "value"], [
        ["queue length", s.queue_length], ["running", s.running],
        ["nodes online / waiting", f"{s.nodes_online} / {s.nodes_waiting}"],
        ["jobs ended, last hour / 24 h", f"{s.finished_1h} / {s.finished_24h}"],
        ["compute seconds, 24 h", s.gpu_seconds_24h]]))
