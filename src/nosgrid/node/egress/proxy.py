"""The egress proxy: HTTP with absolute URLs and ``CONNECT`` for HTTPS, every destination
checked by the policy on the address it resolves to, before connecting.

It listens on a socket made inside the job's pod network namespace (``127.0.0.1:3128``
there, see ``netns.listen_in_netns``), so nothing outside the pod can reach it and the job
has no other way out: the pod has only ``lo``. A refused request gets ``403`` with the
reason; every decision is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Final
from urllib.parse import urlsplit

from nosgrid.node.egress.policy import EgressPolicy, IPAddress

log = logging.getLogger(__name__)

PROXY_PORT: Final = 3128
MAX_HEAD_BYTES: Final = 64 * 1024
HEAD_TIMEOUT_S: Final = 30.0
CONNECT_TIMEOUT_S: Final = 10.0
_HOP_HEADERS: Final = frozenset({"proxy-connection", "proxy-authorization", "connection",
                                 "keep-alive", "te", "trailer", "upgrade"})

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


def proxy_env(port: int = PROXY_PORT) -> dict[str, str]:
    """What a job's containers get so pip, curl, git and urllib use the proxy."""
    url = f"http://127.0.0.1:{port}"
    return {"HTTP_PROXY": url, "HTTPS_PROXY": url, "http_proxy": url, "https_proxy": url,
            "NO_PROXY": "", "no_proxy": ""}


async def _resolve(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ip_address(str(info[4][0]).split("%")[0]) for info in infos]


@dataclass
class EgressProxy:
    """Serve the proxy on ``sock`` until ``close()``; ``decisions`` keeps the last ones."""

    policy: EgressPolicy
    resolver: Resolver = _resolve
    decisions: list[tuple[str, int, str | None]] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._server = await asyncio.start_server(self._client, sock=sock)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
        for task in list(self._tasks):
            task.cancel()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError) as exc:
            log.debug("egress connection ended", extra={"error": str(exc)})
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
        if len(head) > MAX_HEAD_BYTES:
            await _answer(writer, 431, "request head too large")
            return
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            await _answer(writer, 400, "bad request line")
            return
        method, target, version = parts
        headers = [h for h in lines[1:] if h]
        if method.upper() == "CONNECT":
            host, _, port_text = target.rpartition(":")
            host = host.strip("[]")
            if not host or not port_text.isdigit():
                await _answer(writer, 400, "CONNECT needs host:port")
                return
            upstream = await self._open(writer, host, int(port_text))
            if upstream is None:
                return
            up_reader, up_writer = upstream
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await writer.drain()
            await _relay(reader, writer, up_reader, up_writer)
            return
        url = urlsplit(target)
        try:
            host, port = _authority(url.netloc)
        except ValueError:
            host, port = "", 0
        if url.scheme != "http" or not host:
            await _answer(writer, 400, "only absolute http:// URLs and CONNECT are proxied")
            return
        upstream = await self._open(writer, host, port)
        if upstream is None:
            return
        up_reader, up_writer = upstream
        path = url.path or "/"
        if url.query:
            path += "?" + url.query
        kept = [h for h in headers if h.split(":", 1)[0].strip().lower() not in _HOP_HEADERS]
        up_writer.write((f"{method} {path} {version}\r\n" + "".join(f"{h}\r\n" for h in kept)
                         + "Connection: close\r\n\r\n").encode("latin-1"))
        await up_writer.drain()
        await _relay(reader, writer, up_reader, up_writer)

    async def _open(self, writer: asyncio.StreamWriter, host: str, port: int
                    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        if not self.policy.enabled:
            await self._refuse(writer, host, port, "egress is off on this node")
            return None
        try:
            addresses = await asyncio.wait_for(self.resolver(host, port), CONNECT_TIMEOUT_S)
        except (TimeoutError, OSError, ValueError) as exc:
            await self._refuse(writer, host, port, f"cannot resolve {host}: {exc}", status=502)
            return None
        if not addresses:
            await self._refuse(writer, host, port, f"{host} has no address", status=502)
            return None
        # every address the name has must pass: a name cannot mix a public and a private one
        for addr in addresses:
            why = self.policy.refusal(addr, port)
            if why is not None:
                await self._refuse(writer, host, port, why)
                return None
        self._note(host, port, None)
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(str(addresses[0]), port), CONNECT_TIMEOUT_S)
        except (TimeoutError, OSError) as exc:
            await _answer(writer, 502, f"cannot connect to {host}:{port}: {exc}")
            return None

    async def _refuse(self, writer: asyncio.StreamWriter, host: str, port: int, why: str,
                      *, status: int = 403) -> None:
        self._note(host, port, why)
        await _answer(writer, status, f"nosgrid egress proxy: {host}:{port}: {why}")

    def _note(self, host: str, port: int, why: str | None) -> None:
        self.decisions.append((host, port, why))
        del self.decisions[:-200]
        log.info("egress " + ("refused" if why else "allowed"),
                 extra={"host": host, "port": port, "reason": why or ""})


def _authority(netloc: str) -> tuple[str, int]:
    """``host[:port]`` of an absolute URL; a bare IPv6 address (some clients drop the
    brackets) is a host with port 80."""
    netloc = netloc.rpartition("@")[2]
    if netloc.startswith("["):
        host, _, rest = netloc[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else 80
    if netloc.count(":") > 1:
        return netloc, 80
    host, _, port = netloc.partition(":")
    return host, int(port) if port else 80


async def _answer(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    reason = {400: "Bad Request", 403: "Forbidden", 431: "Request Header Fields Too Large",
              502: "Bad Gateway"}.get(status, "Error")
    body = (message + "\n").encode()
    writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    with contextlib.suppress(OSError):
        await writer.drain()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(64 * 1024):
            dst.write(data)
            await dst.drain()
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if dst.can_write_eof():
                dst.write_eof()


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
    try:
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer),
                             return_exceptions=True)
    finally:
        with contextlib.suppress(Exception):
            up_writer.close()
