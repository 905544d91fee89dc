"""Wakes long-polling nodes the moment a job is queued in their market (no sleep loops)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable


class WorkNotifier:
    """One asyncio.Event per waiting node; posting a job sets the events of its market."""

    def __init__(self) -> None:
        self._waiters: dict[str, dict[str, asyncio.Event]] = defaultdict(dict)

    def register(self, node_id: str, markets: Iterable[str]) -> asyncio.Event:
        event = asyncio.Event()
        for market in markets:
            self._waiters[market][node_id] = event
        return event

    def unregister(self, node_id: str, markets: Iterable[str]) -> None:
        for market in markets:
            self._waiters[market].pop(node_id, None)

    def wake(self, node_id: str) -> None:
        """Wake one node (a job was dispatched to it)."""
        for waiters in self._waiters.values():
            event = waiters.get(node_id)
            if event is not None:
                event.set()
                return

    def notify(self, market: str) -> None:
        for event in self._waiters.get(market, {}).values():
            event.set()

    def waiting(self, market: str) -> int:
        return len(self._waiters.get(market, {}))
