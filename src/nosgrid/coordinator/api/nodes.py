"""Routes: node registration, heartbeats and the long-poll for work."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter

from nosgrid.coordinator.api.deps import Coord, Signer
from nosgrid.coordinator.api.schemas import (
    ERROR_RESPONSES,
    PollRequest,
    RegisterRequest,
    job_view,
)
from nosgrid.coordinator.services import economics
from nosgrid.coordinator.services import nodes as node_services
from nosgrid.core.ledger import wallet
from nosgrid.core.money import format_nos
from nosgrid.core.views import HeartbeatView, NodeView, PollView, RegistrationView

router = APIRouter(prefix="/v1/nodes", tags=["nodes"], responses=ERROR_RESPONSES)


@router.post("/register")
async def register(body: RegisterRequest, coord: Coord, signer: Signer) -> RegistrationView:
    with coord.store.uow() as uow:
        reg = node_services.register(uow, signer, body.hardware, body.markets, coord.now(),
                                     operator=body.operator, consent=body.operator_consent,
                                     max_per_operator=coord.settings.max_nodes_per_operator)
        uow.commit()
    return RegistrationView(node_id=reg.node_id, markets=reg.markets, rejected=reg.rejected)


@router.post("/heartbeat")
async def heartbeat(coord: Coord, signer: Signer) -> HeartbeatView:
    with coord.store.uow() as uow:
        markets = node_services.heartbeat(uow, signer, coord.now())
        uow.commit()
    return HeartbeatView(ok=True, markets=markets)


@router.post("/poll")
async def poll(body: PollRequest, coord: Coord, signer: Signer) -> PollView:
    """Long-poll: returns a job as soon as one is assigned, or ``{"job": null}`` after wait.

    The poll waits under the markets the node serves; when they change while it waits (a
    market was created, its stake moved) it is woken and waits again under the new ones.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(body.wait, coord.settings.long_poll_max_s)
    with coord.store.uow(write=False) as uow:
        markets = uow.nodes.get(signer)["markets"]
    while True:
        event = coord.notifier.register(signer, markets)
        try:
            with coord.store.uow() as uow:
                job = node_services.take_work(uow, signer, coord.now())
                spec = uow.jobs.spec(job.spec_hash) if job else None
                serving = uow.nodes.get(signer)["markets"]
                uow.commit()
            if job is not None:
                return PollView(job=job_view(job), spec=spec)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return PollView(job=None, spec=None)
            if serving == markets:  # else: register under the new markets first
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
        finally:
            coord.notifier.unregister(signer, markets, event)
        markets = serving


@router.get("/{node_id}")
async def show_node(node_id: str, coord: Coord) -> NodeView:
    with coord.store.uow(write=False) as uow:
        node = uow.nodes.get(node_id)
        balance = uow.ledger.balance(wallet(node_id))
        standing = economics.node_standing(uow, node_id, int(coord.now()))
    return NodeView(**node, balance=balance, balance_nos=format_nos(balance), **standing)
