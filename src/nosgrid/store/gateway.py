"""The gateway's rows: keys (revocation, spend), usage, service endpoints, deployments."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from nosgrid.core.apikeys import KeyClaims
from nosgrid.core.metering import UsageLine
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
            revoked_at=None, spent=0).on_conflict_do_nothing(index_elements=["kid"])
        return bool(self.conn.execute(stmt).rowcount)

    def key(self, kid: str) -> dict[str, Any] | None:
        row = self.conn.execute(select(t.gateway_keys).where(t.gateway_keys.c.kid == kid)).first()
        return None if row is None else _key_view(row)

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

    def add_spend(self, kid: str, amount: int) -> None:
        self.conn.execute(update(t.gateway_keys).where(t.gateway_keys.c.kid == kid)
                          .values(spent=t.gateway_keys.c.spent + amount))

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

    def drop_services(self, job_ids: list[str]) -> None:
        if job_ids:
            self.conn.execute(delete(t.gateway_services)
                              .where(t.gateway_services.c.job_id.in_(job_ids)))

    # -- deployments ----------------------------------------------------------------

    def put_deployment(self, d: Deployment) -> None:
        values = {"owner": d.owner, "market": d.market, "spec": d.spec,
                  "min_replicas": d.min_replicas, "max_replicas": d.max_replicas,
                  "idle_s": d.idle_s, "prompt_price": d.prompt_price,
                  "completion_price": d.completion_price, "created_at": d.created_at}
        stmt = _insert(self.conn, t.gateway_deployments).values(model=d.model, **values)
        self.conn.execute(stmt.on_conflict_do_update(index_elements=["model"], set_=values))

    def deployments(self) -> list[Deployment]:
        return [Deployment(str(r.model), str(r.owner), str(r.market), str(r.spec),
                           int(r.min_replicas), int(r.max_replicas), int(r.idle_s),
                           int(r.prompt_price), int(r.completion_price), int(r.created_at))
                for r in self.conn.execute(select(t.gateway_deployments))]

    def drop_deployment(self, model: str) -> None:
        self.conn.execute(delete(t.gateway_deployments)
                          .where(t.gateway_deployments.c.model == model))


def _key_view(r: Any) -> dict[str, Any]:
    return {"kid": r.kid, "owner": r.owner, "cap": int(r.cap), "expires_at": int(r.expires_at),
            "models": json.loads(r.models), "label": r.label, "created_at": int(r.created_at),
            "revoked_at": None if r.revoked_at is None else int(r.revoked_at),
            "spent": int(r.spent)}
