"""The gateway's rows: keys (revocation, spend, holds), workers and their charges, usage,
service endpoints, deployments."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from nosgrid.core.apikeys import KeyClaims
from nosgrid.core.ledger import GATEWAY_HOLD_PREFIX
from nosgrid.core.metering import Charge, UsageLine
from nosgrid.store import tables as t


def _insert(conn: Connection, table: Any) -> Any:
    return (postgresql.insert(table) if conn.dialect.name == "postgresql"
            else sqlite.insert(table))


@dataclass(frozen=True)
class Deployment:
    """A model the gateway can start replicas of: a service job posted by ``owner``."""

    model: str
    owner: str
    market: str
    spec: str
    min_replicas: int = 0
    max_replicas: int = 1
    idle_s: int = 300
    prompt_price: int = 1
    completion_price: int = 2
    created_at: int = 0

    def view(self) -> dict[str, Any]:
        return {"model": self.model, "owner": self.owner, "market": self.market,
                "min": self.min_replicas, "max": self.max_replicas, "idle_s": self.idle_s,
                "prompt_price": self.prompt_price, "completion_price": self.completion_price,
                "created_at": self.created_at}


class GatewayRepo:
    """Statements over the gateway tables, inside the caller's transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # -- keys -----------------------------------------------------------------------

    def add_key(self, claims: KeyClaims, label: str, now: int) -> bool:
        """Record a key (idempotent); False if it was already known."""
        stmt = _insert(self.conn, t.gateway_keys).values(
            kid=claims.kid, owner=claims.owner, cap=claims.cap, expires_at=claims.expires_at,
            models=json.dumps(list(claims.models)), label=label, created_at=now,
            revoked_at=None, spent=0, held=0).on_conflict_do_nothing(index_elements=["kid"])
        return bool(self.conn.execute(stmt).rowcount)

    def key(self, kid: str) -> dict[str, Any] | None:
        row = self.conn.execute(select(t.gateway_keys).where(t.gateway_keys.c.kid == kid)).first()
        return None if row is None else _key_view(row)

    def keys_by_id(self, kids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = sorted(set(kids))
        if not ids:
            return {}
        return {str(r.kid): _key_view(r) for r in self.conn.execute(
            select(t.gateway_keys).where(t.gateway_keys.c.kid.in_(ids)))}

    def keys_of(self, owner: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(select(t.gateway_keys).where(t.gateway_keys.c.owner == owner)
                                 .order_by(t.gateway_keys.c.created_at))
        return [_key_view(r) for r in rows]

    def revoke(self, kid: str, now: int) -> None:
        self.conn.execute(update(t.gateway_keys).where(t.gateway_keys.c.kid == kid,
                                                        t.gateway_keys.c.revoked_at.is_(None))
                          .values(revoked_at=now))

    def revoked(self) -> set[str]:
        return {str(r.kid) for r in self.conn.execute(
            select(t.gateway_keys.c.kid).where(t.gateway_keys.c.revoked_at.is_not(None)))}

    def take_room(self, kid: str, amount: int) -> bool:
        """Count ``amount`` more as held for the key if its cap has room over all workers
        (``spent + held + amount <= cap``) and it is not revoked; False otherwise. One
        conditional update, so concurrent top-ups of two processes cannot both pass."""
        k = t.gateway_keys.c
        res = self.conn.execute(update(t.gateway_keys).where(
            k.kid == kid, k.revoked_at.is_(None), k.spent + k.held + amount <= k.cap)
            .values(held=k.held + amount))
        return res.rowcount == 1

    def add_spend(self, kid: str, amount: int) -> None:
        """``amount`` of the key's holds was paid out: it moves from held to spent."""
        k = t.gateway_keys.c
        self.conn.execute(update(t.gateway_keys).where(k.kid == kid)
                          .values(spent=k.spent + amount, held=k.held - amount))

    def release_held(self, kid: str, amount: int) -> None:
        """``amount`` of the key's holds went back to its owner."""
        k = t.gateway_keys.c
        self.conn.execute(update(t.gateway_keys).where(k.kid == kid)
                          .values(held=k.held - amount))

    # -- workers, their holds and charges --------------------------------------------

    def add_worker(self, worker: str, now: float) -> None:
        self.conn.execute(_insert(self.conn, t.gateway_workers).values(
            worker=worker, started_at=now, heartbeat_at=now)
            .on_conflict_do_update(index_elements=["worker"], set_={"heartbeat_at": now}))

    def heartbeat(self, worker: str, now: float) -> bool:
        """Renew the worker's lease; False if it has none (it was reaped as dead). On
        PostgreSQL this also locks the row, so a reaper waits for the caller's commit."""
        w = t.gateway_workers.c
        res = self.conn.execute(update(t.gateway_workers).where(w.worker == worker)
                                .values(heartbeat_at=now))
        return res.rowcount == 1

    def drop_worker(self, worker: str) -> None:
        self.conn.execute(delete(t.gateway_workers).where(t.gateway_workers.c.worker == worker))

    def expired_workers(self, before: float) -> list[str]:
        w = t.gateway_workers.c
        return [str(r.worker) for r in self.conn.execute(
            select(w.worker).where(w.heartbeat_at < before).order_by(w.worker))]

    def claim_dead(self, worker: str, before: float) -> bool:
        """Take over a worker whose lease ran out before ``before`` (delete its lease);
        False if it renewed meanwhile or someone else took it."""
        w = t.gateway_workers.c
        res = self.conn.execute(delete(t.gateway_workers).where(
            w.worker == worker, w.heartbeat_at < before))
        return res.rowcount == 1

    def workers(self) -> list[dict[str, Any]]:
        return [dict(r._mapping) for r in self.conn.execute(
            select(t.gateway_workers).order_by(t.gateway_workers.c.started_at))]

    def holds_of(self, worker: str) -> dict[str, tuple[str, int]]:
        """``kid → (owner, balance)`` of the worker's non-empty holds."""
        k, a = t.gateway_keys.c, t.accounts.c
        rows = self.conn.execute(select(k.kid, k.owner, a.balance).join(
            t.accounts, a.name == GATEWAY_HOLD_PREFIX + k.kid + ":" + worker)
            .where(k.held > 0, a.balance > 0))
        return {str(r.kid): (str(r.owner), int(r.balance)) for r in rows}

    def add_charges(self, worker: str, charges: Sequence[tuple[int, Charge]],
                    now: float) -> None:
        """Record ended requests' charges (idempotent per ``(worker, seq)``)."""
        if not charges:
            return
        stmt = _insert(self.conn, t.gateway_charges).on_conflict_do_nothing(
            index_elements=["worker", "seq"])
        self.conn.execute(stmt, [
            {"worker": worker, "seq": seq, "kid": c.kid, "owner": c.owner, "model": c.model,
             "node": c.node, "prompt_tokens": c.prompt_tokens,
             "completion_tokens": c.completion_tokens, "cost": c.cost, "at": now,
             "record": c.record}
            for seq, c in charges])

    def charges_of(self, worker: str) -> list[tuple[int, Charge]]:
        c = t.gateway_charges.c
        return [(int(r.seq), Charge(str(r.kid), str(r.owner), str(r.model), str(r.node),
                                    int(r.prompt_tokens), int(r.completion_tokens),
                                    int(r.cost), str(r.record or "")))
                for r in self.conn.execute(select(t.gateway_charges).where(c.worker == worker)
                                           .order_by(c.seq))]

    def drop_charges(self, worker: str, upto_seq: int) -> None:
        c = t.gateway_charges.c
        self.conn.execute(delete(t.gateway_charges).where(c.worker == worker,
                                                          c.seq <= upto_seq))

    # -- usage ----------------------------------------------------------------------

    def add_usage(self, kid: str, model: str, line: UsageLine) -> None:
        u = t.gateway_usage
        stmt = _insert(self.conn, u).values(
            kid=kid, model=model, owner=line.owner, requests=line.requests,
            prompt_tokens=line.prompt_tokens, completion_tokens=line.completion_tokens,
            cost=line.cost)
        stmt = stmt.on_conflict_do_update(index_elements=["kid", "model"], set_={
            "requests": u.c.requests + stmt.excluded.requests,
            "prompt_tokens": u.c.prompt_tokens + stmt.excluded.prompt_tokens,
            "completion_tokens": u.c.completion_tokens + stmt.excluded.completion_tokens,
            "cost": u.c.cost + stmt.excluded.cost})
        self.conn.execute(stmt)

    def usage_of(self, owner: str) -> list[dict[str, Any]]:
        u = t.gateway_usage
        return [{"kid": r.kid, "model": r.model, "requests": int(r.requests),
                 "prompt_tokens": int(r.prompt_tokens),
                 "completion_tokens": int(r.completion_tokens), "cost": int(r.cost)}
                for r in self.conn.execute(select(u).where(u.c.owner == owner)
                                           .order_by(u.c.kid, u.c.model))]

    # -- services -------------------------------------------------------------------

    def put_service(self, job_id: str, op_id: str, node: str, model: str, endpoint: str,
                    healthy: bool, now: float) -> None:
        s = t.gateway_services
        values = {"node": node, "model": model, "endpoint": endpoint,
                  "healthy": int(healthy), "updated_at": now}
        stmt = _insert(self.conn, s).values(job_id=job_id, op_id=op_id, **values)
        self.conn.execute(stmt.on_conflict_do_update(index_elements=["job_id", "op_id"],
                                                     set_=values))

    def services(self) -> list[dict[str, Any]]:
        return [dict(r._mapping) for r in self.conn.execute(select(t.gateway_services))]

    def service_jobs(self, model: str) -> set[str]:
        """The jobs serving or starting to serve ``model`` (posted by any process)."""
        s = t.gateway_services.c
        return {str(r.job_id) for r in self.conn.execute(
            select(s.job_id).where(s.model == model).distinct())}

    def drop_services(self, job_ids: list[str]) -> None:
        if job_ids:
            self.conn.execute(delete(t.gateway_services)
                              .where(t.gateway_services.c.job_id.in_(job_ids)))

    def touch_services(self, job_ids: Iterable[str], now: float) -> None:
        """A worker sent these replicas' jobs requests (or has some in flight) just now."""
        ids = sorted(set(job_ids))
        if ids:
            s = t.gateway_services.c
            self.conn.execute(update(t.gateway_services).where(s.job_id.in_(ids))
                              .values(last_used_at=now))

    # -- deployments ----------------------------------------------------------------

    def put_deployment(self, d: Deployment) -> None:
        values = {"owner": d.owner, "market": d.market, "spec": d.spec,
                  "min_replicas": d.min_replicas, "max_replicas": d.max_replicas,
                  "idle_s": d.idle_s, "prompt_price": d.prompt_price,
                  "completion_price": d.completion_price, "created_at": d.created_at}
        stmt = _insert(self.conn, t.gateway_deployments).values(model=d.model, **values)
        self.conn.execute(stmt.on_conflict_do_update(index_elements=["model"], set_=values))

    def deployments(self) -> list[Deployment]:
        return [_deployment(r) for r in self.conn.execute(select(t.gateway_deployments))]

    def lock_deployment(self, model: str) -> Deployment | None:
        """The deployment, its row locked until commit (PostgreSQL; SQLite's writers are
        serialised anyway), so two processes scaling it take turns."""
        r = self.conn.execute(select(t.gateway_deployments)
                              .where(t.gateway_deployments.c.model == model)
                              .with_for_update()).first()
        return None if r is None else _deployment(r)

    def drop_deployment(self, model: str) -> None:
        self.conn.execute(delete(t.gateway_deployments)
                          .where(t.gateway_deployments.c.model == model))


def _deployment(r: Any) -> Deployment:
    return Deployment(str(r.model), str(r.owner), str(r.market), str(r.spec),
                      int(r.min_replicas), int(r.max_replicas), int(r.idle_s),
                      int(r.prompt_price), int(r.completion_price), int(r.created_at))


def _key_view(r: Any) -> dict[str, Any]:
    return {"kid": r.kid, "owner": r.owner, "cap": int(r.cap), "expires_at": int(r.expires_at),
            "models": json.loads(r.models), "label": r.label, "created_at": int(r.created_at),
            "revoked_at": None if r.revoked_at is None else int(r.revoked_at),
            "spent": int(r.spent), "held": int(r.held)}
