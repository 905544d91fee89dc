"""The step runner that runs inside each CI job's container (stdlib only, Python 3.9+).

Shipped as ``__main__.py`` of a small zip (with ``ci_expressions.py`` and the job's
``plan.json``) and started as ``python3 /inputs/ci/job.pyz``. It runs the job's steps in
order, as GitHub's runner does: ``if:`` with the implied ``success()``, ``GITHUB_ENV``,
``GITHUB_OUTPUT``, ``GITHUB_PATH`` and ``GITHUB_STEP_SUMMARY`` files, ``continue-on-error``,
``timeout-minutes``, the mapped actions (checkout, setup-python, upload/download-artifact,
cache), secrets masked in every line it prints. It always exits 0 once it has written
``/outputs/ci/result.json`` (step outcomes, job outputs, artifacts, caches), so the
node hands back the artifacts of a failed job too; the client reads the verdict there.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

try:  # on the client (the plan is checked there with the same code)
    from nosgrid.integrations.ci import expressions as ex
except ImportError:  # in the container: the module sits next to this file in the zip
    import ci_expressions as ex  # type: ignore[import-not-found,no-redef]

ROOT = Path(os.environ.get("NOSGRID_CI_ROOT", "/work"))
OUT = Path(os.environ.get("NOSGRID_CI_OUT", "/outputs")) / "ci"
INPUTS = Path(os.environ.get("NOSGRID_CI_INPUTS", "/inputs")) / "ci"
STEP_MARK = "##[nosgrid-step]"
JOB_MARK = "##[nosgrid-job]"
_HEREDOC_RE = re.compile(r"^([^=<\s]+)<<(.+)$")


# --- pure helpers (tested on the client) -----------------------------------------------------


def parse_file_commands(text: str) -> dict[str, str]:
    """``GITHUB_ENV``/``GITHUB_OUTPUT`` content: ``K=v`` lines and ``K<<EOF`` heredocs.

    >>> parse_file_commands("A=1\\nB<<EOF\\nx\\ny\\nEOF\\n")
    {'A': '1', 'B': 'x\\ny'}
    """
    out: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip():
            continue
        m = _HEREDOC_RE.match(line)
        if m and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = m.group(1), m.group(2)
            body: list[str] = []
            while i < len(lines) and lines[i] != delim:
                body.append(lines[i])
                i += 1
            if i >= len(lines):
                raise ValueError(f"the value of {name} never ends (no line {delim!r})")
            i += 1
            out[name] = "\n".join(body)
        elif "=" in line:
            name, _, value = line.partition("=")
            out[name] = value
        else:
            raise ValueError(f"a line is neither NAME=value nor NAME<<DELIMITER: {line[:80]!r}")
    return out


def python_matches(wanted: str, have: tuple[int, int, int]) -> bool:
    """Whether the image's Python ``have`` satisfies setup-python's ``python-version``.

    >>> [python_matches(w, (3, 11, 2)) for w in ("3.11", "3.x", "3.11.2", "3.12", ">=3.10")]
    [True, True, True, False, True]
    """
    spec = wanted.strip().lstrip("v")
    if spec.startswith(("pypy", "graalpy")):
        return False
    if spec.startswith(">="):
        want = [int(p) for p in spec[2:].strip().split(".") if p.isdigit()]
        return list(have[:len(want)]) >= want
    parts = spec.split(".")
    for i, part in enumerate(parts):
        if part in ("x", "*", ""):
            return True
        if i >= 3 or not part.isdigit() or int(part) != have[i]:
            return False
    return True


def hash_files(root: Path, patterns: list[str]) -> str:
    """``hashFiles``: sha256 over each matching file's sha256, in path order ('' if none)."""
    include: set[Path] = set()
    exclude: set[Path] = set()
    for raw in patterns:
        for pattern in raw.splitlines():
            pattern = pattern.strip()
            if not pattern:
                continue
            target = exclude if pattern.startswith("!") else include
            pattern = pattern.lstrip("!")
            for hit in glob.glob(str(root / pattern), recursive=True):
                path = Path(hit)
                if path.is_file() and root.resolve() in path.resolve().parents:
                    target.add(path.resolve())
    files = sorted(include - exclude)
    if not files:
        return ""
    total = hashlib.sha256()
    for path in files:
        total.update(hashlib.sha256(path.read_bytes()).digest())
    return total.hexdigest()


