"""`nosgrid job validate` and `nosgrid job schema`, run in-process as the console script runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from nosgrid.cli.main import main
from nosgrid.core.jobs.load import job_definition_schema_text

GOOD = '{"version": "0.1", "type": "container", "ops": []}'
BAD = json.dumps(
    {
        "version": "0.1",
        "type": "container",
        "ops": [{"type": "container/run", "id": "a", "args": {"cmd": 5}}],
    }
)


def cli(monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    monkeypatch.setattr(sys, "argv", ["nosgrid", *argv])
    with pytest.raises(SystemExit) as info:
        main()
    return int(info.value.code or 0)


def test_validate_reports_valid_files_then_stops_at_the_first_invalid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "good.json").write_text(GOOD)
    (tmp_path / "bad.json").write_text(BAD)
    (tmp_path / "later.yaml").write_text("version: '0.1'\ntype: container\nops: []\n")
    files = [str(tmp_path / n) for n in ("good.json", "bad.json", "later.yaml")]
    assert cli(monkeypatch, "job", "validate", *files) == 1
    out, err = capsys.readouterr()
    assert "valid" in out and "good.json" in out and "later.yaml" not in out + err
    assert "ops[0].args.image: field required" in err
    assert "ops[0].args.cmd: expected a string or an array, got a number" in err
    assert "Traceback" not in err


def test_validate_json_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "good.json").write_text(GOOD)
    assert cli(monkeypatch, "job", "validate", "--json", str(tmp_path / "good.json")) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["valid"] is True and len(entry["spec_hash"]) == 64
    assert cli(monkeypatch, "job", "validate", "--json", str(tmp_path / "missing.json")) == 1
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["valid"] is False and entry["errors"][0].startswith("cannot read the file")


def test_schema_prints_or_writes_the_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(monkeypatch, "job", "schema") == 0
    assert capsys.readouterr().out == job_definition_schema_text()
    target = tmp_path / "schema.json"
    assert cli(monkeypatch, "job", "schema", "-o", str(target)) == 0
    assert json.loads(target.read_text())["title"] == "JobDefinition"
