"""`nosgrid node` commands: probe and benchmark this machine, run a node agent, show a node."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from nosgrid.cli.output import console, print_json
from nosgrid.core.errors import NotFound
from nosgrid.core.money import format_nos, parse_nos
from nosgrid.node.agent import run_node
from nosgrid.node.benchmark import run_benchmark
from nosgrid.node.hardware import probe_hardware
from nosgrid.sdk.client import AsyncClient, default_url
from nosgrid.sdk.models import NodeStats, NodeView, OracleReportView
from nosgrid.sdk.wallet import load_keypair, new_keypair, save_keypair

app = typer.Typer(help="Provide compute: probe this machine and run a node agent.",
                  no_args_is_help=True)


def default_node_dir() -> Path:
    """``$NOSGRID_STATE_DIR/node`` or ``~/.local/state/nosgrid/node``."""
    base = os.environ.get("NOSGRID_STATE_DIR")
    return Path(base) / "node" if base else Path.home() / ".local" / "state" / "nosgrid" / "node"


@app.command("info")
def info(
    state_dir: Path = typer.Option(None, "--state-dir", help="Where jobs' files would go."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show what this machine has: CPU, memory, disk, Podman, NVIDIA GPUs."""
    probe = probe_hardware(state_dir or default_node_dir())
    if as_json:
        print_json(probe.as_dict())
        return
    r = probe.report
    table = Table("what", "value", show_header=False)
    table.add_row("CPU", f"{r.cpu_model} ({r.cpu_cores} cores, {probe.arch})")
    table.add_row("memory", f"{r.memory_mb} MB")
    table.add_row("disk free", f"{r.disk_free_mb} MB")
    table.add_row("podman", r.podman_version or "[red]missing[/]")
    table.add_row("runc", probe.runtime_version or "[red]missing[/]")
    table.add_row("kernel", probe.kernel)
    if probe.gpus:
        table.add_row("NVIDIA driver", f"{probe.driver_version} (CUDA {probe.cuda_version})")
        for g in probe.gpus:
            table.add_row(f"GPU {g.index}", f"{g.model}, {g.vram_mb} MB")
    else:
        table.add_row("GPUs", f"none ({probe.gpu_error})" if probe.gpu_error else "none")
    console.print(table)


