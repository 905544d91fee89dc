"""The `nosgrid` command: one typer app with a sub-app per noun (job, node, ledger, ...)."""

from __future__ import annotations

import sys

import typer

from nosgrid.cli import (
    attestor,
    ci,
    coordinator,
    deployment,
    gateway,
    image,
    job,
    keys,
    ledger,
    market,
    node,
    sim,
    stake,
    tokenomics,
    up,
    wallet,
)
from nosgrid.cli.output import run_cli

app = typer.Typer(
    name="nosgrid",
    help="nosgrid — an open, decentralized GPU compute marketplace.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(job.app, name="job")
app.add_typer(attestor.app, name="attestor")
app.add_typer(ci.app, name="ci")
app.add_typer(deployment.app, name="deployment")
app.add_typer(image.app, name="image")
app.add_typer(wallet.app, name="wallet")
app.add_typer(market.app, name="market")
app.add_typer(ledger.app, name="ledger")
app.add_typer(coordinator.app, name="coordinator")
app.add_typer(tokenomics.app, name="tokenomics")
app.add_typer(node.app, name="node")
app.add_typer(keys.app, name="keys")
app.add_typer(gateway.app, name="gateway")
app.command("deploy")(gateway.deploy)
app.command("usage")(gateway.usage)
app.add_typer(stake.app, name="stake")
app.add_typer(stake.rewards_app, name="rewards")
app.command("faucet")(wallet.faucet)
app.command("up")(up.up)
app.command("demo")(up.demo)
app.command("sim")(sim.sim)


def main() -> None:
    """Console-script entry point: runs the app, turning every nosgrid error into one line."""
    sys.exit(run_cli(app))


if __name__ == "__main__":
    main()
