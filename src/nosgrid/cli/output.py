"""What every CLI command shares: one-line errors, JSON output, NOS formatting."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape

from nosgrid.core.errors import NosgridError

console = Console()
err_console = Console(stderr=True)


def print_json(value: Any) -> None:
    """Print ``value`` as JSON on stdout (for `--json`); SDK models as the API sent them."""
    sys.stdout.write(json.dumps(_plain(value), indent=2, sort_keys=True, default=str) + "\n")


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error and return the Exit to raise."""
    # escaped: messages hold literal brackets (pip install 'nosgrid[plot]', codes, paths);
    # soft-wrapped: one line however narrow the terminal or pipe
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False,
                      soft_wrap=True)
    return typer.Exit(code)


def run_cli(app: typer.Typer) -> int:
    """Run ``app``; a NosgridError becomes a one-line message and exit code 1, never a traceback."""
    try:
        rc = app(standalone_mode=False)
    except NosgridError as exc:
        err_console.print(f"[bold red]error[/] {escape(f'[{exc.code}]: {exc.message}')}",
                          highlight=False, soft_wrap=True)
        return 1
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # usage errors and anything unexpected: one line, no traceback
        show = getattr(exc, "show", None)
        exit_code = getattr(exc, "exit_code", None)
        if type(exc).__name__ == "NoArgsIsHelpError":
            return 2
        if callable(show) and isinstance(exit_code, int):  # click/typer usage errors
            show()
            return exit_code
        err_console.print(f"[bold red]error:[/] {escape(f'{type(exc).__name__}: {exc}')}",
                          highlight=False, soft_wrap=True)
        return 1
    # in standalone_mode=False click returns a typer.Exit's code instead of raising it
    return rc if isinstance(rc, int) else 0
