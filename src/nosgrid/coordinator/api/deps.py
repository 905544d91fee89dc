"""FastAPI dependencies shared by the routes: the coordinator and the verified signer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from nosgrid.coordinator.auth import verify_request
from nosgrid.coordinator.runtime import Coordinator
from nosgrid.store.db import PIGGYBACK


def get_coordinator(request: Request) -> Coordinator:
    coord: Coordinator = request.app.state.coordinator
    return coord


Coord = Annotated[Coordinator, Depends(get_coordinator)]


async def get_signer(request: Request, coord: Coord) -> AsyncIterator[str]:
    """The verified signer; its nonce is written with the request's own transaction.

    A request that commits nothing still burns its nonce: a failed write is recorded
    separately (so it cannot be replayed later, when it might succeed). Reads are
    remembered in memory for the window only.
    """
    signer, piggyback = await verify_request(request, coord)
    token = PIGGYBACK.set(piggyback)
    try:
        yield signer
    finally:
        PIGGYBACK.reset(token)
        if not piggyback.stored and request.method != "GET":
            coord.store_nonce(piggyback)
        # after the route: a key it just funded or registered is known from now on
        coord.budgets.learn(signer)


Signer = Annotated[str, Depends(get_signer)]
