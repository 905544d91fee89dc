"""`nosgrid deployment`: services the market keeps alive (docs/deployments.md)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Annotated

import typer

from nosgrid.cli.common import JsonOpt, KeypairOpt, UrlOpt, client, table
from nosgrid.cli.output import console, print_json
from nosgrid.core.jobs.load import load_job_definition
from nosgrid.sdk.models import DeploymentEvents, ServiceDeploymentView

app = typer.Typer(help="Long-running services: strategies, extend, revisions, stable URLs.",
                  no_args_is_help=True)


def _read(spec: Path) -> str:
    if not spec.is_file():
        raise typer.BadParameter(f"{spec} is not a file", param_hint="FILE")
    text = spec.read_text(encoding="utf-8", errors="replace")
    load_job_definition(text, filename=spec.name)  # fail fast, locally, with every error
    return text


def _show(d: ServiceDeploymentView, json: bool, url: str) -> None:
    if json:
        print_json(d)
        return
    console.print(f"[bold]{d.name}[/] ({d.id}): {d.strategy}, {d.status}, revision "
                  f"{d.revision}{f' → {d.rolling_to}' if d.rolling_to else ''}, "
                  f"{d.replicas} replica(s) × {d.timeout}s in {d.market}; spent {d.spent_nos} "
                  f"NOS{' (out of funds)' if d.out_of_funds else ''}", highlight=False)
    for port, path in d.urls.items():
        console.print(f"  port {port}: {url.rstrip('/')}{path}"
                      f"{' (private: signed requests of the owner)' if d.private else ''}",
                      highlight=False)
    if d.running:
        console.print(table("replicas", ["job", "revision", "state", "healthy", "node",
                                         "endpoints"], [
            [r.job_id, r.revision, r.state + (" (stopping)" if r.stopping else ""),
             "-" if r.healthy is None else ("yes" if r.healthy else "NO"), r.node or "-",
             " ".join(r.endpoints.values())] for r in d.running]))


@app.command("create")
def create(
    spec: Annotated[Path, typer.Argument(help="the service's job definition (JSON or YAML)")],
    strategy: Annotated[str, typer.Option(
        help="simple, simple-extend, scheduled or infinite")],
    name: Annotated[str | None, typer.Option(help="a name of yours for it")] = None,
    replicas: Annotated[int, typer.Option(help="replicas to keep (K)")] = 1,
    timeout: Annotated[int, typer.Option(help="each replica job's timeout, seconds")] = 600,
    schedule: Annotated[str | None, typer.Option(
        help="scheduled: a 5-field cron, UTC (e.g. '*/5 * * * *')")] = None,
    market: Annotated[str | None, typer.Option(help="market (default: the coordinator's)")
                      ] = None,
    max_spend: Annotated[str | None, typer.Option(help="most NOS it may spend in all")] = None,
    grace: Annotated[int, typer.Option(
        help="seconds a replica may fail its health checks before it is replaced")] = 10,
    lead: Annotated[int, typer.Option(
        help="seconds before a replica's deadline to extend or replace it")] = 30,
    overlap: Annotated[str, typer.Option(
        help="scheduled: forbid (skip a run while the last is live) or allow")] = "forbid",
    url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False,
) -> None:
    """Create a deployment: the market keeps its replicas running by its strategy."""
    text = _read(spec)
    with client(url, keypair) as c:
        d = c.create_deployment(strategy=strategy, spec_text=text, name=name,
                                replicas=replicas, timeout=timeout, schedule=schedule,
                                market=market, max_spend=max_spend, overlap=overlap,
                                grace_s=grace, lead_s=lead,
                                idempotency_key=uuid.uuid4().hex)
        _show(d, json, c.url)


@app.command("list")
def list_(url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False) -> None:
    """Your deployments."""
    with client(url, keypair) as c:
        page = c.service_deployments()
    if json:
        print_json(page)
        return
    console.print(table("deployments", ["name", "id", "strategy", "status", "replicas",
                                        "revision", "spent NOS"], [
        [d.name, d.id, d.strategy, d.status, f"{len(d.running)}/{d.replicas}", d.revision,
         d.spent_nos] for d in page.deployments]))


@app.command("show")
def show(ref: str, url: UrlOpt = None, keypair: KeypairOpt = None,
         json: JsonOpt = False) -> None:
    """A deployment (by id or name): its replicas, health and stable URLs."""
    with client(url, keypair) as c:
        _show(c.deployment(ref), json, c.url)


@app.command("events")
def events(ref: str,
           follow: Annotated[bool, typer.Option("--follow", "-f", help="keep following")
                             ] = False,
           url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False) -> None:
    """What happened to a deployment (replicas posted, unhealthy, replaced, extended…)."""
    after = 0
    with client(url, keypair) as c:
        while True:
            page: DeploymentEvents = c.deployment_events(ref, after)
            if json and not follow:
                print_json(page.events)
                return
            for e in page.events:
                if json:
                    print_json(e)
                else:
                    console.print(f"{time.strftime('%H:%M:%S', time.gmtime(e.at))} "
                                  f"[bold]{e.kind}[/] {e.job_id or ''} {e.detail}",
                                  highlight=False)
            after = page.next
            if not follow:
                return
            time.sleep(1.0)


@app.command("update")
def update(
    ref: str,
    spec: Annotated[Path | None, typer.Argument(help="a new definition: a new revision")
                    ] = None,
    replicas: int | None = None, timeout: int | None = None, schedule: str | None = None,
    market: str | None = None, max_spend: str | None = None,
    url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False,
) -> None:
    """Change a deployment; a new definition rolls out replica by replica (and rolls back
    by itself if its replicas never become healthy)."""
    text = _read(spec) if spec is not None else None
    with client(url, keypair) as c:
        _show(c.update_deployment(ref, spec_text=text, replicas=replicas, timeout=timeout,
                                  schedule=schedule, market=market, max_spend=max_spend),
              json, c.url)


def _action(name: str, help_text: str) -> None:
    def command(ref: str, url: UrlOpt = None, keypair: KeypairOpt = None,
                json: JsonOpt = False) -> None:
        with client(url, keypair) as c:
            _show(c.deployment_action(ref, name), json, c.url)

    command.__doc__ = help_text
    app.command(name)(command)


_action("stop", "Stop a deployment: its replicas end (unspent escrow comes back).")
_action("start", "Start a stopped deployment again.")
_action("archive", "Stop a deployment for good.")
