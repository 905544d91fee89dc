"""`nosgrid ci run` as a user runs it: workflows through `nosgrid up`, real containers.

Needs the CI image (`nosgrid image build-ci --if-missing`, built once); skipped without it.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import NOSGRID, Cli, running_up, wait_until
from nosgrid.core.money import parse_nos
from nosgrid.node.executor.images import CI_IMAGE, image_exists
from simple_index import serve_index

pytestmark = [pytest.mark.e2e, pytest.mark.container]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ci"


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Cli, Path]]:
    if not image_exists(CI_IMAGE):
        pytest.skip(f"{CI_IMAGE} is missing: nosgrid image build-ci")
    tmp = tmp_path_factory.mktemp("ci-up")
    with serve_index(tmp / "index") as index_port:
        (tmp / "index-port").write_text(str(index_port))
        # the nodes' operator allows the local package index (and nothing else private)
        with running_up(tmp, 2, env={"NOSGRID_EGRESS_ALLOW": f"127.0.0.1:{index_port}"}
                        ) as stack:
            url, cli = stack.url, stack.cli
            me = tmp / "me.json"
            cli.run("wallet", "new", "--keypair", str(me))
            cli.run("faucet", "500", keypair=me)
            cli.env["NOSGRID_KEYPAIR"] = str(me)
            cli.run("market", "create", "open", "--price-per-second", "0.001", "--egress",
                    keypair=tmp / "up" / "admin.json")
            wait_until("the nodes in the egress market", lambda: httpx.get(
                f"{url}/v1/markets/open", timeout=1).json().get("nodes_online") == 2,
                timeout=30)
            yield url, cli, tmp


def ci_json(cli: Cli, *args: str, rc: int = 0, cwd_env: dict[str, str] | None = None
            ) -> dict[str, Any]:
    env = {**cli.env, **(cwd_env or {})}
    proc = subprocess.run([*NOSGRID, "ci", "run", *args, "--json"], env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.returncode == rc, f"{args}: rc {proc.returncode}\n{proc.stderr}\n{proc.stdout}"
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def balance(cli: Cli) -> int:
    return int(cli.json("wallet", "balance")["balance"])


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {j["name"]: j for j in report["jobs"]}


def test_the_example_project_passes_with_needs_a_matrix_and_an_artifact(
    up: tuple[str, Cli, Path], tmp_path: Path
) -> None:
    _url, cli, _ = up
    before = balance(cli)
    report = ci_json(cli, str(EXAMPLE / ".github" / "workflows" / "ci.yml"),
                     "--artifacts", str(tmp_path / "arts"))
    jobs = by_name(report)
    assert report["ok"] is True
    assert set(jobs) == {"lint", "test (add)", "test (mean)", "build"}
    assert all(j["state"] == "success" for j in jobs.values())
    # the matrix step read its matrix value, wrote GITHUB_OUTPUT, and the next step saw it
    assert jobs["test (add)"]["steps"][2]["title"] == "Unit tests (add)"
    assert [s["outcome"] for s in jobs["test (mean)"]["steps"]] == \
        ["success", "success", "success", "success", "skipped"]
    # GitHub's 360-minute default is clamped to the market's maximum (an hour)
    assert jobs["build"]["timeout_s"] == 3600 and "clamped" in jobs["build"]["timeout_note"]
    assert (tmp_path / "arts" / "dist" / "calc.tar.gz").is_file()
    assert jobs["build"]["artifacts"] == ["dist"]
    # the build ran only after lint and both tests (its job was posted after theirs ended)
    ids = [j["nosgrid_job"] for j in report["jobs"]]
    assert len(set(ids)) == 4
    assert balance(cli) == before - report["total_cost"]
    assert report["total_cost"] == sum(j["cost"] for j in report["jobs"]) > 0


FAILING = """\
name: failing
on: push
jobs:
  unit:
    runs-on: nosgrid-cpu
    timeout-minutes: 5
    outputs:
      greeting: ${{ steps.first.outputs.greeting }}
    steps:
      - uses: actions/checkout@v4
      - id: first
        run: |
          echo "greeting=hello" >> "$GITHUB_OUTPUT"
          echo "FROM_ENV=set-by-step" >> "$GITHUB_ENV"
          echo "/opt/extra-bin" >> "$GITHUB_PATH"
      - name: sees env, path and a masked secret
        run: |
          test "$FROM_ENV" = set-by-step
          case ":$PATH:" in *:/opt/extra-bin:*) echo path ok;; *) exit 3;; esac
          echo "token is ${{ secrets.MY_TOKEN }}"
      - name: allowed to fail
        continue-on-error: true
        run: exit 7
      - name: breaks
        run: echo about to fail && false
      - name: never runs
        run: echo SHOULD-NOT-RUN
      - name: on failure
        if: failure()
        run: echo "cleanup; greeting was ${{ steps.first.outputs.greeting }}"
      - name: keep the logs
        if: always()
        uses: actions/upload-artifact@v4
        with:
          name: logs
          path: notes.txt
  after:
    needs: unit
    runs-on: ubuntu-latest
    steps:
      - run: echo never
  fanout:
    runs-on: ubuntu-latest
    strategy:
      max-parallel: 1
      matrix:
        n: [1, 2]
    steps:
      - run: |
          echo "job ${{ strategy.job-index }} of ${{ strategy.job-total }}"
          test "${{ matrix.n }}" != 1
  report:
    needs: unit
    if: failure()
    runs-on: ubuntu-latest
    steps:
      - uses: actions/download-artifact@v4
        with: {name: logs, path: got}
      - run: echo "unit was ${{ needs.unit.result }}; notes say $(cat got/notes.txt)"
