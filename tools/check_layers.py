"""Check nosgrid's import contract (DESIGN.md) by reading imports; no module is executed.

The packages are the first-level subpackages of ``nosgrid``; each may import only the
packages the table below allows (itself always), the package graph has no cycle, and
``core`` does no I/O and reads no clock. Every ``import`` counts: inside functions, under
``if TYPE_CHECKING:``, and relative ones (``from . import x``). ``nosgrid/__init__.py``
and other top-level modules belong to no package and are not checked.

Usage::

    python tools/check_layers.py [SRC_ROOT]     # SRC_ROOT defaults to src/nosgrid

Prints ``file:line: <package> imports <package> (allowed: ...)`` for each violation and
exits 1 if there is any, 0 otherwise.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

#: package → the packages it may import (DESIGN.md, "Package layout"); None: any
ALLOWED: dict[str, frozenset[str] | None] = {
    "core": frozenset(),
    "store": frozenset({"core"}),
    "settlement": frozenset({"core", "store"}),
    "sdk": frozenset({"core"}),
    "node": frozenset({"core", "sdk"}),
    "integrations": frozenset({"core", "sdk"}),
    "coordinator": frozenset({"core", "store", "settlement"}),
    "sim": frozenset({"core"}),
    "cli": None,
}

#: modules that do I/O, which core may not import (a name covers its submodules). The
#: SPL library (``spl``) is allowed except its RPC clients: its instruction builders
#: and constants only build bytes, like solders' keys and signatures.
CORE_FORBIDDEN_MODULES = (
    "aiohttp", "alembic", "asyncio", "asyncpg", "fastapi", "glob", "http.client",
    "http.server", "httpx", "huggingface_hub", "multiprocessing", "os", "podman",
    "prometheus_client", "psycopg", "psycopg2", "pynvml", "requests", "selectors", "shutil",
    "socket", "solana.rpc", "solders.rpc", "spl.token.async_client", "spl.token.client",
    "spl.token.core", "sqlalchemy", "sqlite3", "ssl", "starlette", "subprocess", "tempfile",
    "urllib.request", "uvicorn", "websockets",
)

#: functions that read the clock (or wait on it): core takes ``now`` as a parameter
CLOCK_FUNCTIONS = frozenset({
    "time.time", "time.time_ns", "time.monotonic", "time.monotonic_ns", "time.perf_counter",
    "time.perf_counter_ns", "time.process_time", "time.process_time_ns", "time.thread_time",
    "time.thread_time_ns", "time.clock_gettime", "time.clock_gettime_ns", "time.sleep",
    "datetime.datetime.now", "datetime.datetime.utcnow", "datetime.datetime.today",
    "datetime.date.today",
})
#: these read the clock only when called without the time argument (index: its position)
CLOCK_WITHOUT_ARGUMENT = {"time.gmtime": 0, "time.localtime": 0, "time.ctime": 0,
                          "time.asctime": 0, "time.strftime": 1}


@dataclass(frozen=True)
class Import:
    """One imported module as written at ``line`` (relative imports resolved)."""

    line: int
    module: str


@dataclass(frozen=True)
class Violation:
    file: Path
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


def module_name(root: Path, file: Path) -> tuple[str, bool]:
    """The dotted name of ``file`` under the package directory ``root``, and whether it
    is a package's ``__init__``."""
    rel = file.relative_to(root).with_suffix("")
    parts = [root.name, *rel.parts]
    is_init = parts[-1] == "__init__"
    if is_init:
        parts.pop()
    return ".".join(parts), is_init


def imports_of(tree: ast.AST, module: str, is_init: bool) -> Iterator[Import]:
    """Every module an ``import`` anywhere in ``tree`` names."""
    package = module if is_init else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:  # `from nosgrid import store` imports nosgrid.store
                yield Import(node.lineno, base if alias.name == "*" else f"{base}.{alias.name}")


def package_of(module: str, top: str, packages: set[str]) -> str | None:
    """The first-level subpackage ``module`` belongs to (None: outside nosgrid, or a
    top-level module or name such as ``nosgrid.__version__``)."""
    parts = module.split(".")
    if parts[0] == top and len(parts) > 1 and parts[1] in packages:
        return parts[1]
    return None


