"""Wakes long-polling nodes the moment a job is queued in their market (no sleep loops)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable


class WorkNotifier:
    """One asyncio.Event per waiting node; posting a job sets the events of its market.

    A node is found by its id too, so a poll that waits under no market (its node serves
    none yet) is still woken when a job is assigned to it or its markets change.
    """

    def __init__(self) -> None:
        self._waiters: dict[str, dict[str, asyncio.Event]] = defaultdict(dict)
        self._nodes: dict[str, asyncio.Event] = {}

    def register(self, node_id: str, markets: Iterable[str]) -> asyncio.Event:
        event = asyncio.Event()
        self._nodes[node_id] = event
        for market in markets:
            self._waiters[market][node_id] = event
        return event

    def unregister(self, node_id: str, markets: Iterable[str],
                   event: asyncio.Event | None = None) -> None:
        """Forget a poll's registration (only ``event``'s, when given: a newer poll of the
        same node keeps its own)."""
        for market in markets:
            waiters = self._waiters.get(market)
            if waiters is not None and (event is None or waiters.get(node_id) is event):
                waiters.pop(node_id, None)
                if not waiters:
                    del self._waiters[market]
        if event is None or self._nodes.get(node_id) is event:
            self._nodes.pop(node_id, None)

    def wake(self, node_id: str) -> None:
        """Wake one node (a job was dispatched to it, or its markets changed)."""
        event = self._nodes.get(node_id)
        if event is not None:
            event.set()

    def notify(self, market: str) -> None:
        for event in self._waiters.get(market, {}).values():
            event.set()

    def waiting(self, market: str) -> int:
        return len(self._waiters.get(market, {}))
