"""A listening socket made inside another network namespace (a job's pod).

The socket belongs to the namespace it was created in, so after the thread switches back
the agent accepts, in its own namespace, connections that only processes inside the pod
can make (on the pod's ``127.0.0.1``). The pod keeps ``--network none``: no interface but
``lo``, so this socket is the job's only way out.
"""

from __future__ import annotations

import socket

from nosgrid.node.executor.forward import in_netns


def listen_in_netns(netns_fd: int, port: int, host: str = "127.0.0.1") -> socket.socket:
    """A TCP socket listening on ``host:port`` inside the namespace ``netns_fd``.

    Example::

        sock = listen_in_netns(os.open("/proc/1234/ns/net", os.O_RDONLY), 3128)
    """
    def listen() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        return sock

    return in_netns(netns_fd, listen, "nosgrid-netns-listen")