@app.command("benchmark")
def benchmark(
    seconds: float = typer.Option(1.0, "--seconds", min=0.1, max=30, help="Time budget."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Measure CPU throughput (sha256, matmul); the score is sent when the node registers."""
    result = run_benchmark(seconds)
    if as_json:
        print_json(result.as_dict())
        return
    console.print(f"cpu_score: {result.cpu_score} GFLOP/s (float64 matmul)", highlight=False)
    console.print(f"sha256: {result.sha256_mb_s:.0f} MB/s on one core", highlight=False)
    for i, tflops in enumerate(result.gpu_tflops_estimate):
        console.print(f"GPU {i}: ~{tflops:.1f} TFLOP/s FP32 (estimate from clocks)")


def _node_keypair(state_dir: Path, keypair: Path | None) -> Any:
    if keypair is not None:
        return load_keypair(keypair)
    path = state_dir / "id.json"
    if not path.exists():
        save_keypair(new_keypair(), path)
        console.print(f"created node keypair {path}", highlight=False)
    return load_keypair(path)


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise typer.BadParameter(f"{text!r} is not KEY=VALUE", param_hint="--label")
    return key, value


@app.command("start")
def start(
    coordinator: str = typer.Option(None, "--coordinator", help="Coordinator URL."),
    market: list[str] = typer.Option(
        [], "--market", help="Pin the markets to serve (repeat); without it the node serves "
        "every market it qualifies for, joining new ones as they are created."),
    state_dir: Path = typer.Option(None, "--state-dir", help="Agent state and job files."),
    keypair: Path = typer.Option(None, "--keypair", help="Node keypair (default: state dir)."),
    grace_s: float = typer.Option(30.0, "--grace", help="Seconds a job gets on SIGTERM."),
    heartbeat_s: float = typer.Option(10.0, "--heartbeat", min=0.2,
                                      help="Seconds between heartbeats (keep it well under "
                                           "the coordinator's heartbeat timeout)."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Debug logging."),
    label: list[str] = typer.Option([], "--label", help="KEY=VALUE put on every container, "
                                    "pod and volume this node creates (repeat)."),
    lying: bool = typer.Option(False, "--lying", hidden=True,
                               help="TEST ONLY: upload garbage instead of real outputs "
                                    "(exercises audits, disputes and slashing)."),
) -> None:
    """Run a node agent until SIGINT/SIGTERM (then the running job is finished or handed back)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    labels = dict(_label(text) for text in label)
    directory = (state_dir or default_node_dir()).expanduser()
    kp = _node_keypair(directory, keypair)
    url = coordinator or default_url()
    serving = ", ".join(market) or "any it qualifies for"
    console.print(f"node {kp.pubkey()} → {url} (markets: {serving})", highlight=False)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        await run_node(url, kp, directory, market, stop, grace_s=grace_s, lying=lying,
                       heartbeat_s=heartbeat_s, labels=labels)

    asyncio.run(main())


@app.command("ask")
def ask(
    market: str = typer.Argument(..., help="A market this node serves."),
    price: str = typer.Argument(..., help="The node's ask, NOS per second."),
    coordinator: str = typer.Option(None, "--coordinator", help="Coordinator URL."),
    state_dir: Path = typer.Option(None, "--state-dir", help="The node's state dir."),
    keypair: Path = typer.Option(None, "--keypair", help="Node keypair (default: state dir)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Publish this node's ask for a market (a source of the price oracle; replaces the
    last one; the node needs the reporter stake)."""
    amount = parse_nos(price)
    kp = _node_keypair((state_dir or default_node_dir()).expanduser(), keypair)

    async def send() -> OracleReportView:
        async with AsyncClient(coordinator or default_url(), kp) as c:
            return await c.publish_ask(market, amount)

    r = asyncio.run(send())
    if as_json:
        print_json(r)
        return
    console.print(f"ask {format_nos(r.price)} NOS/s in {r.market} published "
                  f"(epoch {r.epoch})", highlight=False)


@app.command("show")
def show(
    node_id: str = typer.Argument(..., help="The node's public key."),
    coordinator: str = typer.Option(None, "--coordinator", help="Coordinator URL."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a node as the coordinator knows it (hardware, markets, stake)."""

    async def fetch() -> NodeView:
        async with AsyncClient(coordinator or default_url()) as client:
            return await client.node(node_id)

    try:
        node = asyncio.run(fetch())
    except NotFound:
        raise NotFound(f"no node {node_id} on this coordinator") from None
    if as_json:
        print_json(node)
        return
    hw = node.hardware
    table = Table("what", "value", show_header=False)
    for key, value in (("id", node.id), ("markets", node.markets),
                       ("registered_at", node.registered_at)):
        table.add_row(key, str(value))
    table.add_row("stake", format_nos(node.stake) + " NOS")
    table.add_row("CPU", f"{hw.cpu_model} ({hw.cpu_cores} cores), score {hw.cpu_score}")
    table.add_row("memory", f"{hw.memory_mb} MB")
    table.add_row("GPUs", ", ".join(f"{g.model} {g.vram_mb} MB" for g in hw.gpus) or "none")
    console.print(table)


@app.command("stats")
def stats(
    node_id: str = typer.Argument(..., help="The node's public key."),
    coordinator: str = typer.Option(None, "--coordinator", help="Coordinator URL."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """A node's uptime, earnings per day, jobs, audits and queue positions (the dashboard's
    node page, for scripts and bots)."""

    async def fetch() -> NodeStats:
        async with AsyncClient(coordinator or default_url()) as client:
            return await client.node_stats(node_id)

    s = asyncio.run(fetch())
    if as_json:
        print_json(s)
        return
    table = Table("what", "value", show_header=False)
    table.add_row("uptime 24 h / 7 d", f"{100 * s.uptime_24h:.1f}% / {100 * s.uptime_7d:.1f}%")
    table.add_row("jobs run", str(s.jobs_run))
    table.add_row("audits passed / faults", f"{s.audits_passed} / {s.audit_faults}")
    table.add_row("slashes", str(s.slashes))
    table.add_row("earned (all time)", f"{s.earned_total_nos} NOS")
    for q in s.queue:
        table.add_row(f"queue in {q.market}", f"{q.position or '-'} ({q.why})")
    for day in s.earnings[-7:]:
        table.add_row(f"earned {time.strftime('%Y-%m-%d', time.gmtime(day.day))}",
                      f"{day.earned_nos} NOS")
    console.print(table)
