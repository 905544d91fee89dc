"""The dashboard's pure rules: uptime credits and operator alerts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nosgrid.core.alerts import NodeSnapshot, changes
from nosgrid.core.uptime import HOUR, credit, split_by_hour, uptime_share


@given(st.floats(0, 10 * 86_400), st.floats(0, 3 * 86_400))
def test_split_by_hour_keeps_every_second_in_its_hour(start: float, length: float) -> None:
    parts = split_by_hour(start, start + length)
    assert abs(sum(s for _, s in parts) - length) < 1e-6
    assert all(0 < s <= HOUR for _, s in parts)
    assert [h for h, _ in parts] == list(range(int(start // HOUR), int(start // HOUR)
                                               + len(parts)))


def test_a_long_silence_credits_nothing() -> None:
    assert credit(None, 100.0) == 0.0
    assert credit(100.0, 100.0) == 0.0 and credit(100.0, 90.0) == 0.0
    assert credit(100.0, 130.0) == 30.0 and credit(100.0, 130.5) == 0.0


def test_uptime_share_counts_from_registration() -> None:
    assert uptime_share(seconds=600, window=86_400, registered_at=0, now=1_200) == 0.5
    assert uptime_share(seconds=10**9, window=86_400, registered_at=0, now=10**6) == 1.0
    assert uptime_share(seconds=0, window=86_400, registered_at=5, now=5) == 0.0


def test_alerts_name_each_change_once() -> None:
    online = NodeSnapshot("online", 0, None)
    idle = NodeSnapshot("online", 0, 0.0)
    assert changes(online, online, now=0, idle_after=60) == []
    assert [a.kind for a in changes(online, idle, now=30, idle_after=60)] == []
    first = changes(idle, idle, now=61, idle_after=60, before_at=30)
    assert [a.kind for a in first] == ["idle"] and "1 min" in first[0].message
    assert changes(idle, idle, now=120, idle_after=60, before_at=61) == []  # once per spell
    offline = NodeSnapshot("offline", 0, None)
    assert [a.kind for a in changes(online, offline, now=1, idle_after=60)] == ["offline"]
    assert changes(offline, offline, now=2, idle_after=60) == []
    back = changes(offline, NodeSnapshot("online", 1, None), now=3, idle_after=60)
    assert [a.kind for a in back] == ["online", "slashed"]


def test_a_failed_replica_is_an_alert() -> None:
    ok = NodeSnapshot("online", 0, None, unhealthy_replicas=0)
    sick = NodeSnapshot("online", 0, None, unhealthy_replicas=1)
    assert [a.kind for a in changes(ok, sick, now=1, idle_after=60)] == ["unhealthy"]
    assert changes(sick, sick, now=2, idle_after=60) == []
