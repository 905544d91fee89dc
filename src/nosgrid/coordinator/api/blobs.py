"""Routes: content-addressed blobs (job inputs and outputs), streamed to and from disk."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from nosgrid.coordinator.api.deps import Coord, Signer
from nosgrid.coordinator.api.schemas import ERROR_RESPONSES
from nosgrid.coordinator.blobs import check_sha256
from nosgrid.core.errors import Forbidden
from nosgrid.core.views import BlobView

router = APIRouter(prefix="/v1/blobs", tags=["blobs"], responses=ERROR_RESPONSES)
_BYTES: dict[int | str, dict[str, Any]] = {200: {
    "description": "The blob's bytes",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}}


@router.put("/{sha256}", status_code=201)
async def upload(sha256: str, request: Request, coord: Coord, signer: Signer) -> BlobView:
    """Upload raw bytes; the server checks they hash to ``sha256`` (signature covers them)."""
    check_sha256(sha256)
    body = await request.body()  # already read (and size-capped) to check the signature

    async def one_chunk() -> Any:
        yield body

    size = await coord.blobs.put_stream(sha256, one_chunk())
    with coord.store.uow() as uow:
        uow.blobs.add(sha256, size, signer, int(coord.now()))
        uow.blobs.grant(sha256, signer)
        uow.commit()
    return BlobView(sha256=sha256, size=size)


@router.get("/{sha256}", response_class=FileResponse, responses=_BYTES)
async def download(sha256: str, coord: Coord, signer: Signer) -> FileResponse:
    """Only the uploader, the node of a job that takes it as input, or the client of a job
    that produced it may read a blob."""
    with coord.store.uow(write=False) as uow:
        allowed = uow.blobs.may_read(check_sha256(sha256), signer)
    if not allowed:
        raise Forbidden("this blob was not uploaded by you and is not an input or output of "
                        "one of your jobs")
    return FileResponse(coord.blobs.open(check_sha256(sha256)),
                        media_type="application/octet-stream")
