"""`nosgrid up` (a whole local marketplace) and `nosgrid demo` (what `make run` shows).

``up`` starts a coordinator on SQLite with the dev faucet, creates the ``cpu`` market,
and starts N node agents, each as its own process, so that a node can be killed without
taking the coordinator down. Ctrl-C, SIGTERM or SIGHUP stops everything, at any moment,
in a few seconds: the nodes first (they stop their containers and hand their jobs back),
then the model hub and the coordinator; then whatever a killed node left behind goes too
(every container, pod and volume of the run carries the ``nosgrid.up`` label).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, Final

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

#: every container, pod and volume a node of one ``up`` creates carries this label, with
#: the run's state directory as its value (what ``Stack.stop`` removes at the end)
UP_LABEL: Final = "nosgrid.up"
#: a job running when ``up`` stops gets this long to end before it is handed back
NODE_GRACE_S: Final = 1.0
#: how long the nodes, then the coordinator and the model hub, get to stop before SIGKILL
NODES_STOP_S: Final = 5.0
SERVICES_STOP_S: Final = 2.0

DEFAULT_MARKET: dict[str, Any] = {
    "name": "cpu", "price_per_second": 1_000, "max_timeout": 3600, "fee_bps": 500,
    "min_cpu_cores": 1,
}

#: runs in the busybox test image, the only image the demo needs
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


class _StopSignals:
    """SIGINT, SIGTERM and SIGHUP all mean "stop everything", once.

    The first one raises ``KeyboardInterrupt`` where the main thread is, as Ctrl-C does,
    so ``up``'s ``finally`` runs the cleanup; inside ``spawning()`` it waits until the new
    child is recorded (else it would outlive ``up`` unseen). From the first signal on,
    more signals are ignored: a second Ctrl-C must not cut the cleanup short.
    """

    SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.stopping = False
        self._spawning = 0
        self._pending = False

    def install(self) -> None:
        for sig in self.SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        if self.stopping:
            return
        if self._spawning:
            self._pending = True
            return
        self.stopping = True
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def spawning(self) -> Iterator[None]:
        self._spawning += 1
        try:
            yield
        finally:
            self._spawning -= 1
            if self._pending and not self._spawning and not self.stopping:
                self.stopping = True
                raise KeyboardInterrupt


#: ``up`` and ``demo`` install it; without (a benchmark's stack) ``spawning`` is a no-op
_stop_signals = _StopSignals()


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
        #: on every container, pod and volume of this run's nodes
        self.label = f"{UP_LABEL}={data_dir.resolve()}"

    def _spawn(self, args: list[str], log_name: str, *, module: str = "nosgrid.cli.main",
               env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        # each child in a session of its own: a terminal's Ctrl-C reaches only `up`, which
        # stops the children in order (nodes first) and kills each one's process group
        with open(self.data_dir / "logs" / log_name, "ab") as log, _stop_signals.spawning():
            proc = subprocess.Popen([sys.executable, "-m", module, *args], env=env,
                                    stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
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
                     "--default-market", DEFAULT_MARKET["name"], *extra], "coordinator.log")
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
        # no --market: a local marketplace's nodes serve every market they qualify for,
        # `cpu` and any created later
        proc = self._spawn(["node", "start", "--coordinator", self.url,
                            "--state-dir", str(self.data_dir / "nodes" / str(i)),
                            "--heartbeat", str(self.heartbeat_timeout_s / 3),
                            "--grace", str(NODE_GRACE_S), "--label", self.label],
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
        """Stop everything this stack started, in about ``NODES_STOP_S + SERVICES_STOP_S``
        at most: the nodes first, while the coordinator still takes their reports (each
        stops its containers and hands its job back), then the model hub and the
        coordinator; SIGKILL for a process past its time, and the run's labelled
        containers, pods and volumes removed once no node can create more."""
        nodes = [p for p in self.procs if p in self.node_procs.values()]
        _terminate(nodes, NODES_STOP_S)
        if self.node_procs:
            self._sweep()
        _terminate([p for p in self.procs if p not in nodes], SERVICES_STOP_S)

    def _sweep(self) -> None:
        if shutil.which("podman") is None:
            return
        from nosgrid.node.executor import PodmanRuntime

        try:
            left = asyncio.run(PodmanRuntime(self.data_dir / "executor").sweep(self.label))
        except NosgridError as exc:
            console.print(f"[yellow]could not remove this run's containers: {exc}[/]")
            return
        if left:
            console.print(f"removed what a stopped node left: {', '.join(left)}",
                          highlight=False)


def _terminate(procs: list[subprocess.Popen[bytes]], wait_s: float) -> None:
    """SIGTERM each process group, SIGKILL those still running after ``wait_s``."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
    end = time.monotonic() + wait_s
    for p in procs:
        try:
            p.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


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
    _stop_signals.install()
    stack = Stack(data, nodes, port, settlement=settlement,
                  heartbeat_timeout_s=heartbeat_timeout)
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
        console.print("stopping… (a few seconds)")
    finally:
        _stop_signals.stopping = True
        if model is not None and (data / "gateway-user.json").exists():
            from nosgrid.cli.gateway import stop_deployment

            # even mid-deploy: a deployment left behind would start a replica in the next
            # `up`; the nodes stop the replica's container when they stop
            with contextlib.suppress(NosgridError):
                stop_deployment(stack.url, _keypair(data / "gateway-user.json"), model,
                                wait_s=0)
            (data / "gateway-model").unlink(missing_ok=True)
        stack.stop()


def demo(
    data_dir: Annotated[Path | None, typer.Option(help="state directory")] = None,
    json: Annotated[bool, typer.Option("--json", help="print a JSON summary at the end")] = False,
) -> None:
    """What `make run` shows: a marketplace, a job in a container, and who got paid."""
    data = data_dir or default_data_dir() / "demo"
    _stop_signals.install()
    stack = Stack(data, 1, 0)
    try:
        console.rule("nosgrid demo")
        _demo_image()
        console.print(f"starting a coordinator and one node (state in {data})…")
        stack.start()
        stack.wait_nodes()
        summary = _run_demo_job(stack, data)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        _stop_signals.stopping = True
        stack.stop()
    if json:
        print_json(summary)


def _demo_image() -> None:
    """The demo job's image, built on first use (~1 s; the other images are not needed)."""
    from nosgrid.node.executor.images import BUSYBOX_IMAGE, build_test_images

    if build_test_images(if_missing=True, names=(BUSYBOX_IMAGE,)):
        console.print(f"built {BUSYBOX_IMAGE}", highlight=False)


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
