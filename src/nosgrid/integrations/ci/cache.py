"""``actions/cache`` on nosgrid: a client-side index from cache key to a content-addressed
blob, so a later run whose key matches restores what an earlier job saved.

The archive itself is an output blob of the job that saved it (the coordinator keeps it,
readable by its poster); the index only remembers which blob a key names, per repository.
GitHub's rules: an exact key hit sets ``cache-hit``; otherwise the newest entry whose key
starts with one of ``restore-keys`` (in order) is restored, and the job saves its own.

>>> idx = CacheIndex(None)
>>> idx.store("o/r", "pip-abc", "aa" * 32)
>>> idx.lookup("o/r", "pip-abd", ["pip-"])[0]
'pip-abc'
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def default_cache_index() -> Path:
    """``$XDG_CACHE_HOME/nosgrid/ci-cache.json`` (``~/.cache`` by default)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "nosgrid" / "ci-cache.json"


class CacheIndex:
    """Key → blob sha256, per repository; ``path`` None keeps it in memory."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, list[dict[str, Any]]] = {}
        if path is not None and path.is_file():
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                self.entries = {k: list(v) for k, v in raw.get("repos", {}).items()}
            except (ValueError, AttributeError):
                self.entries = {}  # a damaged index only costs a cache miss

    def lookup(self, repo: str, key: str, restore_keys: list[str]) -> tuple[str, str] | None:
        """(matched key, sha256) or None."""
        entries = self.entries.get(repo, [])
        for e in reversed(entries):
            if e["key"] == key:
                return e["key"], e["sha256"]
        for prefix in restore_keys:
            for e in reversed(entries):
                if e["key"].startswith(prefix):
                    return e["key"], e["sha256"]
        return None

    def store(self, repo: str, key: str, sha256: str) -> None:
        entries = [e for e in self.entries.get(repo, []) if e["key"] != key]
        entries.append({"key": key, "sha256": sha256})
        self.entries[repo] = entries[-500:]
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"repos": self.entries}, indent=1), encoding="utf-8")
            tmp.replace(self.path)
