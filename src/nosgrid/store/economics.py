"""Persistence of the economic rules' state objects as JSON rows in ``protocol_state``."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypeVar

from sqlalchemy import Connection, bindparam, select, text

from nosgrid.core.reputation import NodeReputation
from nosgrid.core.slashing import OffenceHistory
from nosgrid.core.staking import RewardPool, StakeAccount
from nosgrid.store import tables as t

S = TypeVar("S")
POOL_KEY = "stakers"
_GET = select(t.protocol_state.c.body).where(t.protocol_state.c.kind == bindparam("kind"),
                                             t.protocol_state.c.key == bindparam("key"))
_GET_FOR_UPDATE = _GET.with_for_update()
_GET_MANY = select(t.protocol_state.c.key, t.protocol_state.c.body).where(
    t.protocol_state.c.kind == bindparam("kind"),
    t.protocol_state.c.key.in_(bindparam("keys", expanding=True)))
_PUT = text("INSERT INTO protocol_state (kind, key, body) VALUES (:kind, :key, :body) "
            "ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body")


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
        query = _GET_FOR_UPDATE if self.conn.dialect.name == "postgresql" else _GET
        value = self.conn.execute(query, {"kind": kind, "key": key}).scalar()
        return None if value is None else str(value)

    def _put(self, kind: str, key: str, obj: Any) -> None:
        self.conn.execute(_PUT, {"kind": kind, "key": key, "body": _to_json(obj)})

    def _many(self, kind: str, keys: list[str]) -> dict[str, str]:
        """The bodies of ``kind`` rows for ``keys`` in one query (read only: no row lock)."""
        if not keys:
            return {}
        rows = self.conn.execute(_GET_MANY, {"kind": kind, "keys": keys})
        return {str(r.key): str(r.body) for r in rows}

    def standings(self, nodes: list[str]) -> dict[
            str, tuple[StakeAccount | None, NodeReputation, OffenceHistory]]:
        """Stake account, reputation and offence history of each node, in three queries
        (a page listing 1,000 nodes would otherwise make 3,000)."""
        stakes, reps = self._many("stake", nodes), self._many("reputation", nodes)
        offences = self._many("offences", nodes)
        return {n: (_from_json(StakeAccount, stakes[n]) if n in stakes else None,
                    _from_json(NodeReputation, reps[n]) if n in reps else NodeReputation(),
                    _from_json(OffenceHistory, offences[n]) if n in offences
                    else OffenceHistory()) for n in nodes}

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
        self.conn.execute(_PUT, {"kind": "epoch", "key": "last", "body": json.dumps(epoch)})
