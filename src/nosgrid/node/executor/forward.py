"""Publish a container's loopback port on the host's 127.0.0.1 while it keeps ``--network none``."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def in_netns(netns_fd: int, make: Callable[[], socket.socket], name: str) -> socket.socket:
    """The socket ``make()`` creates while its thread is inside the network namespace
    ``netns_fd``. The switch happens on a short-lived thread of its own (namespaces are per
    thread), so no other thread of the agent ever runs inside the container's network; the
    socket stays bound to the namespace it was made in."""
    box: dict[str, socket.socket | BaseException] = {}

    def target() -> None:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            _setns(netns_fd)
            try:
                box["sock"] = make()
            finally:
                _setns(own)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc
        finally:
            os.close(own)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join()
    error = box.get("error")
    if isinstance(error, BaseException):
        raise error
    sock = box.get("sock")
    if not isinstance(sock, socket.socket):
        raise OSError("no socket was made in the namespace")
    return sock


def connect_in_netns(netns_fd: int, port: int, timeout_s: float = 5.0) -> socket.socket:
    """A TCP socket connected to ``127.0.0.1:port`` inside the network namespace ``netns_fd``.

    Example::

        sock = connect_in_netns(os.open("/proc/1234/ns/net", os.O_RDONLY), 8080)
    """
    sock = in_netns(netns_fd, lambda: socket.create_connection(("127.0.0.1", port),
                                                               timeout=timeout_s),
                    "nosgrid-netns-connect")
    sock.setblocking(False)
    return sock


class LoopbackForwarder:
    """Accept on host ``127.0.0.1:host_port`` and relay each connection into the container.

    Example::

        fwd = LoopbackForwarder(container_pid=1234, container_port=8080, host_port=18080)
        await fwd.start()
        ...
        await fwd.close()
    """

    def __init__(self, container_pid: int, container_port: int, host_port: int) -> None:
        self.container_port = container_port
        self.host_port = host_port
        self._netns_fd = os.open(f"/proc/{container_pid}/ns/net", os.O_RDONLY)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Start listening on 127.0.0.1 (only)."""
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", self.host_port)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            try:
                sock = await asyncio.to_thread(
                    connect_in_netns, self._netns_fd, self.container_port
                )
            except OSError as exc:
                log.debug(
                    "forward connect failed", extra={"port": self.container_port, "err": str(exc)}
                )
                return
            up_reader, up_writer = await asyncio.open_connection(sock=sock)
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def close(self) -> None:
        """Stop listening, drop open connections, release the namespace."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        if self._netns_fd >= 0:
            os.close(self._netns_fd)
            self._netns_fd = -1


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except (ConnectionError, OSError):
        pass
