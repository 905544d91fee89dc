"""The local checkout: its files packed once (respecting ``.gitignore``) and its ``github``
context (sha, ref, repository) read from git.

The archive is deterministic (sorted names, zero mtimes, no owners), so an unchanged tree
is the same blob on the next run and is not uploaded twice.
"""

from __future__ import annotations

import fnmatch
import gzip
import io
import os
import re
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from nosgrid.integrations.ci.errors import InvalidWorkflow

MAX_TREE_BYTES: Final = 256 * 1024 * 1024
WORKSPACE: Final = "/work/ws"


@dataclass(frozen=True)
class PackedTree:
    data: bytes
    files: int
    raw_bytes: int


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, check=False,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.decode(errors="replace") if proc.returncode == 0 else None


def tree_files(root: Path) -> list[str]:
    """The files to pack, relative to ``root``: git's view (tracked and untracked, not
    ignored) in a checkout, else a walk that honours the root ``.gitignore``."""
    listed = _git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    if listed is not None and _git(root, "rev-parse", "--show-prefix") is not None:
        names = sorted({n for n in listed.split("\0") if n})
        return [n for n in names if (root / n).is_file() or (root / n).is_symlink()]
    patterns = _gitignore(root / ".gitignore")
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if d != ".git"
                             and not _ignored(rel_dir + d, True, patterns))
        out += [rel_dir + f for f in sorted(filenames)
                if not _ignored(rel_dir + f, False, patterns)]
    return sorted(out)


def _gitignore(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text(errors="replace").splitlines()
            if line.strip() and not line.startswith("#")]


def _ignored(rel: str, is_dir: bool, patterns: list[str]) -> bool:
    """A small subset of gitignore: globs, a leading ``/`` anchors, a trailing ``/`` means a
    directory, ``!`` re-includes."""
    ignored = False
    name = rel.rsplit("/", 1)[-1]
    for raw in patterns:
        negate = raw.startswith("!")
        pat = raw[1:] if negate else raw
        if pat.endswith("/"):
            if not is_dir:
                continue
            pat = pat[:-1]
        anchored = pat.startswith("/") or "/" in pat
        pat = pat.lstrip("/")
        hit = fnmatch.fnmatch(rel, pat) if anchored else fnmatch.fnmatch(name, pat)
        if hit:
            ignored = not negate
    return ignored


def pack_tree(root: Path, *, limit: int = MAX_TREE_BYTES) -> PackedTree:
    """The working tree as a deterministic ``tar.gz``; ``InvalidWorkflow`` past ``limit``."""
    names = tree_files(root)
    buf = io.BytesIO()
    raw = 0
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=6) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            path = root / name
            info = tar.gettarinfo(str(path), arcname=name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = 0o755 if info.mode & 0o111 else 0o644
            if info.isreg():
                raw += info.size
                if raw > limit:
                    raise InvalidWorkflow(errors=[
                        f"{root}: the working tree is more than {limit // (1024 * 1024)} MiB; "
                        "add large files to .gitignore"])
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
            elif info.issym():
                tar.addfile(info)
    return PackedTree(buf.getvalue(), len(names), raw)


_REMOTE_RE: Final = re.compile(r"[:/]([^/:]+)/([^/]+?)(?:\.git)?/?$")


def github_context(root: Path, *, event_name: str, workflow: str, run_id: str,
                   actor: str) -> dict[str, Any]:
    """The ``github`` context, filled from the local checkout as far as git knows it."""
    sha = (_git(root, "rev-parse", "HEAD") or "").strip() or "0" * 40
    branch = (_git(root, "rev-parse", "--abbrev-ref", "HEAD") or "").strip()
    remote = (_git(root, "config", "--get", "remote.origin.url") or "").strip()
    m = _REMOTE_RE.search(remote)
    owner, repo = (m.group(1), m.group(2)) if m else ("local", root.resolve().name)
    ref_name = branch if branch and branch != "HEAD" else "main"
    return {
        "sha": sha, "ref": f"refs/heads/{ref_name}", "ref_name": ref_name, "ref_type": "branch",
        "repository": f"{owner}/{repo}", "repository_owner": owner, "event_name": event_name,
        "event": {}, "workspace": WORKSPACE, "run_id": run_id, "run_number": "1",
        "run_attempt": "1", "actor": actor, "triggering_actor": actor, "workflow": workflow,
        "job": "", "head_ref": "", "base_ref": "", "server_url": "https://github.com",
        "api_url": "https://api.github.com", "action": "", "token": "",
        "retention_days": "90",
    }
