"""Persistence of the economic rules' state objects as JSON rows in ``protocol_state``."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypeVar

from sqlalchemy import Connection, select

from nosgrid.core.reputation import NodeReputation
from nosgrid.core.slashing import OffenceHistory
from nosgrid.core.staking import RewardPool, StakeAccount
from nosgrid.store import tables as t
from nosgrid.store.repositories import _insert

S = TypeVar("S")
POOL_KEY = "stakers"


def _to_json(obj: Any) -> str:
    return json.dumps(dataclasses.asdict(obj), sort_keys=True, separators=(",", ":"))


def _from_json(cls: type[S], body: str) -> S:
    values = json.loads(body)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if isinstance(values.get(f.name), list):  # tuples come back from JSON as lists
            values[f.name] = tuple(tuple(v) if isinstance(v, list) else v
                                   for v in values[f.name])
    return cls(**values)


class EconomicsRepo:
    """Stake accounts, the stakers' reward pool, reputations and offence histories."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _get(self, kind: str, key: str) -> str | None:
        query = select(t.protocol_state.c.body).where(
            t.protocol_state.c.kind == kind, t.protocol_state.c.key == key)
        if self.conn.dialect.name == "postgresql":
            query = query.with_for_update()
        value = self.conn.execute(query).scalar()
        return None if value is None else str(value)

    def _put(self, kind: str, key: str, obj: Any) -> None:
        body = _to_json(obj)
        ins = _insert(self.conn, t.protocol_state).values(kind=kind, key=key, body=body)
        self.conn.execute(ins.on_conflict_do_update(index_elements=["kind", "key"],
                                                    set_={"body": body}))

    def pool(self) -> RewardPool:
        raw = self._get("pool", POOL_KEY)
        return RewardPool() if raw is None else _from_json(RewardPool, raw)

    def save_pool(self, pool: RewardPool) -> None:
        self._put("pool", POOL_KEY, pool)

    def stake(self, owner: str) -> StakeAccount | None:
        raw = self._get("stake", owner)
        return None if raw is None else _from_json(StakeAccount, raw)

    def save_stake(self, account: StakeAccount) -> None:
        self._put("stake", account.owner, account)

    def reputation(self, node: str) -> NodeReputation:
        raw = self._get("reputation", node)
        return NodeReputation() if raw is None else _from_json(NodeReputation, raw)

    def save_reputation(self, node: str, rep: NodeReputation) -> None:
        self._put("reputation", node, rep)

    def offences(self, node: str) -> OffenceHistory:
        raw = self._get("offences", node)
        return OffenceHistory() if raw is None else _from_json(OffenceHistory, raw)

    def save_offences(self, node: str, history: OffenceHistory) -> None:
        self._put("offences", node, history)

    def last_epoch(self) -> int:
        """The last emission epoch applied (-1 before the first)."""
        raw = self._get("epoch", "last")
        return -1 if raw is None else int(json.loads(raw))

    def set_last_epoch(self, epoch: int) -> None:
        body = json.dumps(epoch)
        ins = _insert(self.conn, t.protocol_state).values(kind="epoch", key="last", body=body)
        self.conn.execute(ins.on_conflict_do_update(index_elements=["kind", "key"],
                                                    set_={"body": body}))
