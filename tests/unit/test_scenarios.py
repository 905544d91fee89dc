"""The golden scenarios, replayed on the pure rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenario_runner import SCENARIOS, PureDriver, run


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_on_rules(path: Path) -> None:
    run(path, PureDriver)


def test_there_are_golden_scenarios() -> None:
    assert {p.stem for p in SCENARIOS} >= {
        "complete", "cancel", "timeout", "failure", "insufficient_balance"}
