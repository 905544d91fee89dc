"""The `nosgrid` command: one typer app with a sub-app per noun (job, node, ledger, ...)."""

from __future__ import annotations

import sys

import typer

from nosgrid.cli import image, job
from nosgrid.cli.output import run_cli

app = typer.Typer(
    name="nosgrid",
    help="nosgrid — an open, decentralized GPU compute marketplace.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(job.app, name="job")
app.add_typer(image.app, name="image")


def main() -> None:
    """Console-script entry point: runs the app, turning every nosgrid error into one line."""
    sys.exit(run_cli(app))
