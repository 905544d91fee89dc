"""Content-addressed blob storage on disk: streamed in, hash checked, never in the database."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

from nosgrid.core.errors import BlobNotFound, InvalidInput, PayloadTooLarge

SHA256_RE: Final = re.compile(r"^[0-9a-f]{64}$")


def check_sha256(sha256: str) -> str:
    if not SHA256_RE.match(sha256):
        raise InvalidInput(f"{sha256!r} is not a sha256 hex digest (64 lower-case hex digits)")
    return sha256


class BlobStore:
    """Blobs live at ``<root>/<aa>/<sha256>``; writes go to a temp file and are renamed."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / check_sha256(sha256)[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    async def put_stream(self, sha256: str, chunks: AsyncIterator[bytes]) -> int:
        """Store the stream if its sha256 matches; returns its size. Nothing kept on error."""
        target = self.path(sha256)
        digest, size = hashlib.sha256(), 0
        # the temp file sits in the root (same filesystem), so a refused upload leaves
        # not even an empty fan-out directory behind
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as fh:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise PayloadTooLarge(f"blob is larger than {self.max_bytes} bytes")
                    digest.update(chunk)
                    fh.write(chunk)
            if digest.hexdigest() != sha256:
                raise InvalidInput(
                    f"uploaded bytes hash to {digest.hexdigest()}, not {sha256}; nothing stored")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
            return size
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def open(self, sha256: str) -> Path:
        path = self.path(sha256)
        if not path.is_file():
            raise BlobNotFound(f"no blob {sha256}")
        return path

    def put_bytes(self, data: bytes) -> str:
        """Store small bytes (a usage record) under their sha256; returns it. Idempotent."""
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.path(sha256)
        if target.is_file():
            return sha256
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".put-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return sha256

    def remove(self, sha256: str) -> bool:
        """Delete a blob (a usage record past its retention); False if it was not there."""
        try:
            self.path(sha256).unlink()
        except FileNotFoundError:
            return False
        return True
