"""`nosgrid ci`: run a GitHub Actions workflow (or `.nosgrid-ci.yml`) on market machines.

Exit codes: 0 every job passed; 1 a job failed; 2 the file is invalid (nothing was posted);
130 the run was cancelled (Ctrl-C / SIGTERM; what did not run is refunded).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from nosgrid.cli.common import KeypairOpt, UrlOpt
from nosgrid.cli.output import console, err_console, print_json
from nosgrid.core.money import format_nos
from nosgrid.integrations.ci import expressions as ex
from nosgrid.integrations.ci.cache import CacheIndex, default_cache_index
from nosgrid.integrations.ci.errors import InvalidWorkflow
from nosgrid.integrations.ci.matrix import MAX_MATRIX_JOBS, MatrixError, label
from nosgrid.integrations.ci.model import Workflow, parse_workflow, workflow_schema_text
from nosgrid.integrations.ci.plan import (
    JobContexts,
    action_kind,
    check_workflow,
    instances,
    job_levels,
    market_for,
    step_title,
    strategy_of,
    workflow_env,
)
from nosgrid.integrations.ci.run import (
    CiRun,
    JobRecord,
    RunOptions,
    RunReport,
    read_secrets,
    secrets_referenced,
)
from nosgrid.integrations.ci.source import Source, load_source
from nosgrid.sdk.client import AsyncClient, default_url
from nosgrid.sdk.wallet import load_keypair

app = typer.Typer(help="Run GitHub Actions workflows as nosgrid jobs.", no_args_is_help=True)

_STATE_STYLE = {"success": "green", "failure": "red", "cancelled": "yellow", "running": "cyan",
                "queued": "blue", "posting": "blue", "waiting": "dim", "skipped": "dim"}


def load_workflow(path: Path, *, matrix_limit: int = MAX_MATRIX_JOBS
                  ) -> tuple[Source, Workflow, list[str]]:
    """Read, validate and check a workflow file (``InvalidWorkflow`` lists every problem)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidWorkflow(errors=[f"{path}: cannot read the file: "
                                      f"{exc.strerror or exc}"]) from exc
    src = load_source(data, str(path))
    wf = parse_workflow(src)
    warnings = check_workflow(wf, src, matrix_limit=matrix_limit)
    return src, wf, warnings


def default_root(path: Path) -> Path:
    """The checkout a workflow belongs to: above ``.github/workflows``, else its folder."""
    parent = path.resolve().parent
    if parent.name == "workflows" and parent.parent.name == ".github":
        return parent.parent.parent
    return parent


def _bad_file(exc: InvalidWorkflow, as_json: bool) -> typer.Exit:
    if as_json:
        print_json({"ok": False, "error": "invalid_workflow", "errors": exc.errors})
    else:
        count = len(exc.errors)
        err_console.print(f"[bold red]invalid workflow[/]: {count} error"
                          f"{'s' if count != 1 else ''}; nothing was posted", highlight=False)
        for line in exc.errors or [exc.message]:
            err_console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(2)


@app.command("run")
def run(
    file: Annotated[Path, typer.Argument(help="workflow file (.github/workflows/*.yml or "
                                              ".nosgrid-ci.yml)")],
    dir_: Annotated[Path | None, typer.Option("--dir", help="the checkout to pack (default: "
                                                            "the repository of FILE)")] = None,
    job: Annotated[str | None, typer.Option("--job", help="run only this job (and what it "
                                                          "needs)")] = None,
    market: Annotated[str | None, typer.Option(help="the default market (runs-on labels "
                                                    "nosgrid-<market> override it)")] = None,
    artifacts: Annotated[Path | None, typer.Option("--artifacts", help="download uploaded "
                                                   "artifacts into DIR/<name>/")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the expanded plan; post "
                                                            "nothing")] = False,
    secrets_file: Annotated[Path | None, typer.Option("--secrets-file", help="NAME=value "
                                                      "lines")] = None,
    secret: Annotated[list[str] | None, typer.Option("--secret", help="pass the environment "
                                                     "variable NAME as secrets.NAME")] = None,
    event: Annotated[str, typer.Option(help="github.event_name")] = "push",
    matrix_limit: Annotated[int, typer.Option(help="most jobs one matrix may expand to")]
    = MAX_MATRIX_JOBS,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="ignore and do not record "
                                                              "actions/cache entries")] = False,
    url: UrlOpt = None,
    keypair: KeypairOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object at the end")]
    = False,
) -> None:
    """Run a workflow: each job becomes a nosgrid job when its needs are done."""
    try:
        src, wf, warnings = load_workflow(file, matrix_limit=matrix_limit)
        if job is not None and job not in wf.jobs:
            raise InvalidWorkflow(errors=[f"{file}: --job {job!r} is not a job of this "
                                          f"workflow (jobs: {', '.join(wf.jobs)})"])
    except InvalidWorkflow as exc:
        raise _bad_file(exc, as_json) from None
    root = (dir_ or default_root(file)).resolve()
    if not root.is_dir():
        raise typer.BadParameter(f"{root} is not a directory", param_hint="--dir")
    if not as_json:
        for w in warnings:
            err_console.print(f"[yellow]warning[/] {escape(w)}", highlight=False, soft_wrap=True)
    if dry_run:
        try:
            plan = dry_run_plan(wf, src, root=root, market=market, only_job=job,
                                matrix_limit=matrix_limit)
        except InvalidWorkflow as exc:
            raise _bad_file(exc, as_json) from None
        plan["warnings"] = warnings
        if as_json:
            print_json(plan)
        else:
            _print_plan(plan)
        return
    text = file.read_text(encoding="utf-8", errors="replace")
    try:
        secrets = read_secrets(secrets_file, list(secret or []), dict(os.environ),
                               lambda: secrets_referenced(text))
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {secrets_file}: {exc.strerror or exc}",
                                 param_hint="--secrets-file") from None
    options = RunOptions(market=market, artifacts_dir=artifacts, only_job=job, secrets=secrets,
                         event_name=event, matrix_limit=matrix_limit,
                         cache=None if no_cache else CacheIndex(default_cache_index()))
    kp = load_keypair(keypair)
    report = asyncio.run(_run(wf, root, options, url or default_url(), kp, as_json,
                              filename=file.name))
    if as_json:
        print_json(report_json(report))
    else:
        _print_summary(report)
    if report.cancelled:
        raise SystemExit(130)
    if not report.ok:
        raise SystemExit(1)


