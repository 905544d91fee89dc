"""`nosgrid market price/report/register-reporter` and `nosgrid node ask` against a real
coordinator on uvicorn (a thread of this process, SQLite, the clock held still)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from api_fixtures import Clock
from gateway_fixtures import free_port
from solders.keypair import Keypair
from typer.testing import CliRunner

from nosgrid.cli.main import app as cli
from nosgrid.coordinator.app import create_app
from nosgrid.coordinator.runtime import Coordinator
from nosgrid.coordinator.settings import CoordinatorSettings
from nosgrid.core.pricing import epoch_of
from nosgrid.sdk.client import Client
from nosgrid.sdk.wallet import save_keypair

HW = {"cpu_cores": 2, "memory_mb": 4096}


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, Coordinator, Clock, Keypair]]:
    clock, admin = Clock(), Keypair()
    settings = CoordinatorSettings(db=str(tmp_path / "c.db"), data_dir=tmp_path, faucet=True,
                                   admin_keys=frozenset({str(admin.pubkey())}))
    app = create_app(settings, clock=clock, background=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(),
                                           log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the coordinator did not start")
        time.sleep(0.02)
    url = f"http://127.0.0.1:{server.config.port}"
    try:
        yield url, app.state.coordinator, clock, admin
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _kp(tmp_path: Path, name: str) -> tuple[Keypair, Path]:
    kp = Keypair()
    path = tmp_path / f"{name}.json"
    save_keypair(kp, path)
    return kp, path


def test_market_price_report_and_ask_from_the_cli(
        live: tuple[str, Coordinator, Clock, Keypair], tmp_path: Path) -> None:
    url, coord, clock, admin = live
    def run(*args: Any, **kwargs: Any) -> Any:
        res = CliRunner().invoke(*args, **kwargs)
        res.flat = " ".join(res.output.split())
        return res

    with Client(url, admin) as c:
        c.create_market({"name": "cpu", "price_per_second": 1000})
    res = run(cli, ["market", "price", "cpu", "--url", url])
    assert res.exit_code == 0, res.output
    assert "too few fresh sources: configured price used" in res.flat
    epoch = epoch_of(int(clock.t))
    reporters = []
    for i in range(3):
        kp, path = _kp(tmp_path, f"op{i}")
        _, rep_path = _kp(tmp_path, f"rep{i}")
        with Client(url, kp) as c:
            c.faucet("200")
            c.change_stake("stake", amount="100", days=14)
        res = run(cli, ["market", "register-reporter", "--operator-keypair", str(path),
                        "--url", url, "--keypair", str(rep_path)])
        assert res.exit_code == 0 and f"reports for {kp.pubkey()}" in res.flat, res.output
        reporters.append(rep_path)
    for path, price in zip(reporters, ("0.002", "0.0021", "0.0019"), strict=True):
        res = run(cli, ["market", "report", "cpu", price, "--epoch", str(epoch), "--url", url,
                        "--keypair", str(path)])
        assert res.exit_code == 0 and "accepted" in res.flat, res.output
    res = run(cli, ["market", "report", "nos_usd", "0.5", "--epoch", str(epoch), "--url", url,
                    "--keypair", str(reporters[0]), "--json"])
    assert json.loads(res.output)["price"] == 500_000
    # a node's ask (a fourth operator, staked)
    node_kp, node_path = _kp(tmp_path, "node")
    with Client(url, node_kp) as c:
        c.faucet("200")
        c.change_stake("stake", amount="100", days=14)
        c.register_node(HW, ["cpu"])
    res = run(cli, ["node", "ask", "cpu", "0.002", "--coordinator", url,
                    "--keypair", str(node_path)])
    assert res.exit_code == 0 and "ask 0.002 NOS/s in cpu published" in res.flat, res.output
    coord.close_oracle_epoch((epoch + 1) * 600)  # the epoch closes
    res = run(cli, ["market", "price", "cpu", "--usd", "--url", url])
    assert res.exit_code == 0, res.output
    assert f"0.002 NOS/s (oracle, epoch {epoch}" in res.flat
    assert "configured price used" not in res.flat and "no USD price" in res.flat  # 1 rate
    # source is too few
    out = json.loads(run(cli, ["market", "price", "cpu", "--json", "--url", url]).output)
    assert out["source"] == "oracle" and out["price_per_second"] == 2000
    res = run(cli, ["market", "show", "cpu", "--url", url])
    assert "reference price" in res.flat and "(oracle: median of 4" in res.flat, res.output
    res = run(cli, ["market", "price", "nope", "--url", url])
    assert res.exit_code != 0 and "Traceback" not in res.output
