"""The agent's state file: round trip, atomic write, tolerance of a corrupt file."""

from __future__ import annotations

from pathlib import Path

from nosgrid.node.agent import backoff_delay
from nosgrid.node.state import AgentState, InFlightJob, StateFile


def test_round_trip(tmp_path: Path) -> None:
    store = StateFile(tmp_path / "s")
    state = AgentState(node_id="N", in_flight=InFlightJob("j1", 12.5, ("a", "b"), ("v",), "p"))
    store.save(state)
    assert store.load() == state
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["agent-state.json"]
    store.save(AgentState(node_id="N"))
    assert store.load().in_flight is None


def test_missing_or_corrupt_file_is_empty(tmp_path: Path) -> None:
    store = StateFile(tmp_path)
    assert store.load() == AgentState()
    store.path.write_text("{not json")
    assert store.load() == AgentState()
    store.path.write_text('{"in_flight": {"job_id": 3}}')
    assert store.load().in_flight is None


def test_backoff_grows_and_is_capped() -> None:
    assert backoff_delay(0) <= 0.2
    assert 5.0 <= backoff_delay(20, cap=10.0) <= 10.0
