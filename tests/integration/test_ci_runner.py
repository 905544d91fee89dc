"""The step runner zip, run as the container runs it (``python3 job.pyz``) but on this host,
with its root, inputs and outputs pointed at a temporary directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nosgrid.integrations.ci.bundle import runner_plan, runner_zip
from nosgrid.integrations.ci.model import parse_workflow
from nosgrid.integrations.ci.plan import JobContexts, instances
from nosgrid.integrations.ci.run import tar_bytes
from nosgrid.integrations.ci.runner_main import parse_file_commands, python_matches
from nosgrid.integrations.ci.source import load_source

WORKFLOW = """\
env: {WF: wf-level}
jobs:
  j:
    env: {JOB: job-level}
    defaults: {run: {working-directory: sub}}
    outputs:
      answer: ${{ steps.calc.outputs.answer }}
      multi: ${{ steps.calc.outputs.multi }}
    steps:
      - uses: actions/checkout@v4
      - id: calc
        run: |
          echo "answer=42" >> "$GITHUB_OUTPUT"
          { echo "multi<<EOT"; echo line1; echo line2; echo EOT; } >> "$GITHUB_OUTPUT"
          echo "LATER=from-env-file" >> "$GITHUB_ENV"
          mkdir -p "$RUNNER_TEMP/bin"
          printf '#!/bin/sh\\necho tool-ran\\n' > "$RUNNER_TEMP/bin/mytool"
          chmod +x "$RUNNER_TEMP/bin/mytool" && echo "$RUNNER_TEMP/bin" >> "$GITHUB_PATH"
          echo "## summary line" >> "$GITHUB_STEP_SUMMARY"
          test "$(cat here.txt)" = "in sub"
      - name: env ${{ env.LATER }}
        env: {STEP: "${{ env.JOB }}-${{ env.LATER }}"}
        run: |
          test "$WF $JOB $LATER $STEP" = "wf-level job-level from-env-file job-level-from-env-file"
          mytool
          echo "answer was ${{ steps.calc.outputs.answer }} and secret ${{ secrets.TOKEN }}"
      - shell: python
        run: |
          import os
          print("python step in", os.getcwd().rsplit("/", 1)[-1])
      - id: slow
        timeout-minutes: 0.02
        continue-on-error: true
        run: sleep 30
      - if: steps.slow.outcome == 'failure' && steps.slow.conclusion == 'success'
        run: echo "slow step timed out but continued"
      - run: exit 4
      - run: echo not-run
      - if: ${{ failure() }}
        uses: actions/upload-artifact@v4
        with: {name: out, path: "*.txt", if-no-files-found: error}
      - uses: actions/setup-python@v5
        if: always()
        with: {python-version: "2.7"}
"""


def run_runner(tmp_path: Path, text: str, secrets: dict[str, str] | None = None
               ) -> tuple[dict[str, Any], str]:
    src = load_source(text, "ci.yml")
    wf = parse_workflow(src)
    ctx = JobContexts(github={"sha": "abc", "ref": "refs/heads/main"},
                      workflow_env={"WF": "wf-level"})
    inst = instances("j", wf.jobs["j"], ctx, default_market=None)[0]
    plan = runner_plan(wf, inst, contexts={"github": ctx.github, "needs": {}},
                       secrets=secrets or {}, timeout_s=600, caches={})
    inputs = tmp_path / "inputs" / "ci"
    inputs.mkdir(parents=True)
    (inputs / "job.pyz").write_bytes(runner_zip(plan))
    (inputs / "tree.tar.gz").write_bytes(tar_bytes({"sub/here.txt": b"in sub",
                                                     "top.txt": b"top"}))
    env = {"PATH": os.environ["PATH"], "NOSGRID_CI_ROOT": str(tmp_path / "work"),
           "NOSGRID_CI_OUT": str(tmp_path / "outputs"), "NOSGRID_CI_INPUTS": str(inputs.parent)}
    # -I: the runner must work without nosgrid importable, as in the container
    proc = subprocess.run([sys.executable, "-I", str(inputs / "job.pyz")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads((tmp_path / "outputs" / "ci" / "result.json").read_text()), proc.stdout


def test_file_commands_env_path_outputs_summary_timeouts_and_failure(tmp_path: Path) -> None:
    result, out = run_runner(tmp_path, WORKFLOW, {"TOKEN": "hunter2"})
    steps = [(s["title"], s["outcome"], s["conclusion"]) for s in result["steps"]]
    assert steps[1] == ("Run echo \"answer=42\" >> \"$GITHUB_OUTPUT\"", "success", "success")
    assert steps[2] == ("env from-env-file", "success", "success")
    assert steps[3][1] == "success"
    assert steps[4][1:] == ("failure", "success")  # timed out, continue-on-error
    assert steps[5][1] == "success"
    assert steps[6][1] == "failure"
    assert steps[7][1] == "skipped"
    assert steps[8][1] == "success"  # if: failure() ran the upload
    assert steps[9][1] == "failure"  # the image lacks Python 2.7: a clear step failure
    assert result["status"] == "failure"
    assert result["outputs"] == {"answer": "42", "multi": "line1\nline2"}
    assert result["summary"] == "## summary line"
    assert result["artifacts"] == [{"name": "out", "files": 1,
                                    "bytes": result["artifacts"][0]["bytes"]}]
    assert "tool-ran" in out and "answer was 42 and secret ***" in out
    assert "hunter2" not in out and "python step in sub" in out
    assert "not-run" not in out.replace("Run echo not-run", "")
    assert "provides Python" in out and "asks for 2.7" in out
    assert "timeout-minutes" in out


def test_parse_file_commands_and_python_versions() -> None:
    assert parse_file_commands("A=1\n\nB=x=y\nC<<E\n\nz\nE\n") == {"A": "1", "B": "x=y",
                                                                   "C": "\nz"}
    with pytest.raises(ValueError, match="never ends"):
        parse_file_commands("A<<E\nno end\n")
    with pytest.raises(ValueError, match="neither"):
        parse_file_commands("just words\n")
    assert python_matches("3", (3, 11, 2)) and python_matches("3.11.x", (3, 11, 9))
    assert not python_matches("3.11.3", (3, 11, 2)) and not python_matches("pypy3.10",
                                                                          (3, 10, 0))
