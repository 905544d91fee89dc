"""`nosgrid up` (a whole local marketplace) and `nosgrid demo` (what `make run` shows).

``up`` starts a coordinator on SQLite with the dev faucet, creates the ``cpu`` market,
and starts N node agents, each as its own process, so that a node can be killed without
taking the coordinator down. Ctrl-C stops everything.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from nosgrid.cli.output import console, print_json
from nosgrid.coordinator.settings import default_data_dir
from nosgrid.core.errors import AlreadyExists, NosgridError, Unavailable
from nosgrid.core.money import format_nos
from nosgrid.sdk.client import Client
from nosgrid.sdk.wallet import load_keypair, new_keypair, save_keypair

#: a local marketplace's nodes are all newcomers (no eligible auditors): release held pay
#: after a minute rather than a day
LOCAL_AUDIT_WINDOW_S = 60

DEFAULT_MARKET: dict[str, Any] = {
    "name": "cpu", "price_per_second": 1_000, "max_timeout": 3600, "fee_bps": 500,
    "min_cpu_cores": 1,
}

DEMO_JOB: dict[str, Any] = {
    "version": "0.1",
    "type": "container",
    "meta": {"trigger": "cli", "nosgrid": {"timeout": 120, "outputs": ["/outputs"]}},
    "ops": [{
        "type": "container/run",
        "id": "primes",
        "args": {
            "image": "localhost/nosgrid-busybox:test",
            "cmd": (
                "echo \"running as $(id -un) on $(hostname), no network: $(ls /sys/class/net)\"; "
                "for n in 10000 20000 40000; do "
                "c=$(awk -v n=$n 'BEGIN{k=0; for(i=2;i<n;i++){p=1; "
                "for(j=2;j*j<=i;j++) if(i%j==0){p=0;break}; k+=p}; print k}'); "
                "echo \"primes below $n: $c\"; echo \"$n $c\" >> /outputs/primes.txt; done; "
                "echo done"
            ),
        },
    }],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keypair(path: Path) -> Any:
    if not path.exists():
        save_keypair(new_keypair(), path)
    return load_keypair(path)


class Stack:
    """A coordinator process and N node-agent processes sharing one state directory."""

    def __init__(self, data_dir: Path, nodes: int, port: int, host: str = "127.0.0.1",
                 settlement: str = "local", hf_endpoint: str | None = None,
                 heartbeat_timeout_s: float = 30.0) -> None:
        self.data_dir = data_dir
        #: nodes heartbeat three times per timeout
        self.heartbeat_timeout_s = heartbeat_timeout_s
        #: where nodes resolve model resources (``nosgrid up --model``: the local hub)
        self.hf_endpoint = hf_endpoint
        self.settlement = settlement
        self.nodes = nodes
        self.port = port or _free_port()
        self.url = f"http://{host}:{self.port}"
        self.host = host
        self.procs: list[subprocess.Popen[bytes]] = []
        self.node_procs: dict[int, subprocess.Popen[bytes]] = {}
        self.admin = _keypair(data_dir / "admin.json")

    def _spawn(self, args: list[str], log_name: str, *, module: str = "nosgrid.cli.main",
               env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.data_dir / "logs" / log_name, "ab")  # noqa: SIM115 (owned by the child)
        proc = subprocess.Popen([sys.executable, "-m", module, *args], env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start(self, wait_s: float = 30.0) -> None:
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        extra: list[str] = []
        if self.settlement == "litesvm":  # the chain lives in the coordinator: a fresh ledger
            db = self.data_dir / "coordinator-litesvm.db"
            for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
                path.unlink(missing_ok=True)
            extra = ["--settlement", "litesvm", "--db", str(db)]
        self._spawn(["coordinator", "start", "--data-dir", str(self.data_dir), "--host",
                     self.host, "--port", str(self.port), "--faucet", "--admin",
                     str(self.admin.pubkey()), "--heartbeat-timeout",
                     str(self.heartbeat_timeout_s), "--audit-window", str(LOCAL_AUDIT_WINDOW_S),
                     *extra], "coordinator.log")
        self.wait_healthy(wait_s)
        with Client(self.url, self.admin) as admin, contextlib.suppress(AlreadyExists):
            admin.create_market(DEFAULT_MARKET)
        for i in range(self.nodes):
            self.start_node(i)

    def supervise(self) -> bool:
        """Restart any node agent that died (it then reports the job it had in flight);
        False once the coordinator itself is gone."""
        coordinator = self.procs[0]
        if coordinator.poll() is not None:
            return False
        for i, proc in list(self.node_procs.items()):
            if proc.poll() is not None:
                console.print(f"[yellow]node {i} exited ({proc.returncode}); restarting it[/]")
                self.procs.remove(proc)
                self.start_node(i)
        return True

    def start_node(self, i: int) -> subprocess.Popen[bytes]:
        env = {**os.environ, "HF_ENDPOINT": self.hf_endpoint} if self.hf_endpoint else None
        proc = self._spawn(["node", "start", "--coordinator", self.url, "--market", "cpu",
                            "--state-dir", str(self.data_dir / "nodes" / str(i)),
                            "--heartbeat", str(self.heartbeat_timeout_s / 3)],
                           f"node-{i}.log", env=env)
        self.node_procs[i] = proc
        return proc

    def start_model_hub(self, wait_s: float = 30.0) -> str:
        """Serve the packaged models as an HF hub on 127.0.0.1; nodes started after use it."""
        port = _free_port()
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        proc = self._spawn(["hub", "--port", str(port)], "model-hub.log",
                           module="nosgrid.cli.gateway")
        self.hf_endpoint = f"http://127.0.0.1:{port}"
        end = time.monotonic() + wait_s
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                return self.hf_endpoint
            if proc.poll() is not None or time.monotonic() > end:
                raise Unavailable(f"the model hub did not start; see {self.data_dir}/logs")
            time.sleep(0.1)

    def wait_healthy(self, wait_s: float) -> None:
        end = time.monotonic() + wait_s
        with Client(self.url, self.admin) as c:
            while True:
                try:
                    c.health()
                    return
                except Unavailable:
                    if time.monotonic() > end or any(p.poll() is not None for p in self.procs):
                        raise Unavailable(
                            f"the coordinator did not come up; see {self.data_dir}/logs"
                        ) from None
                    time.sleep(0.1)

    def wait_nodes(self, wait_s: float = 30.0) -> None:
        end = time.monotonic() + wait_s
        with Client(self.url, self.admin) as c:
            while c.market("cpu").nodes_online < self.nodes:
                if time.monotonic() > end:
                    raise Unavailable(f"nodes did not register; see {self.data_dir}/logs")
                time.sleep(0.2)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def _stop_on_sigterm() -> None:
    """Treat SIGTERM (a process manager, `kill`) like Ctrl-C, so the coordinator and the
    nodes are stopped too instead of outliving this process."""
    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def up(
    nodes: Annotated[int, typer.Option("--nodes", help="local node agents to start")] = 1,
    port: Annotated[int, typer.Option(help="coordinator port")] = 8700,
    data_dir: Annotated[Path | None, typer.Option(help="state directory")] = None,
    settlement: Annotated[str, typer.Option(
        help="local, or litesvm: real SPL transfers on an in-process Solana")] = "local",
    model: Annotated[str | None, typer.Option(
        "--model", help="also deploy a packaged model (smollm2) behind the OpenAI-compatible "
        "gateway and print a snippet to call it")] = None,
    heartbeat_timeout: Annotated[float, typer.Option(
        min=1.0, help="seconds of silence before a node's jobs are requeued")] = 30.0,
) -> None:
    """Start a local marketplace: coordinator, faucet, `cpu` market and N nodes."""
    if settlement not in ("local", "litesvm"):
        raise typer.BadParameter("use local or litesvm", param_hint="--settlement")
    data = data_dir or default_data_dir() / "up"
    stack = Stack(data, nodes, port, settlement=settlement,
                  heartbeat_timeout_s=heartbeat_timeout)
    _stop_on_sigterm()
    try:
        if model is not None:
            from nosgrid.cli.gateway import check_model

            check_model(model)
            stack.start_model_hub()
        stack.start()
        stack.wait_nodes()
        if model is not None:
            from nosgrid.cli.gateway import deploy_and_print

            deploy_and_print(stack.url, model, data)
        console.print(f"[bold green]nosgrid is up[/] at {stack.url} with {nodes} node(s); "
                      f"state in {data}")
        console.print("next, in another terminal:\n"
                      f"  export NOSGRID_URL={stack.url}\n"
                      "  nosgrid wallet new && nosgrid faucet 100\n"
                      + ("  nosgrid wallet approve 50\n" if settlement == "litesvm" else "")
                      + "  nosgrid job post examples/jobs/batch-hello.json --market cpu --wait\n"
                      "Ctrl-C stops everything.")
        while stack.supervise():
            time.sleep(0.5)
        console.print("[red]the coordinator exited; stopping[/] (see logs in "
                      f"{data / 'logs'})")
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        if model is not None and (data / "gateway-model").exists():
            from nosgrid.cli.gateway import stop_deployment

            with contextlib.suppress(NosgridError):  # the replica's container goes first
                stop_deployment(stack.url, _keypair(data / "gateway-user.json"), model)
            (data / "gateway-model").unlink(missing_ok=True)
        stack.stop()


def demo(
    data_dir: Annotated[Path | None, typer.Option(help="state directory")] = None,
    json: Annotated[bool, typer.Option("--json", help="print a JSON summary at the end")] = False,
) -> None:
    """What `make run` shows: a marketplace, a job in a container, and who got paid."""
    data = data_dir or default_data_dir() / "demo"
    stack = Stack(data, 1, 0)
    _stop_on_sigterm()
    try:
        console.rule("nosgrid demo")
        console.print(f"starting a coordinator and one node (state in {data})…")
        stack.start()
        stack.wait_nodes()
        summary = _run_demo_job(stack, data)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        stack.stop()
    if json:
        print_json(summary)


def _treasury(c: Client) -> int:
    return c.ledger_summary().treasury


def _run_demo_job(stack: Stack, data: Path) -> dict[str, Any]:
    client_kp = _keypair(data / "client.json")
    with Client(stack.url, client_kp) as c:
        c.faucet("100")
        before = {"client": c.balance().balance, "treasury": _treasury(c)}
        console.print(f"client {c.pubkey[:8]}… has [bold]{format_nos(before['client'])} NOS[/]")
        job = c.post_job(spec=DEMO_JOB, market="cpu")
        console.print(f"posted job [bold]{job.id}[/] (escrowed {job.deposit_nos} NOS); "
                      "logs from the container:")
        for chunk in c.follow_logs(job.id):
            console.print(f"  [dim]{chunk.stream}[/] {chunk.data.rstrip()}",
                          highlight=False)
        done = c.wait(job.id, timeout_s=180)
        if done.outcome != "completed" or done.settlement is None:
            raise NosgridError(f"the demo job ended {done.state} ({done.outcome}): "
                               f"{done.reason}")
        outputs = done.result.get("outputs", [])
        for out in outputs:
            body = c.download_blob(out["sha256"]).decode(errors="replace")
            console.print(f"output {out['path']} ({out['size']} bytes):\n{body.rstrip()}")
        node = str(done.node)
        node_balance = c.node(node).balance
        after = {"client": c.balance().balance, "treasury": _treasury(c)}
        verify = c.ledger_verify()
    s = done.settlement
    console.print(f"client paid [bold]{s.cost_nos} NOS[/] for {done.seconds_used}s "
                  f"({format_nos(before['client'])} → {format_nos(after['client'])})")
    console.print(f"node {node[:8]}… earned [bold]{format_nos(s.node_pay)} NOS[/] "
                  f"(balance {format_nos(node_balance)})")
    console.print(f"treasury fee [bold]{format_nos(s.treasury_fee)} NOS[/] "
                  f"({format_nos(before['treasury'])} → {format_nos(after['treasury'])})")
    console.print(("[green]ledger verified[/]" if verify.ok else "[red]ledger FAILED[/]")
                  + f": {verify.entries} entries, supply {verify.supply} NOS")
    if not verify.ok:
        raise NosgridError("ledger verification failed: " + "; ".join(verify.problems))
    return {"job": done.id, "state": str(done.state), "settlement": s.model_dump(mode="json"),
            "client_before": before["client"], "client_after": after["client"],
            "node_balance": node_balance, "treasury_before": before["treasury"],
            "treasury_after": after["treasury"], "ledger_ok": verify.ok}
