"""`nosgrid job` commands."""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from nosgrid.cli.common import JsonOpt, KeypairOpt, UrlOpt, client, table
from nosgrid.cli.output import console, err_console, fail, print_json
from nosgrid.core.chain_requests import MAX_INLINE_BYTES, RequestMemo, request_memo_text
from nosgrid.core.errors import InvalidJobSpec, NosgridError, NotFound
from nosgrid.core.jobs.load import job_definition_schema_text, load_job_definition, spec_hash
from nosgrid.core.jobs.state import JobState
from nosgrid.core.money import format_nos, parse_nos
from nosgrid.sdk import solana as solana_wallet
from nosgrid.sdk.client import Client
from nosgrid.sdk.models import JobView
from nosgrid.sdk.receipts import verify_with_chain

app = typer.Typer(help="Validate, post and follow jobs.", no_args_is_help=True)


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


# --- client commands: post, status, logs, result, cancel, list ------------------------

def _job_row(j: JobView) -> list[Any]:
    cost = j.settlement.cost_nos if j.settlement else ""
    return [j.id, j.market, j.state, j.outcome or "", (j.node or "")[:10], j.deposit_nos, cost,
            j.reason]


_JOB_COLUMNS = ["id", "market", "state", "outcome", "node", "escrow (NOS)", "cost (NOS)",
                "reason"]


@app.command("post")
def post(
    spec: Annotated[Path, typer.Argument(help="job definition (JSON or YAML)")],
    market: Annotated[str | None, typer.Option(help="market name")] = None,
    timeout: Annotated[int | None, typer.Option(help="seconds (default: file or 600)")] = None,
    max_price: Annotated[str | None, typer.Option(help="most NOS to escrow")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="wait until the job ends")] = False,
    idempotency_key: Annotated[str | None, typer.Option(
        help="the same key posts once, however often the command is retried "
             "(default: a new one per run)")] = None,
    url: UrlOpt = None,
    keypair: KeypairOpt = None,
    json: JsonOpt = False,
) -> None:
    """Post a job definition; with --wait, stream its logs and show the outcome."""
    if not spec.is_file():
        raise typer.BadParameter(f"{spec} is not a file", param_hint="SPEC")
    text = spec.read_text(encoding="utf-8", errors="replace")
    load_job_definition(text, filename=spec.name)  # fail fast, locally, with every error
    with client(url, keypair) as c:
        posted = c.post_job(spec_text=text, market=market, timeout=timeout,
                            max_price=max_price,
                            idempotency_key=idempotency_key or uuid.uuid4().hex)
        if json and not wait:
            print_json(posted)
            return
        if not json:  # the market, and why it was chosen: --market, the file, or the default
            why = f" ({posted.market_why})" if posted.market_why else ""
            console.print(f"posted [bold]{posted.id}[/] in {posted.market}{why}, escrowed "
                          f"{posted.deposit_nos} NOS")
            if posted.nos_usd_rate is not None:
                console.print(f"  {format_nos(posted.price_per_second)} NOS/s: "
                              f"{posted.charged_reason}", highlight=False)
            if posted.suggested_max_price_nos is not None:
                console.print(f"  no --max-price given; suggested "
                              f"{posted.suggested_max_price_nos} NOS "
                              f"({posted.suggested_price_source}: "
                              f"{posted.suggested_price_why})", highlight=False)
        if not wait:
            return
        with console.status(f"job {posted.id} queued…", spinner="dots"):
            job = _wait_started(c, posted.id)
        for chunk in c.follow_logs(job.id):
            if not json:
                console.print(chunk.data.rstrip("\n"), highlight=False, markup=False)
        done = c.wait(job.id)
    _show_job(done, json)
    if done.fault or done.state in (JobState.FAILED, JobState.TIMED_OUT):
        raise typer.Exit(1)


def _wait_started(c: Client, job_id: str) -> JobView:
    import time

    while True:
        job = c.job(job_id)
        if job.state is not JobState.QUEUED:
            return job
        time.sleep(0.2)