"""


def test_a_failing_step_fails_its_job_skips_the_rest_and_runs_if_failure(
    up: tuple[str, Cli, Path], tmp_path: Path
) -> None:
    _url, cli, _ = up
    (tmp_path / "notes.txt").write_text("notes\n")
    (tmp_path / "ci.yml").write_text(FAILING)
    report = ci_json(cli, str(tmp_path / "ci.yml"), "--artifacts", str(tmp_path / "arts"),
                     rc=1, cwd_env={"MY_TOKEN": "s3cr3t-value"})
    jobs = by_name(report)
    assert report["ok"] is False
    unit = jobs["unit"]
    assert unit["state"] == "failure" and "breaks" in unit["reason"]
    steps = {s["title"]: (s["outcome"], s["conclusion"]) for s in unit["steps"]}
    assert steps["sees env, path and a masked secret"] == ("success", "success")
    assert steps["allowed to fail"] == ("failure", "success")
    assert steps["breaks"] == ("failure", "failure")
    assert steps["never runs"] == ("skipped", "skipped")
    assert steps["on failure"] == ("success", "success")
    assert steps["keep the logs"] == ("success", "success")
    assert unit["outputs"] == {"greeting": "hello"}
    assert (tmp_path / "arts" / "logs" / "notes.txt").read_text() == "notes\n"
    assert report["skipped"] == ["after"]
    # max-parallel 1 and fail-fast: the first combination failed, the second never posted
    assert jobs["fanout (1)"]["state"] == "failure"
    assert jobs["fanout (2)"]["state"] == "cancelled"
    assert jobs["fanout (2)"]["nosgrid_job"] is None and jobs["fanout (2)"]["cost"] == 0
    assert "fail-fast" in jobs["fanout (2)"]["reason"]
    fan_logs = cli.run("job", "logs", jobs["fanout (1)"]["nosgrid_job"]).stdout
    assert "job 0 of 2" in fan_logs
    assert jobs["report"]["state"] == "success"  # downloaded the failed job's artifact
    report_logs = cli.run("job", "logs", jobs["report"]["nosgrid_job"]).stdout
    assert "unit was failure; notes say notes" in report_logs
    logs = cli.run("job", "logs", unit["nosgrid_job"]).stdout
    assert "token is ***" in logs and "s3cr3t-value" not in logs
    assert "SHOULD-NOT-RUN" not in logs.replace("echo SHOULD-NOT-RUN", "")


CACHED = """\
on: push
jobs:
  deps:
    runs-on: ubuntu-latest
    outputs:
      hit: ${{ steps.c.outputs.cache-hit }}
      stamp: ${{ steps.show.outputs.stamp }}
    steps:
      - uses: actions/checkout@v4
      - id: c
        uses: actions/cache@v4
        with:
          path: .deps
          key: deps-${{ runner.os }}-${{ hashFiles('requirements.txt') }}
      - if: steps.c.outputs.cache-hit != 'true'
        run: mkdir -p .deps && echo "built-$RANDOM$RANDOM" > .deps/built.txt
      - id: show
        run: echo "stamp=$(cat .deps/built.txt)" >> "$GITHUB_OUTPUT"
