"""``Idempotency-Key``: a retried write returns its first answer and does nothing else.

As payment APIs do: a client that is unsure whether its post, cancel or faucet request
went through (a timeout, a dropped connection, a killed process) sends it again with the
same ``Idempotency-Key`` header. Within the retention window (a day) the same key with the
same body gets the first answer again (with ``Idempotent-Replayed: true``); the same key
with another body, or on another route, is a 409. Keys are per signer: two clients may
use the same key.

The record is written in the request's own transaction, so it exists exactly when the
first answer's changes do; a request that failed keeps no record, and its retry runs
again (it changed nothing).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Final

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from nosgrid.coordinator.runtime import IDEMPOTENCY_RETENTION_S
from nosgrid.core.errors import IdempotencyKeyReused, InvalidInput
from nosgrid.store.db import UnitOfWork
from nosgrid.store.repositories import IdempotencyRecord

HEADER: Final = "idempotency-key"
KEY_FORMAT: Final = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
RETENTION_S: Final = IDEMPOTENCY_RETENTION_S


def key_of(request: Request) -> str | None:
    """The request's idempotency key (None: it sent none), or a 400 for a bad one."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not KEY_FORMAT.match(key):
        raise InvalidInput("the Idempotency-Key header must be 1–128 letters, digits or "
                           "'.', '_', ':', '-' (a UUID is a good one)", field=HEADER)
    return key


async def replay(uow: UnitOfWork, request: Request, owner: str,
                 key: str | None, now: int) -> JSONResponse | None:
    """The first answer to this key, if the signer sent it before (same route and body)."""
    if key is None:
        return None
    record = uow.idempotency.get(owner, key)
    if record is None or record.at < now - RETENTION_S:
        return None
    route = _route(request)
    if record.route != route or record.body_sha256 != _digest(await request.body()):
        raise IdempotencyKeyReused(
            f"the Idempotency-Key {key!r} was sent with another request "
            f"({record.route}) in the last 24 h; use a new key for a new request")
    return JSONResponse(json.loads(record.response), status_code=record.status,
                        headers={"Idempotent-Replayed": "true"})


async def remember(uow: UnitOfWork, request: Request, owner: str, key: str | None,
                   status: int, answer: BaseModel, now: int) -> None:
    """Keep ``answer`` as this key's first answer, in the caller's transaction."""
    if key is None:
        return
    record = IdempotencyRecord(_route(request), _digest(await request.body()), status,
                               answer.model_dump_json(), now)
    if not uow.idempotency.put(owner, key, record):
        raise IdempotencyKeyReused(f"a request with the Idempotency-Key {key!r} is being "
                                   "answered right now; retry in a moment")


def _route(request: Request) -> str:
    return f"{request.method} {request.url.path}"[:200]


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()
