"""The dashboard's pages, served by the coordinator at ``/``.

Why server-rendered Jinja2 pages and not a single-page build: nothing to compile at
install time (no Node), pages that work without JavaScript for every public figure, and
one source for each figure: a page calls the same function as the JSON route that
answers it (``api/markets``, ``api/nodes``, ``api/system``, ``api/dashboard``), so the
page can never show a number the API, the SDK and the CLI do not also get. JavaScript
(``static/dash.js``, plain ``fetch`` and ``EventSource``) only does what needs the
user's key or a live stream: signing requests with WebCrypto's Ed25519, the job editor,
live logs, alerts, and re-checking the ledger's hash chain with WebCrypto's SHA-256.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any, Final

import jinja2
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse

from nosgrid.coordinator.api import markets as market_routes
from nosgrid.coordinator.api import nodes as node_routes
from nosgrid.coordinator.api import system as system_routes
from nosgrid.coordinator.api.deps import Coord
from nosgrid.coordinator.api.schemas import SQL_INT_MAX
from nosgrid.coordinator.dashboard import charts
from nosgrid.coordinator.runtime import Coordinator
from nosgrid.coordinator.services import dashboard
from nosgrid.core.errors import NosgridError, NotFound
from nosgrid.core.money import format_nos

HERE: Final = Path(__file__).resolve().parent
#: the files under static/ a browser may fetch, and their media types
STATIC: Final = {"dash.css": "text/css", "dash.js": "text/javascript",
                 "favicon.svg": "image/svg+xml"}

router = APIRouter(include_in_schema=False)


@functools.cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["nos"] = format_nos
    env.filters["utc"] = lambda at: (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))
                                     if at else "—")
    env.filters["day"] = lambda at: time.strftime("%m-%d", time.gmtime(at))
    env.filters["pct"] = lambda share: f"{100 * share:.1f}%"
    env.filters["short"] = _short
    return env


def _short(name: str) -> str:
    """A long key or id cut to its ends; an account keeps its kind (``wallet:Gew…9KPQ``)."""
    kind, sep, rest = name.rpartition(":")
    if len(rest) <= 16:
        return name
    return f"{kind}{sep}{rest[:6]}…{rest[-4:]}"


def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
    """The page ``name`` with ``values``."""
    return HTMLResponse(_env().get_template(name).render(**values), status_code=status)


def _failed(err: NosgridError) -> HTMLResponse:
    return render("error.html", status=err.http_status, page="error", error=err.to_dict())


@router.get("/static/{name}")
async def static(name: str) -> FileResponse:
    if name not in STATIC:
        raise NotFound(f"no dashboard asset {name!r}")
    return FileResponse(HERE / "static" / name, media_type=STATIC[name],
                        headers={"Cache-Control": "public, max-age=300"})


@router.get("/", response_class=HTMLResponse)
async def markets_page(coord: Coord) -> HTMLResponse:
    rows = []
    for market in await market_routes.list_markets(coord):
        rows.append((await market_routes.show_market(market.name, coord),
                     _market_stats(coord, market.name)))
    summary = await system_routes.ledger_summary(coord)
    return render("markets.html", page="markets", markets=rows, summary=summary)


def _market_stats(coord: Coordinator, name: str) -> Any:
    with coord.store.uow(write=False) as uow:
        return dashboard.market_stats(uow, name, int(coord.now()), coord.notifier.waiting(name))


@router.get("/markets/{name}", response_class=HTMLResponse)
async def market_page(name: str, coord: Coord) -> HTMLResponse:
    try:
        detail = await market_routes.show_market(name, coord)
    except NosgridError as err:
        return _failed(err)
    return render("market.html", page="markets", market=detail,
                  stats=_market_stats(coord, name),
                  nodes=await market_routes.market_nodes(name, coord))


@router.get("/nodes", response_class=HTMLResponse)
async def nodes_page(coord: Coord, offset: int = Query(0, ge=0, le=SQL_INT_MAX),
                     limit: int = Query(100, ge=1, le=1000)) -> HTMLResponse:
    with coord.store.uow(write=False) as uow:
        listing = dashboard.node_list(uow, int(coord.now()), offset, limit)
    return render("nodes.html", page="nodes", listing=listing, offset=offset, limit=limit)


@router.get("/nodes/{node_id}", response_class=HTMLResponse)
async def node_page(node_id: str, coord: Coord) -> HTMLResponse:
    try:
        node = await node_routes.show_node(node_id, coord)
    except NosgridError as err:
        return _failed(err)
    with coord.store.uow(write=False) as uow:
        stats = dashboard.node_stats(uow, node_id, int(coord.now()))
    chart = charts.bar_chart([_day(e.day) for e in stats.earnings],
                             [e.earned for e in stats.earnings],
                             value_label=[f"{e.earned_nos} NOS" for e in stats.earnings],
                             top_label=f"{format_nos(max(e.earned for e in stats.earnings))} NOS"
                             if any(e.earned for e in stats.earnings) else "",
                             title=f"NOS earned per day over the last {len(stats.earnings)} "
                                   "days")
    return render("node.html", page="nodes", node=node, stats=stats, chart=chart)


def _day(at: int) -> str:
    return time.strftime("%m-%d", time.gmtime(at))


@router.get("/ledger", response_class=HTMLResponse)
async def ledger_page(coord: Coord, from_seq: int | None = Query(None, ge=0, le=SQL_INT_MAX),
                      limit: int = Query(50, ge=1, le=500)) -> HTMLResponse:
    summary = await system_routes.ledger_summary(coord)
    if from_seq is None:  # the newest page by default
        from_seq = max(0, summary.entries - limit)
    with coord.store.uow(write=False) as uow:
        entries = dashboard.ledger_page(uow, from_seq, limit, coord.settings.settlement)
        accounts = dashboard.account_balances(uow, None, 25)
    return render("ledger.html", page="ledger", summary=summary, ledger=entries,
                  accounts=accounts, from_seq=from_seq, limit=limit,
                  entries_json=[e.model_dump(mode="json") for e in entries.entries])


@router.get("/tokenomics", response_class=HTMLResponse)
async def tokenomics_page(coord: Coord) -> HTMLResponse:
    with coord.store.uow(write=False) as uow:
        tk = dashboard.tokenomics(uow, 104)
    curve = charts.line_chart([p.cumulative for p in tk.emission],
                              title="NOS emitted from the reserve, cumulative, by epoch",
                              x_label=f"epoch {len(tk.emission) - 1}",
                              top_label=f"{format_nos(tk.emission[-1].cumulative)} NOS"
                              if tk.emission else "")
    split = charts.share_bar([(a.account.removeprefix("alloc:"), a.amount)
                              for a in tk.allocation], title="Genesis allocation")
    return render("tokenomics.html", page="tokenomics", tk=tk, curve=curve, split=split)


@router.get("/console", response_class=HTMLResponse)
async def console_page(request: Request, coord: Coord) -> HTMLResponse:
    """Sign in with a key file (kept in this tab's memory), post and follow jobs."""
    with coord.store.uow(write=False) as uow:
        names = uow.markets.names()
    return render("console.html", page="console", markets=names,
                  default_market=coord.settings.default_market or (names[0] if names else ""),
                  faucet=coord.settings.faucet and coord.settings.settlement == "local")
