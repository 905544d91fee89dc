"""The import contract of DESIGN.md, as `make lint` checks it (tools/check_layers.py).

The real tree passes; a copy with forbidden imports planted in it fails, one line each.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKER = ROOT / "tools" / "check_layers.py"
SRC = ROOT / "src" / "nosgrid"


def check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECKER), str(root)], capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of src/nosgrid to plant imports in."""
    copy = tmp_path / "nosgrid"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def plant(tree: Path, relpath: str, source: str) -> str:
    path = tree / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source).lstrip())
    return str(path)


def test_the_real_tree_keeps_the_contract() -> None:
    proc = check(SRC)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""


def test_an_untouched_copy_passes(tree: Path) -> None:
    assert check(tree).returncode == 0


def test_planted_imports_are_each_reported(tree: Path) -> None:
    core = plant(tree, "core/planted.py", """
        from nosgrid.store.db import Store
        from nosgrid import __version__
        from . import money
    """)
    node = plant(tree, "node/planted.py", """
        def later():
            from nosgrid.coordinator import app
            return app
    """)
    sdk = plant(tree, "sdk/planted.py", """
        from .. import node
    """)
    deep = plant(tree, "core/jobs/planted.py", """
        from ...settlement import local
    """)
    store = plant(tree, "store/planted.py", """
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from nosgrid.coordinator.runtime import Coordinator
    """)
    proc = check(tree)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    expected = [
        f"{core}:1: core imports store (allowed: nothing of nosgrid)",
        f"{node}:2: node imports coordinator (allowed: core, sdk)",
        f"{sdk}:1: sdk imports node (allowed: core)",
        f"{deep}:1: core imports settlement (allowed: nothing of nosgrid)",
        f"{store}:3: store imports coordinator (allowed: core)",
    ]
    for line in expected:
        assert line in lines, (line, lines)
    # each cycle is reported at the import the rules forbid (the planted ones add cycles
    # with the allowed arrows back, e.g. store → core)
    cycles = [line for line in lines if "import cycle" in line]
    assert any(line.startswith(f"{sdk}:1: import cycle sdk -> node -> sdk (sdk imports node "
                               f"at {sdk}:1; node imports sdk at ") for line in cycles), cycles
    assert any(line.startswith(f"{core}:1: import cycle core -> store -> core ")
               for line in cycles), cycles
    assert set(lines) - set(expected) == set(cycles)  # `nosgrid.__version__`, `. money` pass


def test_core_may_not_do_io_or_read_the_clock(tree: Path) -> None:
    io = plant(tree, "core/planted_io.py", """
        import sqlalchemy
        import time
        from datetime import datetime as dt
        from spl.token.instructions import transfer_checked
        from spl.token.client import Token

        def fetch(url, now=time.monotonic):
            from http import client
            import subprocess
            return dt.now(), time.time(), time.gmtime(0), time.gmtime(), client, subprocess
    """)
    proc = check(tree)
    assert proc.returncode == 1
    got = {line.removeprefix(f"{io}:") for line in proc.stdout.splitlines()}
    assert got == {
        "1: core imports sqlalchemy (allowed: no I/O library)",
        "5: core imports spl.token.client (allowed: no I/O library)",
        "7: core reads the clock: time.monotonic (allowed: none; take `now` as a parameter)",
        "8: core imports http.client (allowed: no I/O library)",
        "9: core imports subprocess (allowed: no I/O library)",
        "10: core reads the clock: datetime.datetime.now (allowed: none; take `now` as a "
        "parameter)",
        "10: core reads the clock: time.time (allowed: none; take `now` as a parameter)",
        "10: core reads the clock: time.gmtime (allowed: none; take `now` as a parameter)",
    }


def test_a_new_package_must_be_given_rules(tree: Path) -> None:
    web = plant(tree, "web/views.py", "X = 1\n")
    proc = check(tree)
    assert proc.returncode == 1
    assert proc.stdout.startswith(f"{web}:1: web is not in the layer rules")


def test_a_directory_that_is_not_nosgrid_is_refused(tmp_path: Path) -> None:
    proc = check(tmp_path)
    assert proc.returncode == 2 and "not a package directory" in proc.stderr
