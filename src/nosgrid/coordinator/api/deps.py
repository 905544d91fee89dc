"""FastAPI dependencies shared by the routes: the coordinator and the verified signer."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from nosgrid.coordinator.auth import verify_request
from nosgrid.coordinator.runtime import Coordinator


def get_coordinator(request: Request) -> Coordinator:
    coord: Coordinator = request.app.state.coordinator
    return coord


Coord = Annotated[Coordinator, Depends(get_coordinator)]


async def get_signer(request: Request, coord: Coord) -> str:
    return await verify_request(request, coord)


Signer = Annotated[str, Depends(get_signer)]
