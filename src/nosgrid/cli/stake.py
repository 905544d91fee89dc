"""`nosgrid stake` and `nosgrid rewards` — lock NOS to serve markets, earn fee shares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nosgrid.cli.common import JsonOpt, KeypairOpt, UrlOpt, client, table
from nosgrid.cli.output import console, print_json
from nosgrid.sdk.client import StakeAction
from nosgrid.sdk.models import StakeView

app = typer.Typer(help="Stake NOS (xNOS-style score: longer locks count more).",
                  no_args_is_help=True)
rewards_app = typer.Typer(help="Stakers' share of job fees.", no_args_is_help=True)


def _show(view: StakeView, json: bool) -> None:
    if json:
        print_json(view)
        return
    if not view.staked:
        console.print("no stake; `nosgrid stake add AMOUNT --days D` creates one")
        return
    mult = (view.multiplier_bps or 0) / 10_000
    console.print(table(f"stake of {view.owner}", ["field", "value"], [
        ["amount", f"{view.amount_nos} NOS"], ["lock", f"{view.days} days"],
        ["multiplier", f"{mult:.3f}×"], ["score", view.score],
        ["status", "active" if view.active else "unstaking"],
        ["withdrawable now", f"{view.withdrawable_nos} NOS"],
        ["pending rewards", f"{view.pending_rewards_nos} NOS"],
    ]))


def _act(url: str | None, keypair: Path | None, action: StakeAction, json: bool, *,
         amount: str | None = None, days: int | None = None) -> None:
    with client(url, keypair) as c:
        view = c.change_stake(action, amount=amount, days=days)
    _show(view, json)


@app.command("add")
def add(amount: Annotated[str, typer.Argument(help="NOS to lock")],
        days: Annotated[int, typer.Option("--days", help="lock, 14–365 days")] = 14,
        url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False) -> None:
    """Stake AMOUNT NOS for --days (or top up an existing stake)."""
    with client(url, keypair) as c:
        current = c.stake()
    if current.staked and current.active:
        _act(url, keypair, "top_up", json, amount=amount)
    else:
        _act(url, keypair, "stake", json, amount=amount, days=days)


@app.command("show")
def show(url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False) -> None:
    """Your stake, score, unlock and pending rewards."""
    with client(url, keypair) as c:
        _show(c.stake(), json)


@app.command("unstake")
def unstake(url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False) -> None:
    """Start unlocking: the score drops to 0 now, tokens unlock linearly over the lock."""
    _act(url, keypair, "unstake", json)


@app.command("withdraw")
def withdraw(url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False) -> None:
    """Move the unlocked part of an unstaked stake back to your wallet."""
    _act(url, keypair, "withdraw", json)


@rewards_app.command("claim")
def claim(url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False) -> None:
    """Move your share of job fees to your wallet."""
    with client(url, keypair) as c:
        res = c.claim_rewards()
    if json:
        print_json(res)
    else:
        console.print(f"claimed [bold]{res.claimed_nos} NOS[/]")
