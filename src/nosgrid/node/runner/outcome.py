"""What a job run ends with: each op's outcome, the job's outcome, its output files."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from nosgrid.core.jobs.results import ResultValue

OpStatus = Literal["finished", "failed", "stopped", "skipped"]
JobStatus = Literal["completed", "failed", "timed_out", "aborted"]
Fault = Literal["client", "node"]


@dataclass
class OpOutcome:
    """How one op ended."""

    op_id: str
    status: OpStatus = "skipped"
    exit_code: int | None = None
    reason: str = ""
    fault: Fault | None = None
    restarts: int = 0
    results: dict[str, ResultValue] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputFile:
    """A file the job left under an output dir: its path in the container and on the host."""

    path: str
    host_path: Path
    size: int


@dataclass
class JobOutcome:
    """The whole job's end, ready to report (``finish`` when ``status == "completed"``)."""

    status: JobStatus
    reason: str = ""
    fault: Fault | None = None
    exit_code: int = 0
    seconds_used: int = 0
    ops: list[OpOutcome] = field(default_factory=list)
    outputs: list[OutputFile] = field(default_factory=list)
    outputs_truncated: bool = False

    @property
    def results(self) -> dict[str, dict[str, ResultValue]]:
        """``{op_id: {name: value}}`` for the ops that declared ``results``."""
        return {op.op_id: op.results for op in self.ops if op.results}


def collect_outputs(dirs: dict[str, Path], limit: int) -> tuple[list[OutputFile], bool]:
    """Regular files under the output dirs (symlinks never followed), up to ``limit`` bytes."""
    files: list[OutputFile] = []
    total, truncated = 0, False
    for target, root in dirs.items():
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                try:
                    st = path.lstat()
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                if total + st.st_size > limit:
                    truncated = True
                    continue
                total += st.st_size
                rel = path.relative_to(root).as_posix()
                files.append(OutputFile(f"{target.rstrip('/')}/{rel}", path, st.st_size))
    return files, truncated
