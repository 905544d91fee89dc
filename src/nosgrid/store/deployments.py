"""Deployments' rows: the deployment's state, its revisions, replicas and events."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from typing import Any

from sqlalchemy import Connection, insert, select, update

from nosgrid.core.deployments import Deployment, DeploymentConfig
from nosgrid.core.errors import AlreadyExists, DeploymentNotFound
from nosgrid.store import tables as t


def _dump(d: Deployment) -> str:
    return json.dumps(asdict(d), sort_keys=True)


def _load(text: str) -> Deployment:
    raw = json.loads(text)
    config = DeploymentConfig(**raw.pop("config"))
    return Deployment(config=config, **raw)


class DeploymentRepo:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # -- the deployment ---------------------------------------------------------------

    def add(self, d: Deployment, name: str, now: int) -> None:
        c = t.deployments.c
        taken = self.conn.execute(select(c.id).where(c.owner == d.owner, c.name == name)
                                  ).first()
        if taken is not None:
            raise AlreadyExists(f"you have a deployment named {name!r} already "
                                f"({taken.id}); choose another --name")
        self.conn.execute(insert(t.deployments).values(
            id=d.id, name=name, owner=d.owner, state=_dump(d), created_at=now, updated_at=now))

    def save(self, d: Deployment, now: int) -> None:
        self.conn.execute(update(t.deployments).where(t.deployments.c.id == d.id)
                          .values(state=_dump(d), updated_at=now))

    def get(self, ref: str, owner: str | None = None) -> tuple[Deployment, str]:
        """A deployment by id, or by name among ``owner``'s: (deployment, name)."""
        c = t.deployments.c
        row = self.conn.execute(select(c.state, c.name).where(c.id == ref)).first()
        if row is None and owner is not None:
            row = self.conn.execute(select(c.state, c.name)
                                    .where(c.owner == owner, c.name == ref)).first()
        if row is None:
            raise DeploymentNotFound(f"no deployment {ref!r}")
        return _load(row.state), str(row.name)

    def all(self, owner: str | None = None) -> list[tuple[Deployment, str]]:
        c = t.deployments.c
        query = select(c.state, c.name).order_by(c.created_at)
        if owner is not None:
            query = query.where(c.owner == owner)
        return [(_load(r.state), str(r.name)) for r in self.conn.execute(query)]

    def active(self) -> list[Deployment]:
        return [d for d, _ in self.all() if d.status == "active"
                or self.live_replicas(d.id)]

    # -- revisions ------------------------------------------------------------------------

    def add_revision(self, deployment_id: str, revision: int, spec_hash: str, now: int) -> None:
        self.conn.execute(insert(t.deployment_revisions).values(
            deployment_id=deployment_id, revision=revision, spec_hash=spec_hash,
            created_at=now))

    def spec_hash(self, deployment_id: str, revision: int) -> str:
        c = t.deployment_revisions.c
        row = self.conn.execute(select(c.spec_hash).where(
            c.deployment_id == deployment_id, c.revision == revision)).first()
        if row is None:
            raise DeploymentNotFound(f"deployment {deployment_id} has no revision {revision}")
        return str(row.spec_hash)

    def revisions(self, deployment_id: str) -> list[dict[str, Any]]:
        c = t.deployment_revisions.c
        return [dict(r._mapping) for r in self.conn.execute(
            select(c.revision, c.spec_hash, c.created_at)
            .where(c.deployment_id == deployment_id).order_by(c.revision))]

    def last_revision(self, deployment_id: str) -> int:
        revs = self.revisions(deployment_id)
        return int(revs[-1]["revision"]) if revs else 0

    # -- replicas -------------------------------------------------------------------------

    def add_replica(self, deployment_id: str, job_id: str, revision: int,
                    replaces: str | None, now: int) -> None:
        self.conn.execute(insert(t.deployment_replicas).values(
            job_id=job_id, deployment_id=deployment_id, revision=revision, replaces=replaces,
            stopping=False, posted_at=now))

    def mark_stopping(self, job_id: str) -> None:
        self.conn.execute(update(t.deployment_replicas)
                          .where(t.deployment_replicas.c.job_id == job_id)
                          .values(stopping=True))

    def replicas(self, deployment_id: str) -> list[dict[str, Any]]:
        c = t.deployment_replicas.c
        return [dict(r._mapping) for r in self.conn.execute(
            select(c.job_id, c.revision, c.replaces, c.stopping, c.posted_at)
            .where(c.deployment_id == deployment_id).order_by(c.posted_at, c.job_id))]

    def live_replicas(self, deployment_id: str) -> list[str]:
        from nosgrid.core.jobs.state import OPEN

        c, j = t.deployment_replicas.c, t.jobs.c
        rows = self.conn.execute(select(c.job_id).join(t.jobs, j.id == c.job_id).where(
            c.deployment_id == deployment_id, j.state.in_([s.value for s in OPEN])))
        return [str(r.job_id) for r in rows]

    def deployment_of(self, job_id: str) -> str | None:
        c = t.deployment_replicas.c
        row = self.conn.execute(select(c.deployment_id).where(c.job_id == job_id)).first()
        return None if row is None else str(row.deployment_id)

    # -- events ---------------------------------------------------------------------------

    def add_event(self, deployment_id: str, kind: str, detail: str, job_id: str | None,
                  now: int) -> None:
        self.conn.execute(insert(t.deployment_events).values(
            deployment_id=deployment_id, kind=kind, detail=detail, job_id=job_id, at=now))

    def events(self, deployment_id: str, after: int = 0, limit: int = 500
               ) -> list[dict[str, Any]]:
        c = t.deployment_events.c
        return [dict(r._mapping) for r in self.conn.execute(
            select(c.seq, c.kind, c.detail, c.job_id, c.at)
            .where(c.deployment_id == deployment_id, c.seq > after)
            .order_by(c.seq).limit(limit))]


def with_config(d: Deployment, **changes: Any) -> Deployment:
    """``d`` with some of its config's fields changed."""
    return replace(d, config=replace(d.config, **changes))