def safe_extract(archive: Path, dest: Path) -> int:
    """Extract a tar.gz into ``dest``, refusing absolute paths, '..' and links out."""
    dest.mkdir(parents=True, exist_ok=True)
    count = 0
    with tarfile.open(archive, "r:*") as tar:
        members = []
        for m in tar.getmembers():
            name = m.name.lstrip("./") if m.name not in (".", "./") else ""
            if not name:
                continue
            if name.startswith("/") or ".." in Path(name).parts:
                raise ValueError(f"refusing archive member {m.name!r}")
            if m.issym() or m.islnk():
                link = Path(m.linkname)
                if link.is_absolute() or ".." in (Path(name).parent / link).parts:
                    continue
            if m.isdev():
                continue
            m.mode = (m.mode | 0o600) & 0o777
            members.append(m)
            count += m.isfile()
        try:
            tar.extractall(dest, members=members, filter="tar")
        except TypeError:  # Python < 3.11.4: the members were checked above
            tar.extractall(dest, members=members)
    return count


def matching_files(root: Path, text: str) -> list[Path]:
    """upload-artifact's ``path``: lines of paths or globs (``!`` excludes), under ``root``."""
    include: list[Path] = []
    excluded: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("!"):
            excluded.append(line[1:])
            continue
        base = Path(os.path.expanduser(line))
        pattern = str(base if base.is_absolute() else root / base)
        for hit in sorted(glob.glob(pattern, recursive=True)):
            path = Path(hit)
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            include += [f for f in files if f not in include]
    if excluded:
        include = [f for f in include if not any(
            fnmatch.fnmatch(str(f), str(root / e)) or fnmatch.fnmatch(f.name, e)
            for e in excluded)]
    return include


def common_root(files: list[Path]) -> Path:
    if not files:
        return Path("/")
    if len(files) == 1:
        return files[0].parent
    return Path(os.path.commonpath([str(f.parent) for f in files]))


# --- the runner ------------------------------------------------------------------------------


