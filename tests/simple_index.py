"""A PEP 503 `simple/` package index with one small wheel, served on 127.0.0.1, so a job
can `pip install` through the egress proxy without the internet."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

WHEEL = "tinypkg-1.0-py3-none-any.whl"


def build_wheel() -> bytes:
    """``tinypkg`` 1.0 (``tinypkg.VALUE == 42``), a valid pure-Python wheel."""
    files = {
        "tinypkg/__init__.py": b"VALUE = 42\n",
        "tinypkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg\n"
                                          b"Version: 1.0\n",
        "tinypkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: nosgrid-test\n"
                                       b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = ""
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{name},sha256={digest},{len(data)}\n"
    record += "tinypkg-1.0.dist-info/RECORD,,\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in {**files, "tinypkg-1.0.dist-info/RECORD": record.encode()}.items():
            zf.writestr(name, data)
    return buf.getvalue()


@contextlib.contextmanager
def serve_index(root: Path) -> Iterator[int]:
    """Write the index under ``root`` and serve it on 127.0.0.1; yields the port."""
    wheel = build_wheel()
    sha = hashlib.sha256(wheel).hexdigest()
    (root / "packages").mkdir(parents=True, exist_ok=True)
    (root / "packages" / WHEEL).write_bytes(wheel)
    (root / "simple" / "tinypkg").mkdir(parents=True, exist_ok=True)
    (root / "simple" / "index.html").write_text('<a href="tinypkg/">tinypkg</a>\n')
    (root / "simple" / "tinypkg" / "index.html").write_text(
        f'<a href="../../packages/{WHEEL}#sha256={sha}">{WHEEL}</a>\n')

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
