"""One workflow job as one nosgrid job: the runner zip (runner, expressions, plan) and the
Nosana-format job definition that runs it.

The definition holds no secret: secrets travel in the runner zip, an input blob only the
poster and the node that runs the job may read (and every line the runner prints masks
them).
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from nosgrid.integrations.ci import expressions, runner_main
from nosgrid.integrations.ci.model import Job, Workflow
from nosgrid.integrations.ci.plan import JobInstance, action_kind, step_title

RUNNER_PATH: Final = "/inputs/ci/job.pyz"
TREE_PATH: Final = "/inputs/ci/tree.tar.gz"
#: the runner keeps this much of the job's time to write its result and archives
RESULT_GRACE_S: Final = 15


@dataclass(frozen=True)
class CacheChoice:
    """A cache step's key, evaluated on the client, and the blob it restores (if any)."""

    key: str
    hit: str | None = None  # "exact", "prefix" or None
    matched_key: str | None = None
    sha256: str | None = None


@dataclass
class JobInputs:
    tree_sha: str
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> sha256
    caches: dict[int, CacheChoice] = field(default_factory=dict)  # step index -> choice


def step_plan(job: Job, caches: dict[int, CacheChoice]) -> list[dict[str, Any]]:
    """The steps as the runner reads them (raw values: the runner evaluates them)."""
    out: list[dict[str, Any]] = []
    for i, step in enumerate(job.steps):
        kind = "run" if step.run is not None else action_kind(step.uses or "") or "unknown"
        entry: dict[str, Any] = {
            "id": step.id, "title": step_title(step, i), "kind": kind, "if": step.if_,
            "run": step.run, "with": step.with_ or {}, "env": step.env or {},
            "shell": step.shell, "working_directory": step.working_directory,
            "continue_on_error": step.continue_on_error, "timeout_minutes": step.timeout_minutes,
        }
        if kind == "cache" and i in caches:
            c = caches[i]
            entry["cache"] = {"key": c.key, "hit": c.hit, "matched_key": c.matched_key}
        out.append(entry)
    return out


def runner_plan(wf: Workflow, inst: JobInstance, *, contexts: dict[str, Any],
                secrets: dict[str, str], timeout_s: int,
                caches: dict[int, CacheChoice]) -> dict[str, Any]:
    job = wf.jobs[inst.job_id]
    defaults: dict[str, Any] = {}
    for level in (wf.defaults, job.defaults):
        if level is not None and level.run is not None:
            if level.run.shell:
                defaults["shell"] = level.run.shell
            if level.run.working_directory:
                defaults["working-directory"] = level.run.working_directory
    return {
        "job_id": inst.job_id, "title": inst.title, "env": inst.env,
        "contexts": {**contexts, "secrets": secrets, "matrix": inst.matrix},
        "defaults": defaults, "steps": step_plan(job, caches), "outputs": job.outputs or {},
        "deadline_s": max(1, timeout_s - min(RESULT_GRACE_S, timeout_s // 10)),
        "masks": sorted(v for v in secrets.values() if v),
    }


def runner_zip(plan: dict[str, Any]) -> bytes:
    """``job.pyz``: ``__main__.py`` (the runner), ``ci_expressions.py`` and ``plan.json``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for arc, module in (("__main__.py", runner_main), ("ci_expressions.py", expressions)):
            info = zipfile.ZipInfo(arc, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, Path(str(module.__file__)).read_text(encoding="utf-8"))
        info = zipfile.ZipInfo("plan.json", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, json.dumps(plan, sort_keys=True))
    return buf.getvalue()


def job_definition(inst: JobInstance, *, runner_sha: str, inputs: JobInputs, timeout_s: int,
                   market: str | None) -> dict[str, Any]:
    """The nosgrid job for one instance: one ``container/run`` op that starts the runner."""
    blobs = [{"sha256": runner_sha, "path": RUNNER_PATH},
             {"sha256": inputs.tree_sha, "path": TREE_PATH}]
    blobs += [{"sha256": sha, "path": f"/inputs/ci/artifacts/{name}.tar.gz"}
              for name, sha in sorted(inputs.artifacts.items())]
    blobs += [{"sha256": c.sha256, "path": f"/inputs/ci/cache/{i}.tar.gz"}
              for i, c in sorted(inputs.caches.items()) if c.sha256]
    nosgrid: dict[str, Any] = {"timeout": timeout_s, "verification": "none", "inputs": blobs,
                               "outputs": ["/outputs"]}
    if market:
        nosgrid["market"] = market
    if inst.egress:
        nosgrid["network"] = "egress"
    args: dict[str, Any] = {"image": inst.image, "cmd": ["python3", RUNNER_PATH]}
    if inst.container_env:
        args["env"] = dict(inst.container_env)
    return {
        "version": "0.1", "type": "container",
        "meta": {"trigger": "nosgrid-ci", "nosgrid": nosgrid},
        "ops": [{"type": "container/run", "id": "ci", "args": args}],
    }
