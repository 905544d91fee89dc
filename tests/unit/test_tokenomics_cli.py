"""`nosgrid tokenomics show`: tables, JSON and the PNG plot."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from nosgrid.cli.tokenomics import app


def test_show_tables() -> None:
    r = CliRunner().invoke(app, ["show", "--epochs", "3"])
    assert r.exit_code == 0, r.output
    assert "alloc:reserve" in r.output and "250000" in r.output and "247500" in r.output


def test_show_json_and_plot(tmp_path: Path) -> None:
    png = tmp_path / "emission.png"
    r = CliRunner().invoke(app, ["show", "--epochs", "5", "--json", "--plot", str(png)])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["total_supply_nos"] == "100000000"
    assert [row["release_nos"] for row in data["emission"][:2]] == ["250000", "247500"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