def _show_job(job: JobView, json: bool, verification: str = "-") -> None:
    if json:
        print_json(job)
        return
    console.print(table(f"job {job.id}", ["field", "value"], [
        ["state", job.state], ["outcome", job.outcome or "-"], ["market", job.market],
        ["node", job.node],
        ["escrow", f"{job.deposit_nos} NOS"], ["seconds used", job.seconds_used],
        ["cost", job.settlement.cost_nos if job.settlement else "-"],
        ["fault", job.fault or "-"], ["reason", job.reason or "-"],
        ["outputs", ", ".join(o["path"] for o in job.result.get("outputs", [])) or "-"],
        ["verification", verification],
    ]))


@app.command("status")
def status(job_id: str, url: UrlOpt = None, keypair: KeypairOpt = None,
           json: JsonOpt = False) -> None:
    """A job's state, node, cost and outcome."""
    with client(url, keypair) as c:
        job = c.job(job_id)
        shown = "-"
        if not json:
            with contextlib.suppress(NosgridError):  # an older coordinator has no such route
                v = c.verification(job_id)
                shown = " ".join(x for x in (v.mode, v.status, v.verdict or "") if x)
        _show_job(job, json, shown)


@app.command("verification")
def verification(job_id: str, url: UrlOpt = None, keypair: KeypairOpt = None,
                 json: JsonOpt = False) -> None:
    """How a job is being checked: mode, replicas, audit decision, runs, verdict."""
    with client(url, keypair) as c:
        v = c.verification(job_id)
    if json:
        print_json(v)
        return
    fields = ("mode", "status", "replicas", "audited", "rate_bps", "release_at", "auditor",
              "verdict", "slashed", "reason")
    shown = v.model_dump()
    console.print(table(f"verification of job {job_id}", ["field", "value"],
                        [[k, str(shown[k])] for k in fields if shown[k] not in (None, "", [])]))
    if v.runs:
        console.print(table("runs", ["job", "role", "node", "paid by", "paid"], [
            [r.job, f"{r.role} {r.slot}", r.node[:10], r.paid_by,
             "-" if r.paid is None else str(r.paid)] for r in v.runs]))


@app.command("logs")
def logs(job_id: str,
         follow: Annotated[bool, typer.Option("--follow", "-f", help="stream on")] = False,
         url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False) -> None:
    """The job's container logs."""
    with client(url, keypair) as c:
        chunks = c.follow_logs(job_id) if follow else iter(c.logs(job_id).chunks)
        for chunk in chunks:
            if json:
                print_json(chunk)
            else:
                sys.stdout.write(chunk.data)
                sys.stdout.flush()


@app.command("result")
def result(job_id: str,
           output: Annotated[Path | None, typer.Option("-o", "--output",
                                                       help="download output files here")] = None,
           url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False) -> None:
    """The job's result: exit code, extracted results, output files (downloaded with -o)."""
    with client(url, keypair) as c:
        res = c.result(job_id)
        files = res.result.get("outputs", [])
        if output is not None:
            for f in files:
                target = (output / f["path"].lstrip("/")).resolve()
                if not target.is_relative_to(output.resolve()):
                    continue  # never write outside the chosen directory
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(c.download_blob(f["sha256"]))
    if json:
        print_json(res)
        return
    console.print(f"job {res.id}: {res.state}" + (f" ({res.reason})" if res.reason else ""))
    console.print(table("outputs", ["path", "bytes", "sha256"],
                        [[f["path"], f["size"], f["sha256"][:16]] for f in files]))
    if output is not None:
        console.print(f"downloaded {len(files)} file(s) into {output}")


@app.command("cancel")
def cancel(job_id: str, url: UrlOpt = None, keypair: KeypairOpt = None,
           json: JsonOpt = False) -> None:
    """Cancel a job; unspent escrow comes back."""
    with client(url, keypair) as c:
        _show_job(c.cancel(job_id), json)


@app.command("extend")
def extend(job_id: str,
           seconds: Annotated[int, typer.Option(help="seconds to add to the job's timeout")],
           idempotency_key: Annotated[str | None, typer.Option(
               help="the same key extends once, however often the command is retried "
                    "(default: a new one per run)")] = None,
           url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False) -> None:
    """Give an open job more time; the escrow grows by its price × seconds."""
    with client(url, keypair) as c:
        _show_job(c.extend(job_id, seconds, idempotency_key=idempotency_key
                           or uuid.uuid4().hex), json)


