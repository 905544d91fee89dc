"""Service readiness: host ports for an op's exposed ports, and their health checks.

An op that exposes ports reaches startup success (its dependents may start) only once every
check of every port passes at once; ``continuous`` checks keep running after that and flip
the endpoint ONLINE/OFFLINE. Checks go to the executor's loopback forwarders on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable

import httpx

from nosgrid.core.jobs.spec import HttpHealthCheck
from nosgrid.node.runner.plan import HealthCheck, PortPlan, RunnerLimits


def free_port() -> int:
    """A host loopback port that is free now (the forwarder binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class HealthChecker:
    """Runs the health checks of an op's published ports, at the runner's intervals.

    Example::

        checker = HealthChecker(http, limits)
        await checker.wait_until_healthy(port_plans)        # startup success
        await checker.watch(port_plans, on_change=print)     # ONLINE/OFFLINE flips, forever
    """

    def __init__(self, http: httpx.AsyncClient | None, limits: RunnerLimits) -> None:
        self._http = http
        self.limits = limits

    async def wait_until_healthy(self, ports: list[PortPlan]) -> None:
        """Poll until every check of every port passes in the same round."""
        while True:
            if all([await self.check(p, c) for p in ports for c in (p.checks or (None,))]):
                break
            await asyncio.sleep(self.limits.health_interval_s)

    async def watch(self, ports: list[PortPlan], on_change: Callable[[bool], None]) -> None:
        """Re-run the ``continuous`` checks (if any) until cancelled; ``on_change(ok)`` on flips."""
        continuous = [(p, c) for p in ports for c in p.checks if c.continuous]
        online = True
        while continuous:
            await asyncio.sleep(self.limits.continuous_interval_s)
            ok = all([await self.check(p, c) for p, c in continuous])
            if ok != online:
                online = ok
                on_change(ok)

    async def check(self, port: PortPlan, check: HealthCheck | None) -> bool:
        if not isinstance(check, HttpHealthCheck):  # none or websocket: the port accepts
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port.host_port),
                    self.limits.health_timeout_s,
                )
            except (OSError, TimeoutError):
                return False
            writer.close()
            return True
        assert self._http is not None
        content: bytes | None = None
        if check.method in ("POST", "PUT") and check.body is not None:
            body = check.body
            content = (body if isinstance(body, str) else json.dumps(body)).encode()
        try:
            resp = await self._http.request(
                check.method, f"http://127.0.0.1:{port.host_port}{check.path}",
                headers=check.headers or {}, content=content,
            )
        except httpx.HTTPError:
            return False
        return resp.status_code == check.expected_status