"""


def test_the_cache_hits_on_the_second_run(up: tuple[str, Cli, Path], tmp_path: Path) -> None:
    _url, cli, _ = up
    (tmp_path / "requirements.txt").write_text("calc==1\n")
    (tmp_path / "ci.yml").write_text(CACHED)
    first = by_name(ci_json(cli, str(tmp_path / "ci.yml")))["deps"]
    second = by_name(ci_json(cli, str(tmp_path / "ci.yml")))["deps"]
    assert first["outputs"]["hit"] == "false" and first["steps"][2]["outcome"] == "success"
    assert second["outputs"]["hit"] == "true" and second["steps"][2]["outcome"] == "skipped"
    assert second["outputs"]["stamp"] == first["outputs"]["stamp"]
    (tmp_path / "requirements.txt").write_text("calc==2\n")  # a new key: a miss again
    third = by_name(ci_json(cli, str(tmp_path / "ci.yml")))["deps"]
    assert third["outputs"]["hit"] == "false"


SLOW = """\
on: push
jobs:
  slow:
    runs-on: ubuntu-latest
    timeout-minutes: 10
    steps:
      - run: echo started && sleep 120
  later:
    needs: slow
    runs-on: ubuntu-latest
    steps:
      - run: echo never
"""


def test_sigint_mid_run_cancels_and_refunds_what_did_not_run(
    up: tuple[str, Cli, Path], tmp_path: Path
) -> None:
    _url, cli, _ = up
    (tmp_path / "ci.yml").write_text(SLOW)
    before = balance(cli)
    proc = subprocess.Popen([*NOSGRID, "ci", "run", str(tmp_path / "ci.yml"), "--json"],
                            env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)

    def running() -> bool:
        page = cli.json("job", "list")
        return any(j["state"] == "running" and j["timeout"] == 600 for j in page["jobs"])

    wait_until("the slow job to run", running, timeout=90)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    report = json.loads(out)
    jobs = by_name(report)
    assert report["cancelled"] is True and report["ok"] is False
    slow = jobs["slow"]
    assert slow["state"] == "cancelled"
    assert "later" not in jobs  # never posted
    # the escrow was 600 s at the market's price; what did not run came back
    assert slow["deposit"] == 600 * parse_nos("0.001")
    assert slow["refund"] > 0 and slow["cost"] + slow["refund"] == slow["deposit"]
    assert report["refunded"] == slow["refund"]
    assert balance(cli) == before - slow["cost"]
    status = cli.json("job", "status", slow["nosgrid_job"])
    assert status["state"] in ("cancelled", "settled")


EGRESS = """\
on: push
jobs:
  deps:
    runs-on: [nosgrid-open, nosgrid-egress]
    steps:
      - uses: actions/setup-python@v5
        with: {python-version: "3.x"}
      - name: pip through the node's proxy
        run: |
          pip install --disable-pip-version-check --index-url http://127.0.0.1:INDEX/simple/ tinypkg
          python -c "import tinypkg; print('VALUE', tinypkg.VALUE)"
      - name: refused destinations
        shell: python
        run: |
          import os, urllib.error, urllib.request
          opener = urllib.request.build_opener(urllib.request.ProxyHandler(
              {"http": os.environ["HTTP_PROXY"]}))
          for url in ("http://169.254.169.254/latest/meta-data", "http://10.0.0.1/",
                      "http://127.0.0.1:22/"):
              try:
                  opener.open(url, timeout=5)
                  print("REACHED", url)
              except urllib.error.HTTPError as exc:
                  print("refused", exc.code, url)
  no-market:
    runs-on: nosgrid-egress
    steps:
      - run: echo never
"""


def test_pip_install_through_the_egress_proxy_and_refused_addresses(
    up: tuple[str, Cli, Path], tmp_path: Path
) -> None:
    _url, cli, home = up
    index_port = (home / "index-port").read_text()
    (tmp_path / "ci.yml").write_text(EGRESS.replace("INDEX", index_port))
    report = ci_json(cli, str(tmp_path / "ci.yml"), "--market", "cpu", rc=1)
    jobs = by_name(report)
    assert jobs["deps"]["state"] == "success", jobs["deps"]
    assert jobs["deps"]["market"] == "open"
    logs = cli.run("job", "logs", jobs["deps"]["nosgrid_job"]).stdout
    assert "VALUE 42" in logs and "REACHED" not in logs
    assert logs.count("refused 403") == 3
    # the default market (cpu) does not allow egress: refused when posting, clearly
    assert jobs["no-market"]["state"] == "failure"
    assert "does not allow egress" in jobs["no-market"]["reason"]
    assert jobs["no-market"]["nosgrid_job"] is None
