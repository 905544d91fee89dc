"""`nosgrid job` commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from nosgrid.cli.output import console, err_console, fail, print_json
from nosgrid.core.errors import InvalidJobSpec
from nosgrid.core.jobs.load import job_definition_schema_text, load_job_definition, spec_hash

app = typer.Typer(help="job commands", no_args_is_help=True)


@app.command("validate")
def validate(
    files: list[str] = typer.Argument(..., help="Job definition files (JSON or YAML; - = stdin)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Validate job definitions without a server; stops at the first invalid file."""
    report: list[dict[str, Any]] = []
    for name in files:
        entry: dict[str, Any] = {"file": name}
        report.append(entry)
        try:
            data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
            defn = load_job_definition(data, filename=None if name == "-" else name)
        except OSError as exc:
            entry.update(valid=False, errors=[f"cannot read the file: {exc.strerror or exc}"])
        except InvalidJobSpec as exc:
            entry.update(valid=False, errors=exc.errors or [exc.message])
        else:
            entry.update(valid=True, ops=len(defn.ops), spec_hash=spec_hash(defn))
        if not as_json:
            _print_entry(entry)
        if not entry["valid"]:
            break
    if as_json:
        print_json(report)
    if not report[-1]["valid"]:
        # SystemExit, not typer.Exit: run_cli (standalone_mode=False) drops Exit's code.
        raise SystemExit(1)


def _print_entry(entry: dict[str, Any]) -> None:
    if entry["valid"]:
        ops = f"{entry['ops']} op{'s' if entry['ops'] != 1 else ''}"
        console.print(
            f"[green]valid[/] {entry['file']} ({ops}, sha256 {entry['spec_hash']})",
            highlight=False,
            soft_wrap=True,
        )
        return
    count = len(entry["errors"])
    err_console.print(
        f"[bold red]invalid[/] {entry['file']}: {count} error{'s' if count != 1 else ''}",
        highlight=False,
        soft_wrap=True,
    )
    for line in entry["errors"]:
        err_console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)


@app.command("schema")
def schema(
    output: Path | None = typer.Option(None, "-o", "--output", help="Write to FILE."),
) -> None:
    """Print the JSON Schema of a job definition (or write it to a file)."""
    text = job_definition_schema_text()
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
        raise SystemExit(1) from exc
    console.print(f"wrote {output}", highlight=False)
