"""A small keep-alive HTTP/1.1 client for the gateway's hop to a replica.

The hop is on every model request's path; a general client (httpx) spends about 1.4 ms of
Python per request on this machine, this one about 0.05 ms. It does only what the hop
needs: POST/GET with a body, ``Content-Length`` or chunked responses (or read to close),
one pool of idle connections per replica, and streaming the body line by line for
server-sent events. Any failure is an :class:`UpstreamError`; ``before_response`` says
whether the replica failed before answering (then the request may go to another).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_MAX_HEAD = 64 * 1024
_READ = 64 * 1024


class UpstreamError(Exception):
    def __init__(self, message: str, *, before_response: bool) -> None:
        super().__init__(message)
        self.before_response = before_response


_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass
class UpstreamResponse:
    status: int
    headers: dict[str, str]
    _pool: UpstreamPool
    _key: tuple[str, int]
    _conn: _Conn | None
    _keep: bool = True
    _done: bool = False

    async def _chunks(self) -> AsyncIterator[bytes]:
        if self._conn is None:
            return
        reader = self._conn[0]
        try:
            if "chunked" in self.headers.get("transfer-encoding", "").lower():
                while True:
                    size_line = await reader.readuntil(b"\r\n")
                    size = int(size_line.split(b";")[0].strip(), 16)
                    if size == 0:
                        while (await reader.readuntil(b"\r\n")) != b"\r\n":
                            pass
                        break
                    data = await reader.readexactly(size)
                    await reader.readexactly(2)
                    yield data
            elif "content-length" in self.headers:
                left = int(self.headers["content-length"])
                while left > 0:
                    data = await reader.read(min(_READ, left))
                    if not data:
                        raise asyncio.IncompleteReadError(b"", left)
                    left -= len(data)
                    yield data
            else:
                self._keep = False
                while data := await reader.read(_READ):
                    yield data
            self._done = True
        except (OSError, ValueError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as exc:
            self._keep = False
            raise UpstreamError(f"the replica's answer broke off: {exc!r}",
                                before_response=False) from None
        finally:
            self._release()

    async def read(self) -> bytes:
        return b"".join([c async for c in self._chunks()])

    async def lines(self) -> AsyncIterator[str]:
        """The body as text lines without their line ends (for server-sent events)."""
        buf = b""
        async for chunk in self._chunks():
            buf += chunk
            *complete, buf = buf.split(b"\n")
            for line in complete:
                yield line.rstrip(b"\r").decode("utf-8", "replace")
        if buf:
            yield buf.rstrip(b"\r").decode("utf-8", "replace")

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._done and self._keep:
            self._pool.put_back(self._key, conn)
        else:
            conn[1].close()

    async def aclose(self) -> None:
        self._keep = self._keep and self._done
        self._release()


@dataclass
class UpstreamPool:
    """Idle connections per (host, port); ``max_idle`` kept per replica."""

    connect_timeout_s: float = 5.0
    max_idle: int = 64
    _idle: dict[tuple[str, int], list[_Conn]] = field(default_factory=dict)

    def put_back(self, key: tuple[str, int], conn: _Conn) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) < self.max_idle and not conn[0].at_eof():
            idle.append(conn)
        else:
            conn[1].close()

    async def _connect(self, key: tuple[str, int]) -> _Conn:
        try:
            return await asyncio.wait_for(asyncio.open_connection(*key, limit=_MAX_HEAD),
                                          self.connect_timeout_s)
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(f"cannot connect to {key[0]}:{key[1]}: {exc!r}",
                                before_response=True) from None

    async def request(self, method: str, url: str, body: bytes = b"", *,
                      timeout_s: float = 600.0,
                      content_type: str = "application/json") -> UpstreamResponse:
        """Send one request; returns once the status line and headers arrived."""
        parts = urlsplit(url)
        key = (parts.hostname or "127.0.0.1", parts.port or 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = (f"{method} {path} HTTP/1.1\r\nhost: {parts.netloc}\r\n"
                f"content-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
                "accept: */*\r\n\r\n").encode()
        idle = self._idle.get(key) or []
        for attempt in range(2):
            # a reused connection the replica already closed fails at once: retry once fresh
            reused = bool(idle) and attempt == 0
            conn = idle.pop() if reused else await self._connect(key)
            reader, writer = conn
            try:
                writer.write(head + body)
                async with asyncio.timeout(timeout_s):
                    raw = await reader.readuntil(b"\r\n\r\n")
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    TimeoutError) as exc:
                writer.close()
                if reused and not isinstance(exc, TimeoutError):
                    continue
                raise UpstreamError(f"the replica did not answer: {exc!r}",
                                    before_response=True) from None
            lines = raw.decode("latin-1").split("\r\n")
            try:
                status = int(lines[0].split(" ", 2)[1])
            except (IndexError, ValueError):
                writer.close()
                raise UpstreamError(f"not an HTTP answer: {lines[0][:80]!r}",
                                    before_response=True) from None
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            keep = headers.get("connection", "").lower() != "close"
            return UpstreamResponse(status, headers, self, key, conn, keep)
        raise UpstreamError("the replica closed every connection", before_response=True)

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for _reader, writer in conns:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        self._idle.clear()