async def _run(wf: Workflow, root: Path, options: RunOptions, url: str, kp: Any,
               as_json: bool, *, filename: str) -> RunReport:
    async with AsyncClient(url, kp) as client:
        reporter = LiveReporter(as_json)
        ci = CiRun(client, wf, root, options, reporter, filename=filename)
        loop = asyncio.get_running_loop()
        stopping: list[asyncio.Task[None]] = []

        def stop() -> None:
            if not stopping:
                reporter.note("cancelling: remote jobs are cancelled, unspent escrow refunded")
                stopping.append(asyncio.ensure_future(ci.cancel()))

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop)
        with reporter:
            try:
                report = await ci.run()
            finally:
                if stopping:
                    await stopping[0]
        return report


class LiveReporter:
    """The live table (job, matrix, state, step, time, cost) with logs printed above it."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.records: list[JobRecord] = []
        self.live: Live | None = None

    def __enter__(self) -> LiveReporter:
        if not self.quiet and console.is_terminal:
            # transient: the summary prints the final table once the run is over
            self.live = Live(self.table(), console=console, refresh_per_second=4,
                             get_renderable=self.table, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def table(self) -> Table:
        return jobs_table(self.records)

    def changed(self, rec: JobRecord) -> None:
        if rec not in self.records:
            self.records.append(rec)
        if self.live is None and not self.quiet and rec.state in (
                "success", "failure", "cancelled"):
            console.print(f"[{_STATE_STYLE.get(rec.state, '')}]{rec.state}[/] "
                          f"{escape(rec.inst.title)}"
                          + (f" ({escape(rec.reason)})" if rec.reason else ""), highlight=False)

    def line(self, rec: JobRecord, text: str) -> None:
        if self.quiet:
            return
        out = self.live.console if self.live is not None else console
        out.print(f"[bold]{escape(rec.inst.title)}[/] | {escape(text)}", highlight=False,
                  soft_wrap=True)

    def note(self, text: str) -> None:
        if not self.quiet:
            err_console.print(f"[dim]{escape(text)}[/]", highlight=False, soft_wrap=True)


def jobs_table(records: list[JobRecord]) -> Table:
    t = Table(title="nosgrid ci", title_justify="left")
    for col in ("job", "matrix", "state", "step", "time", "cost (NOS)"):
        t.add_column(col, overflow="fold")
    for r in records:
        style = _STATE_STYLE.get(r.state, "")
        t.add_row(r.inst.job_id, label(r.inst.matrix), f"[{style}]{r.state}[/]",
                  escape(r.step if r.state == "running" else r.reason)[:60],
                  f"{r.seconds:.1f}s" if r.started_at else "", format_nos(r.cost))
    return t


def report_json(report: RunReport) -> dict[str, Any]:
    return {"ok": report.ok, "cancelled": report.cancelled,
            "total_cost": report.total_cost, "total_cost_nos": format_nos(report.total_cost),
            "refunded": report.total_refund, "refunded_nos": format_nos(report.total_refund),
            "jobs": [r.view() for r in report.records], "skipped": report.skipped,
            "notes": report.notes}


def _print_summary(report: RunReport) -> None:
    console.print(jobs_table(report.records))
    clamped: dict[tuple[str, int], list[str]] = {}
    for r in report.records:
        if r.clamp_note:
            clamped.setdefault((r.clamp_note, r.timeout_s), []).append(r.inst.title)
    for (note, seconds), titles in clamped.items():
        console.print(f"[yellow]{escape(', '.join(titles))}[/]: {escape(note)}; the escrow "
                      f"was for {seconds} s", highlight=False)
    for r in report.records:
        summary = r.result.get("summary")
        if summary:
            console.print(f"[bold]summary of {escape(r.inst.title)}[/]\n{escape(summary)}",
                          highlight=False)
    for s in report.skipped:
        console.print(f"[dim]skipped[/] {escape(s)}", highlight=False)
    for n in report.notes:
        console.print(f"[yellow]note[/] {escape(n)}", highlight=False)
    passed = sum(r.state == "success" for r in report.records)
    line = (f"{passed}/{len(report.records)} jobs passed; total cost "
            f"{format_nos(report.total_cost)} NOS")
    if report.cancelled:
        line += f"; cancelled, {format_nos(report.total_refund)} NOS refunded"
    console.print(("[green]" if report.ok else "[red]") + line + "[/]", highlight=False)


# --- dry run ----------------------------------------------------------------------------


def dry_run_plan(wf: Workflow, src: Source, *, root: Path, market: str | None,
                 only_job: str | None, matrix_limit: int) -> dict[str, Any]:
    """The expanded plan: levels (what runs in parallel), each job's matrix, image, market,
    timeout and steps. ``needs`` outputs are unknown before a run: expressions reading them
    show as expanded at run time."""
    from nosgrid.integrations.ci.checkout import github_context

    github = github_context(root, event_name="push", workflow=wf.name or src.filename,
                            run_id="0", actor="")
    ctx = JobContexts(github=github, workflow_env=workflow_env(wf, github, {}))
    levels = job_levels(wf)
    if only_job is not None:
        keep = {only_job}
        todo = [only_job]
        while todo:
            for n in wf.jobs[todo.pop()].need_list():
                if n not in keep:
                    keep.add(n)
                    todo.append(n)
        levels = [[j for j in lvl if j in keep] for lvl in levels]
        levels = [lvl for lvl in levels if lvl]
    jobs: list[dict[str, Any]] = []
    errors: list[str] = []
    for stage, level in enumerate(levels, start=1):
        for job_id in level:
            job = wf.jobs[job_id]
            entry: dict[str, Any] = {"job": job_id, "stage": stage, "needs": job.need_list(),
                                     "if": job.if_, "instances": []}
            strategy = strategy_of(job, ctx)
            entry["fail_fast"], entry["max_parallel"] = strategy.fail_fast, strategy.max_parallel
            entry["steps"] = [{"title": step_title(s, i),
                               "kind": "run" if s.run is not None else action_kind(s.uses or ""),
                               "if": s.if_} for i, s in enumerate(job.steps)]
            uses_needs = "needs." in str(job.strategy.matrix if job.strategy else "")
            if uses_needs:
                entry["matrix"] = "expanded at run time (reads needs)"
                choice = market_for(job.runs_on, market)
                entry["market"] = choice.market or "(the coordinator's default)"
            else:
                try:
                    for inst in instances(job_id, job, ctx, default_market=market,
                                          limit=matrix_limit):
                        entry["instances"].append({
                            "name": inst.title, "matrix": inst.matrix, "image": inst.image,
                            "market": inst.market or "(the default market)",
                            "market_why": inst.market_why,
                            "timeout_minutes": inst.timeout_minutes,
                            "note": "clamped to the market's maximum when posted"})
                except (MatrixError, ex.ExpressionError) as exc:
                    errors.append(f"{src.where(('jobs', job_id, 'strategy'))}: {exc}")
            jobs.append(entry)
    if errors:
        raise InvalidWorkflow(errors=errors)
    total = sum(len(j["instances"]) for j in jobs)
    return {"workflow": wf.name or src.filename, "root": str(root), "stages": levels,
            "jobs": jobs, "nosgrid_jobs": total, "posted": False}


def _print_plan(plan: dict[str, Any]) -> None:
    console.print(f"[bold]{escape(plan['workflow'])}[/]: {plan['nosgrid_jobs']} nosgrid "
                  f"job(s) in {len(plan['stages'])} stage(s); dry run, nothing posted",
                  highlight=False)
    t = Table(title_justify="left")
    for col in ("stage", "job", "matrix", "image", "market", "timeout", "needs"):
        t.add_column(col, overflow="fold")
    for j in plan["jobs"]:
        if not j["instances"]:
            t.add_row(str(j["stage"]), j["job"], str(j.get("matrix", "")), "",
                      str(j.get("market", "")), "", ", ".join(j["needs"]))
        for inst in j["instances"]:
            t.add_row(str(j["stage"]), escape(inst["name"]), escape(label(inst["matrix"])),
                      inst["image"], inst["market"], f"{inst['timeout_minutes']:g} min",
                      ", ".join(j["needs"]))
    console.print(t)
    for j in plan["jobs"]:
        steps = "; ".join(f"{s['title']} [{s['kind']}]" for s in j["steps"])
        console.print(f"  {j['job']}: {escape(steps)}", highlight=False, soft_wrap=True)


@app.command("schema")
def schema(
    output: Path | None = typer.Option(None, "-o", "--output", help="Write to FILE."),
) -> None:
    """Print the JSON Schema of the workflow subset `nosgrid ci run` supports."""
    text = workflow_schema_text()
    if output is None:
        sys.stdout.write(text)
        return
    output.write_text(text, encoding="utf-8")
    console.print(f"wrote {output}", highlight=False)
