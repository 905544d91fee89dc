"""Drive a checked workflow through the SDK: one nosgrid job per workflow job (and matrix
combination), posted when its ``needs`` are done, independent ones in parallel.

The tree is packed and uploaded once; each job gets its runner zip, the artifacts it may
download and the cache it restores as input blobs. ``fail-fast`` cancels a failed
matrix's siblings; ``cancel()`` (Ctrl-C, SIGTERM) cancels every remote job, and the
coordinator refunds the escrow that did not run. A ``Reporter`` sees every state change
and log line (the CLI's live table; tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
import tarfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from nosgrid.core.errors import NosgridError
from nosgrid.core.jobs.state import ENDED, JobState
from nosgrid.integrations.ci import expressions as ex
from nosgrid.integrations.ci.bundle import (
    CacheChoice,
    JobInputs,
    job_definition,
    runner_plan,
    runner_zip,
)
from nosgrid.integrations.ci.cache import CacheIndex
from nosgrid.integrations.ci.checkout import github_context, pack_tree
from nosgrid.integrations.ci.matrix import MAX_MATRIX_JOBS, MatrixError
from nosgrid.integrations.ci.model import Workflow
from nosgrid.integrations.ci.plan import (
    JobContexts,
    JobInstance,
    action_kind,
    clamp_timeout,
    instances,
    runner_context,
    strategy_of,
    workflow_env,
)
from nosgrid.integrations.ci.runner_main import STEP_MARK, hash_files, safe_extract
from nosgrid.sdk.client import AsyncClient

log = logging.getLogger(__name__)

RESULT_PATH: Final = "/outputs/ci/result.json"
_STEP_RE: Final = re.compile(re.escape(STEP_MARK) + r" (?:(\d+)/(\d+) )?(.*)$")
#: what a job that finished is, for GitHub's needs.<job>.result
TERMINAL: Final = frozenset({"success", "failure", "cancelled", "skipped"})


class Reporter(Protocol):
    def changed(self, rec: JobRecord) -> None: ...
    def line(self, rec: JobRecord, text: str) -> None: ...
    def note(self, text: str) -> None: ...


class QuietReporter:
    def changed(self, rec: JobRecord) -> None:
        pass

    def line(self, rec: JobRecord, text: str) -> None:
        pass

    def note(self, text: str) -> None:
        pass


@dataclass
class JobRecord:
    """One nosgrid job of the run, as the table shows it."""

    inst: JobInstance
    state: str = "waiting"  # waiting, posting, queued, running, success, failure, cancelled
    nosgrid_id: str | None = None
    market: str | None = None
    timeout_s: int = 0
    clamp_note: str = ""
    deposit: int = 0
    cost: int = 0
    refund: int = 0
    posted_at: float | None = None
    started_at: float | None = None
    first_step_at: float | None = None
    ended_at: float | None = None
    step: str = ""
    reason: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.ended_at or time.monotonic()) - self.started_at

    def view(self) -> dict[str, Any]:
        return {"key": self.inst.key, "job": self.inst.job_id, "name": self.inst.title,
                "matrix": self.inst.matrix, "state": self.state, "nosgrid_job": self.nosgrid_id,
                "market": self.market, "timeout_s": self.timeout_s,
                "timeout_note": self.clamp_note, "deposit": self.deposit, "cost": self.cost,
                "refund": self.refund, "seconds": round(self.seconds, 3),
                "reason": self.reason, "artifacts": sorted(self.artifacts),
                "steps": self.result.get("steps", []), "outputs": self.result.get("outputs", {})}


@dataclass
class RunOptions:
    market: str | None = None
    artifacts_dir: Path | None = None
    only_job: str | None = None
    secrets: dict[str, str] = field(default_factory=dict)
    event_name: str = "push"
    matrix_limit: int = MAX_MATRIX_JOBS
    cache: CacheIndex | None = None


@dataclass
class RunReport:
    ok: bool
    cancelled: bool
    records: list[JobRecord]
    skipped: list[str]
    notes: list[str]

    @property
    def total_cost(self) -> int:
        return sum(r.cost for r in self.records)

    @property
    def total_refund(self) -> int:
        return sum(r.refund for r in self.records if r.state == "cancelled")


class CiRun:
    """One ``nosgrid ci run``."""

    def __init__(self, client: AsyncClient, wf: Workflow, root: Path, options: RunOptions,
                 reporter: Reporter | None = None, *, filename: str = "workflow") -> None:
        self.client = client
        self.wf = wf
        self.root = root
        self.opt = options
        self.reporter = reporter or QuietReporter()
        self.filename = filename
        self.records: list[JobRecord] = []
        self.job_result: dict[str, str] = {}
        self.job_outputs: dict[str, dict[str, str]] = {}
        self.skipped: list[str] = []
        self.notes: list[str] = []
        self.cancelled = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._market_max: dict[str, int] = {}
        self._default_market: str | None = options.market
        self.github: dict[str, Any] = {}
        self.tree_sha = ""

    # -- selection --

    def selected_jobs(self) -> list[str]:
        """Every job, or ``--job`` and what it needs (transitively)."""
        if self.opt.only_job is None:
            return list(self.wf.jobs)
        want: list[str] = []
        todo = [self.opt.only_job]
        while todo:
            j = todo.pop()
            if j not in want:
                want.append(j)
                todo += self.wf.jobs[j].need_list()
        return [j for j in self.wf.jobs if j in want]

    # -- the run --

    async def run(self) -> RunReport:
        markets = await self.client.markets()
        self._market_max = {m.name: m.max_timeout for m in markets}
        if self._default_market is None and markets:
            names = [m.name for m in markets]
            self._default_market = names[0] if len(names) == 1 else \
                "cpu" if "cpu" in names else names[0]
        tree = await asyncio.to_thread(pack_tree, self.root)
        self.tree_sha = await self.client.upload_blob(tree.data)
        self.reporter.note(f"packed {tree.files} files ({tree.raw_bytes} bytes) as blob "
                           f"{self.tree_sha[:16]}")
        self.github = github_context(self.root, event_name=self.opt.event_name,
                                     workflow=self.wf.name or self.filename,
                                     run_id=str(uuid.uuid4().int % 10**10),
                                     actor=self.client.pubkey)
        self.wenv = workflow_env(self.wf, self.github, self.opt.secrets)
        jobs = self.selected_jobs()
        pending = list(jobs)
        running: dict[str, asyncio.Task[None]] = {}
        while pending or running:
            if self.cancelled.is_set():
                for j in pending:
                    self.job_result[j] = "cancelled"
                pending = []
            for job_id in list(pending):
                needs = self.wf.jobs[job_id].need_list()
                if all(n in self.job_result for n in needs):
                    pending.remove(job_id)
                    running[job_id] = asyncio.create_task(self._run_job(job_id))
            if not running:
                break
            done, _ = await asyncio.wait(running.values(), return_when=asyncio.FIRST_COMPLETED)
            for job_id, task in list(running.items()):
                if task in done:
                    del running[job_id]
                    exc = task.exception()
                    if exc is not None:
                        raise exc
        ok = not self.cancelled.is_set() and all(
            self.job_result.get(j) in ("success", "skipped") for j in jobs) and all(
            r.state == "success" or r.inst.continue_on_error for r in self.records)
        return RunReport(ok, self.cancelled.is_set(), self.records, self.skipped, self.notes)

    async def cancel(self) -> None:
        """Cancel everything: jobs not posted yet never are, remote ones are cancelled (the
        coordinator refunds what did not run)."""
        self.cancelled.set()
        await asyncio.gather(*(self._cancel_record(r, "the run was cancelled")
                               for r in self.records), return_exceptions=True)

    async def _cancel_record(self, rec: JobRecord, why: str) -> None:
        if rec.state in TERMINAL:
            return
        if rec.nosgrid_id is None:
            rec.state, rec.reason = "cancelled", why
            self.reporter.changed(rec)
            return
        with contextlib.suppress(NosgridError):
            job = await self.client.cancel(rec.nosgrid_id)
            self._settle(rec, job)
        rec.state, rec.reason = "cancelled", why
        rec.ended_at = rec.ended_at or time.monotonic()
        self.reporter.changed(rec)

    # -- one workflow job --

    def _contexts(self) -> JobContexts:
        needs = {n: {"result": self.job_result.get(n, ""), "outputs": self.job_outputs.get(n, {})}
                 for n in self.job_result}
        return JobContexts(github=self.github, needs=needs, secrets=self.opt.secrets,
                           workflow_env=self.wenv)

    async def _run_job(self, job_id: str) -> None:
        job = self.wf.jobs[job_id]
        ctx = self._contexts()
        ctx.needs = {n: ctx.needs[n] for n in job.need_list() if n in ctx.needs}
        results = [ctx.needs[n]["result"] for n in job.need_list()]
        ev = ctx.evaluator()
        ev.status = lambda name: (all(r == "success" for r in results) if name == "success"
                                  else any(r == "failure" for r in results)
                                  if name == "failure" else self.cancelled.is_set())
        try:
            go = ev.condition(job.if_)
        except ex.ExpressionError as exc:
            self.notes.append(f"{job_id}: if: {exc}")
            self.job_result[job_id] = "failure"
            return
        if not go:
            self.skipped.append(job_id)
            self.job_result[job_id] = "skipped"
            self.reporter.note(f"{job_id}: skipped (if: {job.if_ or 'success()'})")
            return
        try:
            insts = instances(job_id, job, ctx, default_market=self._default_market,
                              limit=self.opt.matrix_limit)
        except (MatrixError, ex.ExpressionError) as exc:
            self.notes.append(f"{job_id}: {exc}")
            self.reporter.note(f"{job_id}: {exc}")
            self.job_result[job_id] = "failure"
            return
        strategy = strategy_of(job, ctx)
        recs = [JobRecord(inst) for inst in insts]
        self.records += recs
        for rec in recs:
            self.reporter.changed(rec)
        limit = asyncio.Semaphore(strategy.max_parallel or len(recs))
        siblings_failed = asyncio.Event()

        async def one(rec: JobRecord) -> None:
            async with limit:
                if self.cancelled.is_set() or (strategy.fail_fast and siblings_failed.is_set()):
                    rec.state = "cancelled"
                    rec.reason = "fail-fast: a sibling failed" if not self.cancelled.is_set() \
                        else "the run was cancelled"
                    self.reporter.changed(rec)
                    return
                await self._run_instance(rec, ctx)
                if rec.state == "failure" and not rec.inst.continue_on_error and \
                        strategy.fail_fast and len(recs) > 1:
                    siblings_failed.set()
                    await asyncio.gather(*(self._cancel_record(
                        r, f"fail-fast: {rec.inst.title} failed") for r in recs if r is not rec))

        await asyncio.gather(*(one(r) for r in recs))
        states = [r.state if not (r.state == "failure" and r.inst.continue_on_error)
                  else "success" for r in recs]
        self.job_result[job_id] = "failure" if "failure" in states else \
            "cancelled" if "cancelled" in states else "success"
        outputs: dict[str, str] = {}
        for r in recs:
            outputs.update({k: v for k, v in r.result.get("outputs", {}).items() if v})
        self.job_outputs[job_id] = outputs

    def _cache_choices(self, rec: JobRecord) -> dict[int, CacheChoice]:
        job = self.wf.jobs[rec.inst.job_id]
        out: dict[int, CacheChoice] = {}
        ev = ex.Evaluator({"github": self.github, "env": rec.inst.env, "matrix": rec.inst.matrix,
                           "runner": runner_context(), "secrets": self.opt.secrets,
                           "vars": {}, "inputs": {}, "needs": self._contexts().needs},
                          hash_files=lambda pats: hash_files(self.root, pats))
        for i, step in enumerate(job.steps):
            if step.uses is None or action_kind(step.uses) != "cache":
                continue
            key = ex.stringify(ev.value((step.with_ or {}).get("key", "")))
            restore = [ln.strip() for ln in ex.stringify(ev.value(
                (step.with_ or {}).get("restore-keys", ""))).splitlines() if ln.strip()]
            hit = self.opt.cache.lookup(self.github["repository"], key, restore) \
                if self.opt.cache else None
            if hit is None:
                out[i] = CacheChoice(key)
            else:
                out[i] = CacheChoice(key, "exact" if hit[0] == key else "prefix", hit[0], hit[1])
        return out

    def _artifact_inputs(self, rec: JobRecord) -> dict[str, str]:
        job = self.wf.jobs[rec.inst.job_id]
        available: dict[str, str] = {}
        for other in self.records:
            if other.state in TERMINAL:
                available.update(other.artifacts)
        wanted: set[str] | None = set()
        for step in job.steps:
            if step.uses and action_kind(step.uses) == "download-artifact":
                name = (step.with_ or {}).get("name")
                if name is None or ex.has_expression(name):
                    wanted = None
                    break
                assert wanted is not None
                wanted.add(str(name))
        if wanted is None:
            return available
        return {n: s for n, s in available.items() if n in wanted}

    async def _run_instance(self, rec: JobRecord, ctx: JobContexts) -> None:
        inst = rec.inst
        rec.market = inst.market or self._default_market
        market_max = self._market_max.get(rec.market or "")
        rec.timeout_s, rec.clamp_note = clamp_timeout(inst.timeout_s, market_max)
        if rec.clamp_note:
            self.reporter.note(f"{inst.title}: {rec.clamp_note}")
        caches = self._cache_choices(rec)
        inputs = JobInputs(self.tree_sha, self._artifact_inputs(rec), caches)
        contexts = {"github": {**self.github, "job": inst.job_id}, "needs": ctx.needs,
                    "runner": runner_context(), "vars": {}, "inputs": {},
                    "strategy": inst.strategy}
        plan = runner_plan(self.wf, inst, contexts=contexts, secrets=self.opt.secrets,
                           timeout_s=rec.timeout_s, caches=caches)
        rec.state = "posting"
        self.reporter.changed(rec)
        try:
            runner_sha = await self.client.upload_blob(runner_zip(plan))
            spec = job_definition(inst, runner_sha=runner_sha, inputs=inputs,
                                  timeout_s=rec.timeout_s, market=rec.market)
            if self.cancelled.is_set() or rec.state == "cancelled":
                rec.state = "cancelled"
                return
            posted = await self.client.post_job(spec=spec, market=rec.market,
                                                timeout=rec.timeout_s)
        except NosgridError as exc:
            rec.state, rec.reason = "failure", f"could not post: {exc.message}"
            rec.ended_at = time.monotonic()
            self.reporter.changed(rec)
            return
        rec.nosgrid_id, rec.deposit, rec.market = posted.id, posted.deposit, posted.market
        rec.posted_at = rec.started_at = time.monotonic()
        if rec.state != "cancelled":
            rec.state = "queued"
        self.reporter.changed(rec)
        if self.cancelled.is_set():
            await self._cancel_record(rec, "the run was cancelled")
            return
        follower = asyncio.create_task(self._follow(rec))
        try:
            job = await self.client.wait(posted.id, poll_s=0.3)
        finally:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(follower, timeout=5)
            follower.cancel()
        rec.ended_at = time.monotonic()
        self._settle(rec, job)
        if rec.state == "cancelled":
            self.reporter.changed(rec)
            return
        await self._collect(rec, job)
        self.reporter.changed(rec)

    async def _follow(self, rec: JobRecord) -> None:
        assert rec.nosgrid_id is not None
        try:
            async for chunk in self.client.follow_logs(rec.nosgrid_id):
                if rec.state == "queued":
                    rec.state = "running"
                    self.reporter.changed(rec)
                for line in chunk.data.rstrip("\n").split("\n"):
                    m = _STEP_RE.match(line)
                    if m:
                        if rec.first_step_at is None:
                            rec.first_step_at = time.monotonic()
                        rec.step = m.group(3)
                        self.reporter.changed(rec)
                    self.reporter.line(rec, _mask(line, self.opt.secrets))
        except NosgridError as exc:
            log.info("log stream ended", extra={"job": rec.nosgrid_id, "error": exc.message})

    def _settle(self, rec: JobRecord, job: Any) -> None:
        if job.settlement is not None:
            rec.refund = job.settlement.refund
            rec.cost = rec.deposit - job.settlement.refund if rec.deposit else \
                job.deposit - job.settlement.refund
        elif job.state in ENDED:
            rec.cost = job.deposit

    async def _collect(self, rec: JobRecord, job: Any) -> None:
        files = {f["path"]: f["sha256"] for f in (job.result or {}).get("outputs", [])
                 if isinstance(f, dict) and "path" in f and "sha256" in f}
        if RESULT_PATH not in files:
            rec.state = "failure"
            rec.reason = job.reason or (f"the job ended {job.state} without a result"
                                        if job.state != JobState.TIMED_OUT
                                        else "the job ran past its timeout")
            return
        try:
            rec.result = json.loads(await self.client.download_blob(files[RESULT_PATH]))
        except (NosgridError, ValueError) as exc:
            rec.state, rec.reason = "failure", f"unreadable result: {exc}"
            return
        rec.state = "success" if rec.result.get("status") == "success" else "failure"
        if rec.result.get("timed_out"):
            rec.reason = "ran past timeout-minutes" + (f" ({rec.clamp_note})"
                                                       if rec.clamp_note else "")
        elif rec.state == "failure":
            failed = [s["title"] for s in rec.result.get("steps", [])
                      if s.get("conclusion") == "failure"]
            rec.reason = f"step {failed[0]!r} failed" if failed else "failed"
        for art in rec.result.get("artifacts", []):
            sha = files.get(f"/outputs/ci/artifacts/{art['name']}.tar.gz")
            if sha:
                rec.artifacts[art["name"]] = sha
                if self.opt.artifacts_dir is not None:
                    await self._download_artifact(art["name"], sha)
        for entry in rec.result.get("caches", []):
            sha = files.get(f"/outputs/ci/cache/{entry['index']}.tar.gz")
            if sha and entry.get("saved") and self.opt.cache is not None:
                self.opt.cache.store(self.github["repository"], str(entry["key"]), sha)

    async def _download_artifact(self, name: str, sha: str) -> None:
        assert self.opt.artifacts_dir is not None
        data = await self.client.download_blob(sha)
        dest = self.opt.artifacts_dir / name
        archive = self.opt.artifacts_dir / f".{name}.tar.gz"
        self.opt.artifacts_dir.mkdir(parents=True, exist_ok=True)
        archive.write_bytes(data)
        try:
            await asyncio.to_thread(safe_extract, archive, dest)
        except (tarfile.TarError, ValueError) as exc:
            self.notes.append(f"artifact {name}: {exc}")
        finally:
            archive.unlink(missing_ok=True)


def _mask(text: str, secrets: dict[str, str]) -> str:
    for value in sorted((v for v in secrets.values() if v), key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def read_secrets(file: Path | None, names: list[str], environ: dict[str, str],
                 referenced: Callable[[], set[str]] | None = None) -> dict[str, str]:
    """Secrets from a file (``NAME=value`` lines, like a ``.env``) and from the environment
    (``--secret NAME`` or every ``secrets.NAME`` the workflow reads and the env has)."""
    out: dict[str, str] = {}
    if file is not None:
        for line in file.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, _, v = line.partition("=")
                out[k.strip()] = v.strip().strip('"').strip("'")
    wanted = set(names) | (referenced() if referenced else set())
    for name in wanted:
        if name in environ and name not in out:
            out[name] = environ[name]
    return out


def secrets_referenced(text: str) -> set[str]:
    """The ``secrets.NAME`` a workflow's text reads."""
    return set(re.findall(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)", text)) | set(
        re.findall(r"secrets\[\s*'([^']+)'\s*\]", text))


def tar_bytes(files: dict[str, bytes]) -> bytes:
    """A small tar.gz from ``{name: bytes}`` (tests and the benchmark)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