class Runner:
    """One job's steps, run in order in this container."""

    def __init__(self, plan: dict[str, Any], started: float) -> None:
        self.plan = plan
        self.started = started
        self.deadline = started + float(plan.get("deadline_s", 21600))
        self.ws = ROOT / "ws"
        self.temp = ROOT / "_temp"
        self.home = ROOT / "_home"
        self.tool = ROOT / "_tool" / "bin"
        for d in (self.ws, self.temp, self.home, OUT, OUT / "artifacts", OUT / "cache"):
            d.mkdir(parents=True, exist_ok=True)
        self.masks = sorted({m for m in plan.get("masks", []) if m}, key=len, reverse=True)
        self.env_added: dict[str, str] = {}
        self.path_added: list[str] = []
        self.steps_ctx: dict[str, Any] = {}
        self.status = "success"
        self.summary: list[str] = []
        self.results: list[dict[str, Any]] = []
        self.artifacts: list[dict[str, Any]] = []
        self.caches: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.timed_out = False

    # -- output --

    def mask(self, text: str) -> str:
        for secret in self.masks:
            text = text.replace(secret, "***")
        return text

    def say(self, text: str) -> None:
        sys.stdout.write(self.mask(text) + "\n")
        sys.stdout.flush()

    # -- contexts --

    def job_env(self) -> dict[str, str]:
        return {**self.plan.get("env", {}), **self.env_added}

    def evaluator(self, env: dict[str, str]) -> ex.Evaluator:
        c = self.plan.get("contexts", {})
        contexts = {**c, "env": env, "steps": self.steps_ctx,
                    "job": {"status": self.status, "container": {"id": "", "network": ""}}}

        def status(name: str) -> bool:
            if name == "success":
                return self.status == "success"
            if name == "failure":
                return self.status == "failure"
            return False  # cancelled(): a cancelled job's container is stopped outright

        return ex.Evaluator(contexts, status=status,
                            hash_files=lambda pats: hash_files(self.ws, pats))

    def base_env(self, step_id: str) -> dict[str, str]:
        github = self.plan.get("contexts", {}).get("github", {})
        path = os.pathsep.join([*reversed(self.path_added), os.environ.get(
            "PATH", "/usr/local/bin:/usr/bin:/bin")])
        # the container's own environment (the image's, container: env, the node's proxy)
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("NOSGRID_CI_")}
        env = {
            **inherited,
            "PATH": path, "HOME": str(self.home), "CI": "true", "GITHUB_ACTIONS": "true",
            "LANG": os.environ.get("LANG", "C.UTF-8"), "PYTHONUNBUFFERED": "1",
            "GITHUB_WORKSPACE": str(self.ws), "RUNNER_TEMP": str(self.temp),
            "RUNNER_OS": "Linux", "RUNNER_ARCH": "X64", "RUNNER_NAME": "nosgrid",
            "RUNNER_TOOL_CACHE": str(self.tool.parent), "GITHUB_ACTION": step_id,
            "GITHUB_JOB": str(self.plan.get("job_id", "")),
        }
        for key in ("sha", "ref", "ref_name", "repository", "repository_owner", "event_name",
                    "run_id", "run_number", "run_attempt", "actor", "server_url", "api_url",
                    "workflow", "head_ref", "base_ref", "ref_type"):
            if key in github:
                env["GITHUB_" + key.upper()] = ex.stringify(github[key])
        return env

    # -- the job --

    def run(self) -> dict[str, Any]:
        self.say(f"{JOB_MARK} start {self.plan.get('title', '')}")
        steps = self.plan.get("steps", [])
        for index, step in enumerate(steps):
            self.run_one(index, step, len(steps))
        self.post_cache()
        outputs: dict[str, str] = {}
        ev = self.evaluator(self.job_env())
        for name, raw in (self.plan.get("outputs") or {}).items():
            try:
                outputs[name] = ex.stringify(ev.value(raw))
            except ex.ExpressionError as exc:
                self.warnings.append(f"job output {name}: {exc}")
        self.warnings += [f"expression: {w}" for w in ev.warnings]
        result = {"status": self.status, "steps": self.results, "outputs": outputs,
                  "artifacts": self.artifacts, "caches": self.caches,
                  "summary": self.mask("\n".join(self.summary)),
                  "warnings": self.warnings, "timed_out": self.timed_out,
                  "seconds": round(time.monotonic() - self.started, 3)}
        self.say(f"{JOB_MARK} {self.status}")
        return result

    def run_one(self, index: int, step: dict[str, Any], total: int) -> None:
        step_id = step.get("id") or f"__step{index}"
        env = self.job_env()
        ev = self.evaluator(env)
        title = str(step.get("title", f"step {index + 1}"))
        with contextlib.suppress(ex.ExpressionError):  # a title is only shown
            title = ev.interpolate(title)
        entry: dict[str, Any] = {"index": index, "id": step.get("id"), "title": title}
        self.results.append(entry)
        began = time.monotonic()
        try:
            run_it = ev.condition(step.get("if"))
        except ex.ExpressionError as exc:
            self.say(f"{STEP_MARK} {index + 1}/{total} {title}: bad if: {exc}")
            run_it, self.status = False, "failure"
            entry.update(outcome="failure", conclusion="failure", error=str(exc))
            return
        if not run_it or time.monotonic() >= self.deadline or step.get("kind") == "skip":
            why = "skipped (reports to a third-party service)" if step.get("kind") == "skip" \
                and run_it else "skipped"
            self.say(f"{STEP_MARK} {index + 1}/{total} {title}: {why}")
            entry.update(outcome="skipped", conclusion="skipped")
            self.steps_ctx[step_id] = {"outputs": {}, "outcome": "skipped",
                                       "conclusion": "skipped"}
            return
        self.say(f"{STEP_MARK} {index + 1}/{total} {title}")
        outputs: dict[str, str] = {}
        try:
            step_env = {**env, **{k: ex.stringify(ev.value(v))
                                  for k, v in (step.get("env") or {}).items()}}
            ev = self.evaluator(step_env)
            coe = ex.truthy(ev.value(step.get("continue_on_error") or False))
            minutes = step.get("timeout_minutes")
            limit = None if minutes is None else float(ev.value(minutes)) * 60
            ok = self.execute(step, step_id, index, step_env, ev, limit, outputs)
        except (ex.ExpressionError, ValueError, OSError, tarfile.TarError) as exc:
            self.say(f"##[error] {title}: {exc}")
            ok, coe = False, bool(step.get("continue_on_error") is True)
        outcome = "success" if ok else "failure"
        conclusion = "success" if ok or coe else "failure"
        if conclusion == "failure":
            self.status = "failure"
        seconds = round(time.monotonic() - began, 3)
        entry.update(outcome=outcome, conclusion=conclusion, seconds=seconds)
        self.steps_ctx[step_id] = {"outputs": outputs, "outcome": outcome,
                                   "conclusion": conclusion}
        if not ok:
            self.say(f"{STEP_MARK} {index + 1}/{total} {title}: failed"
                     + (" (continue-on-error)" if coe else ""))

    def execute(self, step: dict[str, Any], step_id: str, index: int, env: dict[str, str],
                ev: ex.Evaluator, limit: float | None, outputs: dict[str, str]) -> bool:
        kind = step.get("kind", "run")
        with_ = {k: ex.stringify(ev.value(v)) for k, v in (step.get("with") or {}).items()}
        if kind == "run":
            return self.run_script(step, step_id, env, ev, limit, outputs)
        if kind == "checkout":
            tree = INPUTS / "tree.tar.gz"
            dest = self.ws / with_.get("path", "") if with_.get("path") else self.ws
            files = safe_extract(tree, dest)
            self.say(f"checked out {files} files into {dest}")
            return True
        if kind == "setup-python":
            return self.setup_python(with_, outputs)
        if kind == "upload-artifact":
            return self.upload_artifact(with_, index)
        if kind == "download-artifact":
            return self.download_artifact(with_, outputs)
        if kind == "cache":
            return self.restore_cache(step, with_, index, outputs)
        raise ValueError(f"unknown step kind {kind!r}")

    # -- run: --

    def run_script(self, step: dict[str, Any], step_id: str, env: dict[str, str],
                   ev: ex.Evaluator, limit: float | None, outputs: dict[str, str]) -> bool:
        script = ev.interpolate(step.get("run", ""))
        shell = step.get("shell") or self.plan.get("defaults", {}).get("shell")
        workdir_raw = step.get("working_directory") or \
            self.plan.get("defaults", {}).get("working-directory")
        workdir = self.ws / ev.interpolate(workdir_raw) if workdir_raw else self.ws
        if not workdir.is_dir():
            raise ValueError(f"working-directory {workdir} does not exist")
        if shell is None:
            shell = "bash" if shutil.which("bash", path=env.get("PATH")) else "sh"
        suffix = ".py" if shell == "python" else ".sh"
        script_path = self.temp / f"{uuid.uuid4().hex}{suffix}"
        script_path.write_text(script, encoding="utf-8")
        argv = {
            "bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script_path)],
            "sh": ["sh", "-e", str(script_path)],
            "python": ["python3", str(script_path)],
        }.get(shell)
        if argv is None:
            argv = [part.replace("{0}", str(script_path)) for part in shell.split()]
        files = {name: self.temp / f"{name}_{uuid.uuid4().hex}" for name in
                 ("env", "output", "path", "summary")}
        for f in files.values():
            f.write_text("")
        env = {**self.base_env(step_id), **env, "GITHUB_ENV": str(files["env"]),
               "GITHUB_OUTPUT": str(files["output"]), "GITHUB_PATH": str(files["path"]),
               "GITHUB_STEP_SUMMARY": str(files["summary"])}
        code = self.spawn(argv, workdir, env, limit)
        self.env_added.update(parse_file_commands(files["env"].read_text(errors="replace")))
        outputs.update(parse_file_commands(files["output"].read_text(errors="replace")))
        for line in files["path"].read_text(errors="replace").splitlines():
            if line.strip():
                self.path_added.append(line.strip())
        summary = files["summary"].read_text(errors="replace")
        if summary.strip():
            self.summary.append(summary.rstrip("\n"))
        if code != 0:
            self.say(f"##[error]Process completed with exit code {code}.")
        return code == 0

    def spawn(self, argv: list[str], cwd: Path, env: dict[str, str],
              limit: float | None) -> int:
        end = self.deadline if limit is None else min(self.deadline, time.monotonic() + limit)
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        except OSError as exc:
            self.say(f"##[error]cannot start {argv[0]}: {exc.strerror or exc}")
            return 127
        killed: list[str] = []

        def kill() -> None:
            killed.append("timeout")
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(max(0.0, end - time.monotonic()), kill)
        timer.daemon = True
        timer.start()
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                if line.startswith("::add-mask::"):
                    value = line[len("::add-mask::"):].strip()
                    if value:
                        self.masks = sorted({*self.masks, value}, key=len, reverse=True)
                    continue
                self.say(line)
            code = proc.wait()
        finally:
            timer.cancel()
        if killed:
            job_end = end >= self.deadline
            self.timed_out = self.timed_out or job_end
            self.say("##[error]the " + ("job" if job_end else "step") + " ran past its "
                     "timeout-minutes and was stopped")
            return 124
        return code

    # -- actions --

    def setup_python(self, with_: dict[str, str], outputs: dict[str, str]) -> bool:
        have = sys.version_info[:3]
        shown = ".".join(map(str, have))
        wanted = [w for w in re.split(r"[\n,]", with_.get("python-version", "")) if w.strip()]
        if wanted and not any(python_matches(w, have) for w in wanted):
            self.say(f"##[error]actions/setup-python: this job's image provides Python {shown}; "
                     f"the step asks for {', '.join(w.strip() for w in wanted)}. Pick an image "
                     "that has it with 'container:' (nothing is downloaded)")
            return False
        self.tool.mkdir(parents=True, exist_ok=True)
        for name in ("python", "python3"):
            link = self.tool / name
            if not link.exists():
                link.symlink_to(sys.executable)
        for name in ("pip", "pip3"):
            (self.tool / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pip "$@"\n')
            (self.tool / name).chmod(0o755)
        self.path_added += [str(self.home / ".local" / "bin"), str(self.tool)]
        self.env_added["pythonLocation"] = str(Path(sys.executable).parent.parent)
        outputs.update({"python-version": shown, "python-path": sys.executable})
        self.say(f"Python {shown} from the image ({sys.executable}); python and pip on PATH")
        return True

    def upload_artifact(self, with_: dict[str, str], index: int) -> bool:
        name = with_.get("name") or "artifact"
        if not re.fullmatch(r"[A-Za-z0-9._ -]{1,200}", name):
            raise ValueError(f"artifact name {name!r} may hold only letters, digits, ' ._-'")
        files = matching_files(self.ws, with_.get("path", ""))
        if not files:
            mode = with_.get("if-no-files-found", "warn")
            msg = f"no files found for artifact {name!r} (path: {with_.get('path', '')!r})"
            if mode == "error":
                self.say(f"##[error]{msg}")
                return False
            if mode != "ignore":
                self.say(f"##[warning]{msg}")
            return True
        base = common_root(files)
        target = OUT / "artifacts" / f"{name}.tar.gz"
        with tarfile.open(target, "w:gz") as tar:
            for f in files:
                tar.add(f, arcname=str(f.relative_to(base)), recursive=False)
        self.artifacts.append({"name": name, "files": len(files),
                               "bytes": target.stat().st_size})
        self.say(f"uploaded artifact {name!r}: {len(files)} files")
        return True

    def download_artifact(self, with_: dict[str, str], outputs: dict[str, str]) -> bool:
        name = with_.get("name")
        dest = Path(os.path.expanduser(with_["path"])) if with_.get("path") else self.ws
        dest = dest if dest.is_absolute() else self.ws / dest
        root = INPUTS / "artifacts"
        if name:
            archive = root / f"{name}.tar.gz"
            if not archive.is_file():
                self.say(f"##[error]artifact {name!r} was not uploaded by a job this one needs")
                return False
            safe_extract(archive, dest)
        else:
            for archive in sorted(root.glob("*.tar.gz")) if root.is_dir() else []:
                safe_extract(archive, dest / archive.name[:-len(".tar.gz")])
        outputs["download-path"] = str(dest)
        self.say(f"downloaded artifact{'' if name else 's'} into {dest}")
        return True

    def cache_paths(self, with_: dict[str, str]) -> list[Path]:
        out: list[Path] = []
        for line in with_.get("path", "").splitlines():
            line = line.strip()
            if line:
                p = Path(line.replace("~", str(self.home), 1) if line.startswith("~") else line)
                out.append(p if p.is_absolute() else self.ws / p)
        return out

    def restore_cache(self, step: dict[str, Any], with_: dict[str, str], index: int,
                      outputs: dict[str, str]) -> bool:
        info = step.get("cache") or {}
        paths = self.cache_paths(with_)
        archive = INPUTS / "cache" / f"{index}.tar.gz"
        hit = info.get("hit")
        if hit and archive.is_file():
            with tarfile.open(archive, "r:*") as tar:
                names = tar.getnames()
            tmp = self.temp / f"cache-{index}"
            safe_extract(archive, tmp)
            for i, path in enumerate(paths):
                src = tmp / f"p{i}"
                if src.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    if path.exists():
                        shutil.rmtree(path) if path.is_dir() else path.unlink()
                    shutil.move(str(src), str(path))
            self.say(f"cache restored from key {info.get('matched_key')!r} ({len(names)} entries)")
        else:
            self.say(f"cache not found for key {with_.get('key')!r}")
        exact = hit == "exact"
        outputs["cache-hit"] = "true" if exact else "false"
        if not exact:
            self.caches.append({"index": index, "key": info.get("key") or with_.get("key"),
                                "paths": [str(p) for p in paths], "pending": True})
        return True

    def post_cache(self) -> None:
        """Save the caches that missed, as GitHub's post step does: only when the job passed."""
        for entry in self.caches:
            if not entry.pop("pending", False):
                continue
            if self.status != "success":
                entry["saved"] = False
                continue
            target = OUT / "cache" / f"{entry['index']}.tar.gz"
            with tarfile.open(target, "w:gz") as tar:
                for i, path in enumerate(Path(p) for p in entry["paths"]):
                    if path.exists():
                        tar.add(path, arcname=f"p{i}")
            entry["saved"] = True
            self.say(f"{STEP_MARK} post: cache saved under key {entry['key']!r}")


def main() -> int:
    started = time.monotonic()
    source = sys.argv[1] if len(sys.argv) > 1 else sys.argv[0]
    if zipfile.is_zipfile(source):
        plan = json.loads(zipfile.ZipFile(source).read("plan.json"))
    else:
        plan = json.loads(Path(source).read_text())
    runner = Runner(plan, started)
    result = runner.run()
    (OUT / "result.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