def _is_under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def clock_reads(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, function) for every reference to a clock function in ``tree``."""
    names: dict[str, str] = {}  # local name → the module or object it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    names[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def dotted(expr: ast.expr) -> str | None:
        if isinstance(expr, ast.Name):
            return names.get(expr.id)
        if isinstance(expr, ast.Attribute):
            base = dotted(expr.value)
            return f"{base}.{expr.attr}" if base else None
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = dotted(node.func)
            if name in CLOCK_WITHOUT_ARGUMENT and len(node.args) <= CLOCK_WITHOUT_ARGUMENT[name]:
                yield node.lineno, name
    for node in ast.walk(tree):
        if isinstance(node, ast.Name | ast.Attribute) and isinstance(node.ctx, ast.Load):
            name = dotted(node)
            if name in CLOCK_FUNCTIONS:  # a call, or passed on as a default `now=time.time`
                yield node.lineno, name


def check(root: Path) -> list[Violation]:
    """Every violation of the contract in the package directory ``root``."""
    top = root.name
    packages = {d.name for d in root.iterdir()
                if d.is_dir() and d.name != "__pycache__" and any(d.rglob("*.py"))}
    violations: list[Violation] = []
    edges: dict[tuple[str, str], tuple[Path, int]] = {}  # (importer, imported) → first site
    for file in sorted(root.rglob("*.py")):
        if "__pycache__" in file.parts:
            continue
        module, is_init = module_name(root, file)
        package = package_of(module, top, packages)
        if package is None:
            continue
        if package not in ALLOWED:
            violations.append(Violation(file, 1, f"{package} is not in the layer rules "
                                        f"(packages: {', '.join(ALLOWED)}); add it to "
                                        "tools/check_layers.py and DESIGN.md"))
            continue
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        except SyntaxError as exc:
            violations.append(Violation(file, exc.lineno or 1, f"cannot parse: {exc.msg}"))
            continue
        allowed = ALLOWED[package]
        for imp in imports_of(tree, module, is_init):
            target = package_of(imp.module, top, packages)
            if target is not None and target != package:
                edges.setdefault((package, target), (file, imp.line))
                if allowed is not None and target not in allowed:
                    may = ", ".join(sorted(allowed)) or "nothing of nosgrid"
                    violations.append(Violation(
                        file, imp.line, f"{package} imports {target} (allowed: {may})"))
            if package == "core":
                for banned in CORE_FORBIDDEN_MODULES:
                    if _is_under(imp.module, banned):  # `from os import path` is os.path
                        violations.append(Violation(
                            file, imp.line, f"core imports {banned} (allowed: no I/O library)"))
                        break
        if package == "core":
            for line, name in clock_reads(tree):
                violations.append(Violation(
                    file, line, f"core reads the clock: {name} (allowed: none; take `now` "
                    "as a parameter)"))
    violations.extend(cycles(edges))
    return sorted(set(violations),
                  key=lambda v: (str(v.file), v.line, "import cycle" in v.text, v.text))


def cycles(edges: dict[tuple[str, str], tuple[Path, int]]) -> Iterator[Violation]:
    """One violation per cycle in the package graph (the shortest through each edge)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    seen: set[frozenset[tuple[str, str]]] = set()
    for a, b in sorted(edges):
        path = _shortest_path(graph, b, a)
        if path is None:
            continue
        ring = [a, *path]  # a → b → ... → a
        hops = list(pairwise(ring))
        key = frozenset(hops)
        if key in seen:
            continue
        seen.add(key)
        # start at a hop the rules forbid: that import is the one to remove
        first = next((i for i, (x, y) in enumerate(hops) if not _allowed(x, y)), 0)
        hops = hops[first:] + hops[:first]
        ring = [x for x, _ in hops] + [hops[0][0]]
        file, line = edges[hops[0]]
        sites = "; ".join(f"{x} imports {y} at {edges[(x, y)][0]}:{edges[(x, y)][1]}"
                          for x, y in hops)
        yield Violation(file, line, f"import cycle {' -> '.join(ring)} ({sites})")


def _allowed(importer: str, imported: str) -> bool:
    allowed = ALLOWED.get(importer)
    return allowed is None or imported in allowed


def _shortest_path(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    frontier, parent = [start], {start: start}
    while frontier:
        nxt = []
        for node in frontier:
            if node == goal:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return path[::-1]
            for succ in sorted(graph.get(node, ())):
                if succ not in parent:
                    parent[succ] = node
                    nxt.append(succ)
        frontier = nxt
    return None


def main(argv: list[str]) -> int:
    default = Path(__file__).resolve().parents[1] / "src" / "nosgrid"
    root = Path(argv[1]) if len(argv) > 1 else default
    if not (root / "__init__.py").is_file():
        print(f"{root} is not a package directory (no __init__.py)", file=sys.stderr)
        return 2
    found = check(root)
    for violation in found:
        print(violation)
    if found:
        print(f"{len(found)} layer violation(s); the rules are in DESIGN.md and "
              "tools/check_layers.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
