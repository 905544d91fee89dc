"""The base install (no extras) runs the coordinator, the node and the CLI (issue 13).

A fresh interpreter blocks every module of the optional extras (``sys.modules[name] =
None`` makes ``import name`` fail as if it were not installed) before it imports nosgrid,
so the test needs no second virtual environment.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: extra → the top-level modules it brings
EXTRAS = {
    "langchain": ("langchain_openai", "langchain_core", "langchain", "openai"),
    "gpu": ("pynvml",),
    "plot": ("matplotlib",),
}

SCRIPT = textwrap.dedent("""
    import json, logging, sys
    BLOCKED = {blocked!r}
    for name in BLOCKED:
        sys.modules[name] = None
    logging.basicConfig(stream=sys.stderr, format="%(name)s %(message)s")
    logging.getLogger("nosgrid").setLevel(logging.INFO)
    out = {{}}

    import nosgrid.cli.main
    import nosgrid.coordinator.app
    import nosgrid.node.agent
    from typer.testing import CliRunner

    runner = CliRunner()
    for argv in (["--help"], ["node", "--help"], ["coordinator", "--help"],
                 ["ledger", "verify", "--help"]):
        result = runner.invoke(nosgrid.cli.main.app, argv)
        out[" ".join(argv)] = [result.exit_code, "Usage" in result.output]

    from pathlib import Path
    from nosgrid.coordinator.settings import CoordinatorSettings
    app = nosgrid.coordinator.app.create_app(
        CoordinatorSettings(db="sqlite://", data_dir=Path({data_dir!r})), background=False)
    out["coordinator_app"] = type(app).__name__

    from nosgrid.node.hardware import probe_hardware
    out["gpu_error"] = probe_hardware(Path({data_dir!r})).gpu_error

    result = runner.invoke(nosgrid.cli.main.app,
                           ["tokenomics", "show", "--plot", {data_dir!r} + "/x.png"])
    out["plot"] = [result.exit_code, result.output]

    try:
        import nosgrid.integrations.langchain
    except ImportError as exc:
        out["langchain"] = str(exc)
    out["loaded"] = sorted(n for n in BLOCKED if sys.modules.get(n) is not None)
    print(json.dumps(out))
""")


def test_pyproject_keeps_the_extras_out_of_the_base_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {d.split("==")[0] for d in project["dependencies"]}
    extras = project["optional-dependencies"]
    assert {d.split("==")[0] for d in extras["langchain"]} == {"langchain-openai",
                                                               "langchain-core"}
    assert [d.split("==")[0] for d in extras["gpu"]] == ["nvidia-ml-py"]
    assert [d.split("==")[0] for d in extras["plot"]] == ["matplotlib"]
    assert not base & {"langchain-openai", "langchain-core", "nvidia-ml-py", "matplotlib"}
    assert all("==" in d for group in extras.values() for d in group)  # pinned, like base
    assert "'.[test,plot,langchain,gpu]'" in (ROOT / "Makefile").read_text()


def test_coordinator_node_and_cli_run_without_any_extra(tmp_path: Path) -> None:
    blocked = sorted(m for mods in EXTRAS.values() for m in mods)
    script = SCRIPT.format(blocked=blocked, data_dir=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for argv in ("--help", "node --help", "coordinator --help", "ledger verify --help"):
        assert out[argv] == [0, True], argv
    assert out["coordinator_app"] == "FastAPI"
    # no NVML: no GPU, a reason naming the extra, and a log line; not a crash
    assert "nosgrid[gpu]" in out["gpu_error"]
    assert "no NVIDIA GPU found" in proc.stderr
    code, text = out["plot"]
    assert code == 1 and "nosgrid[plot]" in text and "Traceback" not in text
    assert "pip install 'nosgrid[langchain]'" in out["langchain"]
    assert out["loaded"] == []