@app.command("list")
def list_(limit: int = 20, cursor: int | None = None, url: UrlOpt = None,
          keypair: KeypairOpt = None, json: JsonOpt = False) -> None:
    """Your jobs, newest first (use the printed cursor for the next page)."""
    with client(url, keypair) as c:
        page = c.jobs(limit=limit, cursor=cursor)
    if json:
        print_json(page)
        return
    console.print(table("jobs", _JOB_COLUMNS, [_job_row(j) for j in page.jobs]))
    if page.next is not None:
        console.print(f"more: --cursor {page.next}")


@app.command("receipt")
def receipt(job_id: str,
            raw: Annotated[bool, typer.Option(
                "--raw", help="print the 236 signed bytes (signature ‖ receipt) as hex")] = False,
            attestor: Annotated[str | None, typer.Option(
                help="the market's first attestor key you trust (default: the coordinator's "
                     "epoch 0)")] = None,
            url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False) -> None:
    """The job's result receipt, checked against the attestor key chain."""
    with client(url, keypair, need_key=False) as c:
        got = c.receipt(job_id)
        chain = c.attestor_chain()
    parsed, key = verify_with_chain(got, chain, attestor)
    if raw:
        sys.stdout.write(got.signed.hex() + "\n")
        return
    if json:
        print_json({**got.view.model_dump(mode="json"), "verified_by": key})
        return
    f = got.view.fields
    rows: list[list[Any]] = [["verdict", f.verdict], ["job", f"{job_id} (sha256 {f.job[:16]}…)"],
            ["definition", f.definition], ["result", f.result], ["journal seq", f.seq],
            ["slot", f.slot], ["attestor", f"{key} (epoch {parsed.epoch}, signature valid)"],
            ["reply key", f.reply_key or "-"], ["on chain", got.view.onchain or "not yet"]]
    console.print(table(f"receipt of {job_id}", ["field", "value"], rows))


@app.command("request")
def request(
    spec: Annotated[Path, typer.Argument(help="job definition (JSON or YAML)")],
    pay: Annotated[str, typer.Option(help="NOS to pay into the request vault (≥ price × "
                                          "timeout; the unused part comes back)")],
    reply: Annotated[str | None, typer.Option(
        help="the reply key the receipt names (default: your key)")] = None,
    market: Annotated[str | None, typer.Option(help="market name")] = None,
    timeout: Annotated[int | None, typer.Option(help="seconds")] = None,
    wait: Annotated[float, typer.Option(help="seconds to wait for the watcher's answer")] = 30,
    url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False,
) -> None:
    """Request compute from chain: a transfer into the request vault with a Memo (signed
    here; docs/composability.md), then what the coordinator's watcher made of it."""
    if not spec.is_file():
        raise typer.BadParameter(f"{spec} is not a file", param_hint="SPEC")
    data = spec.read_bytes()
    load_job_definition(data, filename=spec.name)  # fail fast, locally
    with client(url, keypair) as c:
        if len(data) <= MAX_INLINE_BYTES:
            memo = RequestMemo(reply or c.pubkey, inline=data, market=market, timeout=timeout)
        else:
            memo = RequestMemo(reply or c.pubkey, definition_sha256=c.upload_blob(data),
                               market=market, timeout=timeout)
        signature = c.run(solana_wallet.request_compute(c.aio, parse_nos(pay),
                                                        request_memo_text(memo)))
        view = None
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(NotFound):
                view = c.chain_request(signature)
                if view.status != "seen":
                    break
            time.sleep(0.5)
    if json:
        print_json(view if view is not None else {"signature": signature, "status": "unread"})
        return
    console.print(f"paid {pay} NOS into the request vault: {signature}", highlight=False)
    if view is None:
        console.print("the watcher has not read it yet: GET /v1/requests/SIGNATURE later")
    elif view.job_id:
        console.print(f"job [bold]{view.job_id}[/] posted; `nosgrid job receipt "
                      f"{view.job_id}` once it settles")
    else:
        console.print(f"refunded: {view.reason}", highlight=False)
