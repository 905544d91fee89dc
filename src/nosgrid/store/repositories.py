"""Repositories: load and save the rules' plain objects; no business rules here."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from nosgrid.core.errors import (
    AlreadyExists,
    InsufficientFunds,
    InvalidInput,
    JobNotFound,
    LedgerCorrupt,
    MarketNotFound,
    NodeNotFound,
)
from nosgrid.core.jobs.queueing import CLIENT_RECORD_WINDOW, queue_at
from nosgrid.core.jobs.state import DELIVERED_WORK, Job, JobState, Outcome
from nosgrid.core.jobs.terms import from_json as terms_from_json
from nosgrid.core.jobs.terms import to_json as terms_json
from nosgrid.core.ledger import (
    GENESIS,
    JournalEntry,
    Posting,
    balance_deltas,
    make_entry,
)
from nosgrid.core.markets import HardwareReport, MarketParams
from nosgrid.core.money import format_nos
from nosgrid.store import tables as t

# The ledger's hot path as prepared statements: built once, so SQLAlchemy compiles and
# caches them once. The SQL is the same on SQLite (3.35+) and PostgreSQL.
_LOCK_HEAD = text("UPDATE ledger_head SET seq = seq WHERE id = 1 RETURNING seq, hash")
_DEBIT = text("UPDATE accounts SET balance = balance + :delta "
              "WHERE name = :name AND balance + :delta >= 0")
_CREDIT = text("INSERT INTO accounts (name, balance) VALUES (:name, :delta) "
               "ON CONFLICT (name) DO UPDATE SET balance = accounts.balance + excluded.balance")
_INSERT_JOURNAL = text("INSERT INTO journal (seq, hash, prev_hash, kind, ref, at, meta) "
                       "VALUES (:seq, :hash, :prev_hash, :kind, :ref, :at, :meta)")
_INSERT_POSTING = text("INSERT INTO postings (entry_seq, idx, src, dst, amount) "
                       "VALUES (:entry_seq, :idx, :src, :dst, :amount)")
_SET_HEAD = text("INSERT INTO ledger_head (id, seq, hash) VALUES (1, :seq, :hash) "
                 "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash")


def _insert(conn: Connection, table: Any) -> Any:
    """A dialect-specific INSERT that supports ON CONFLICT."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def upsert(conn: Connection, table: Any, values: dict[str, Any], keys: Sequence[str]) -> Any:
    """``INSERT … ON CONFLICT (keys) DO UPDATE`` the other columns (SQLite and PostgreSQL)."""
    changes = {k: v for k, v in values.items() if k not in keys}
    return _insert(conn, table).values(**values).on_conflict_do_update(
        index_elements=list(keys), set_=changes)


class LedgerRepo:
    """Balances and the hash-chained journal."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        #: the entry this unit of work appended last (evidence for slashes)
        self.last_entry: JournalEntry | None = None

    def head(self) -> tuple[int, str] | None:
        row = self.conn.execute(select(t.ledger_head.c.seq, t.ledger_head.c.hash)).first()
        return None if row is None else (int(row.seq), str(row.hash))

    def balance(self, account: str) -> int:
        value = self.conn.execute(
            select(t.accounts.c.balance).where(t.accounts.c.name == account)
        ).scalar()
        return int(value or 0)

    def balances(self, prefix: str | None = None) -> dict[str, int]:
        query = select(t.accounts.c.name, t.accounts.c.balance)
        if prefix:
            query = query.where(t.accounts.c.name.startswith(prefix, autoescape=True))
        return {r.name: int(r.balance) for r in self.conn.execute(query)}

    def append(
        self,
        kind: str,
        ref: str,
        at: int,
        postings: Sequence[Posting],
        meta: dict[str, Any] | None = None,
    ) -> JournalEntry:
        """Apply ``postings`` as the next journal entry, or raise and change nothing.

        Debits are conditional updates (``balance + delta >= 0``), so two writers can never
        both spend the same balance; the head row update serialises the hash chain.
        """
        head = self.conn.execute(_LOCK_HEAD).first()
        if head is None:
            raise LedgerCorrupt("the ledger has no genesis entry; open the store with Store.open")
        entry = make_entry(seq=int(head.seq) + 1, prev_hash=str(head.hash), kind=kind, ref=ref,
                           at=at, postings=postings, meta=meta)
        self.append_entry(entry)
        self.last_entry = entry
        return entry

    def append_entry(self, entry: JournalEntry) -> None:
        """Write a prepared entry: balances, journal row, postings, head."""
        self._apply(entry.postings)
        self.conn.execute(_INSERT_JOURNAL, {
            "seq": entry.seq, "hash": entry.hash, "prev_hash": entry.prev_hash,
            "kind": entry.kind, "ref": entry.ref, "at": entry.at,
            "meta": json.dumps(dict(entry.meta), sort_keys=True, separators=(",", ":")),
        })
        if entry.postings:
            self.conn.execute(_INSERT_POSTING, [
                {"entry_seq": entry.seq, "idx": i, "src": p.src, "dst": p.dst, "amount": p.amount}
                for i, p in enumerate(entry.postings)
            ])
        self.conn.execute(_SET_HEAD, {"seq": entry.seq, "hash": entry.hash})

    def _apply(self, postings: Iterable[Posting]) -> None:
        for account, delta in sorted(balance_deltas(postings).items()):
            if delta == 0:
                continue
            if delta < 0 and account != GENESIS:
                res = self.conn.execute(_DEBIT, {"name": account, "delta": delta})
                if res.rowcount != 1:
                    have = self.balance(account)
                    raise InsufficientFunds(
                        f"{account} has {format_nos(have)} NOS but {format_nos(-delta)} NOS "
                        "is needed",
                        account=account, balance=have, needed=-delta,
                    )
                continue
            self.conn.execute(_CREDIT, {"name": account, "delta": delta})

    def entries(self, from_seq: int = 0, limit: int | None = None) -> list[JournalEntry]:
        query = select(t.journal).where(t.journal.c.seq >= from_seq).order_by(t.journal.c.seq)
        if limit is not None:
            query = query.limit(limit)
        rows = list(self.conn.execute(query))
        if not rows:
            return []
        lo, hi = rows[0].seq, rows[-1].seq
        by_seq: dict[int, list[Posting]] = {}
        for p in self.conn.execute(
            select(t.postings)
            .where(t.postings.c.entry_seq.between(lo, hi))
            .order_by(t.postings.c.entry_seq, t.postings.c.idx)
        ):
            by_seq.setdefault(int(p.entry_seq), []).append(
                _raw_posting(str(p.src), str(p.dst), int(p.amount))
            )
        return [
            JournalEntry(
                seq=int(r.seq), kind=str(r.kind), ref=str(r.ref), at=int(r.at),
                postings=tuple(by_seq.get(int(r.seq), [])), prev_hash=str(r.prev_hash),
                hash=str(r.hash), meta=json.loads(r.meta),
            )
            for r in rows
        ]

    def account_journal(
        self, account: str, *, limit: int = 50, before_seq: int | None = None,
        also: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Postings touching ``account`` (or ``also``), newest first, with the entry's kind.

        ``delta`` is the change to ``account`` and the ``also`` accounts taken together
        (a transfer between two of them shows as 0).
        """
        mine = [account, *also]
        query = (
            select(t.postings, t.journal.c.kind, t.journal.c.ref, t.journal.c.at,
                   t.journal.c.hash)
            .join(t.journal, t.journal.c.seq == t.postings.c.entry_seq)
            .where(or_(t.postings.c.src.in_(mine), t.postings.c.dst.in_(mine)))
            .order_by(t.postings.c.entry_seq.desc(), t.postings.c.idx.desc())
            .limit(limit)
        )
        if before_seq is not None:
            query = query.where(t.postings.c.entry_seq < before_seq)
        return [
            {
                "seq": int(r.entry_seq), "kind": r.kind, "ref": r.ref, "at": int(r.at),
                "src": r.src, "dst": r.dst, "amount": int(r.amount),
                "delta": (int(r.amount) if r.dst in mine else 0)
                - (int(r.amount) if r.src in mine else 0),
                "entry_hash": r.hash,
            }
            for r in self.conn.execute(query)
        ]

    def count_since(self, kind: str, ref: str, since: int) -> int:
        return int(
            self.conn.execute(
                select(func.count()).select_from(t.journal).where(
                    t.journal.c.kind == kind, t.journal.c.ref == ref, t.journal.c.at >= since
                )
            ).scalar() or 0
        )


def _raw_posting(src: str, dst: str, amount: int) -> Posting:
    """Rebuild a stored posting without re-validating it, so verify can report bad rows."""
    p = object.__new__(Posting)
    object.__setattr__(p, "src", src)
    object.__setattr__(p, "dst", dst)
    object.__setattr__(p, "amount", amount)
    return p


_JOB_FIELDS = (
    "id", "client", "market", "spec_hash", "timeout", "deposit", "price_per_second", "fee_bps",
    "stakers_share_bps", "node", "created_at", "assigned_at", "started_at", "finished_at",
    "seconds_used", "fault", "reason", "attempts",
)


# Built once so SQLAlchemy compiles them once: saving a job is on every transition.
_JOB_COLUMNS = (*_JOB_FIELDS, "state", "result", "outcome", "terms")
_SAVE_JOB = update(t.jobs).where(t.jobs.c.id == bindparam("b_id")).values(
    {name: bindparam(f"b_{name}") for name in _JOB_COLUMNS if name != "id"})
_GET_JOB = select(t.jobs).where(t.jobs.c.id == bindparam("job_id"))
_OLDEST_QUEUED = (select(t.jobs)
                  .where(t.jobs.c.state == JobState.QUEUED.value,
                         t.jobs.c.market.in_(bindparam("markets", expanding=True)))
                  .order_by(t.jobs.c.queue_at, t.jobs.c.rowid_).limit(1))
_QUEUED_OF_CLIENT = (select(func.count()).select_from(t.jobs)
                     .where(t.jobs.c.client == bindparam("client"),
                            t.jobs.c.state == JobState.QUEUED.value))
_NODE_JOBS = (select(t.jobs)
              .where(t.jobs.c.state.in_(bindparam("states", expanding=True)),
                     t.jobs.c.node == bindparam("node"))
              .order_by(t.jobs.c.rowid_).limit(bindparam("limit")))
_JOBS_IN = (select(t.jobs)
            .where(t.jobs.c.state.in_(bindparam("states", expanding=True)))
            .order_by(t.jobs.c.rowid_).limit(bindparam("limit")))
_USE_NONCE = text("INSERT INTO nonces (pubkey, nonce, at) VALUES (:pubkey, :nonce, :at) "
                  "ON CONFLICT (pubkey, nonce) DO NOTHING")
_GET_SPEC = select(t.specs.c.body).where(t.specs.c.hash == bindparam("hash"))
_PUT_SPEC = text("INSERT INTO specs (hash, body) VALUES (:hash, :body) "
                 "ON CONFLICT (hash) DO NOTHING")
_FIND_MARKET = select(t.markets.c.params).where(t.markets.c.name == bindparam("name"))
_GET_NODE = select(t.nodes).where(t.nodes.c.id == bindparam("node_id"))
#: markets never change once created: parse each stored JSON once per process
_MARKET_CACHE: dict[str, MarketParams] = {}


def _market(raw: str) -> MarketParams:
    market = _MARKET_CACHE.get(raw)
    if market is None:
        market = _MARKET_CACHE[raw] = MarketParams.model_validate_json(raw)
    return market


def _job_row(job: Job) -> dict[str, Any]:
    row = {f: getattr(job, f) for f in _JOB_FIELDS}
    row["state"] = job.state.value
    row["result"] = json.dumps(dict(job.result), sort_keys=True)
    row["outcome"] = None if job.outcome is None else job.outcome.value
    if job.terms is None:
        raise InvalidInput(f"job {job.id} has no terms; post it with core.jobs.state.post")
    row["terms"] = terms_json(job.terms)
    return row


def _job_from_row(r: Any) -> Job:
    values = {f: getattr(r, f) for f in _JOB_FIELDS}
    return Job(state=JobState(r.state), result=json.loads(r.result),
               outcome=None if r.outcome is None else Outcome(r.outcome),
               terms=terms_from_json(r.terms), **values)


class JobRepo:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, job: Job) -> None:
        head_start = job.terms.head_start if job.terms is not None else 0
        self.conn.execute(t.jobs.insert(), {**_job_row(job),
                                            "queue_at": queue_at(job.created_at, head_start)})

    def queued_of(self, client: str) -> int:
        """How many of ``client``'s jobs wait in a queue now."""
        return int(self.conn.execute(_QUEUED_OF_CLIENT, {"client": client}).scalar() or 0)

    def client_record(self, client: str, window: int = CLIENT_RECORD_WINDOW) -> tuple[int, int]:
        """(ran to the end, cancelled) among ``client``'s last ``window`` settled jobs."""
        recent = (select(t.jobs.c.outcome).where(t.jobs.c.client == client,
                                                 t.jobs.c.state == JobState.SETTLED.value)
                  .order_by(t.jobs.c.rowid_.desc()).limit(window).subquery())
        rows = self.conn.execute(select(recent.c.outcome, func.count())
                                 .group_by(recent.c.outcome)).all()
        counts = {str(o): int(n) for o, n in rows}
        ran = sum(counts.get(o.value, 0) for o in (Outcome.COMPLETED, Outcome.SPEC_FAILED,
                                                    Outcome.TIMED_OUT))
        return ran, counts.get(Outcome.CANCELLED.value, 0)

    def save(self, job: Job) -> None:
        self.conn.execute(_SAVE_JOB, {f"b_{k}": v for k, v in _job_row(job).items()})

    def get(self, job_id: str) -> Job:
        row = self.conn.execute(_GET_JOB, {"job_id": job_id}).first()
        if row is None:
            raise JobNotFound(f"no job {job_id!r}; `nosgrid job list` shows yours")
        return _job_from_row(row)

    def list_for_client(
        self, client: str, *, limit: int = 20, cursor: int | None = None,
        hide_runs: bool = False,
    ) -> tuple[list[Job], int | None]:
        """A page of the client's jobs, newest first, and the cursor of the next page.

        ``hide_runs``: leave out the verification runs (audits, replicas, tiebreaks) the
        coordinator posts for the client's jobs.
        """
        query = select(t.jobs).where(t.jobs.c.client == client)
        if hide_runs:
            runs = t.verification_runs
            query = query.where(~select(runs.c.job_id).where(
                runs.c.job_id == t.jobs.c.id).exists())
        if cursor is not None:
            query = query.where(t.jobs.c.rowid_ < cursor)
        rows = list(self.conn.execute(query.order_by(t.jobs.c.rowid_.desc()).limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        return [_job_from_row(r) for r in rows], (int(rows[-1].rowid_) if more else None)

    def oldest_queued(self, markets: Sequence[str]) -> Job | None:
        row = self.conn.execute(_OLDEST_QUEUED, {"markets": list(markets)}).first()
        return None if row is None else _job_from_row(row)

    def in_states(self, states: Iterable[JobState], *, node: str | None = None,
                  limit: int = 1000) -> list[Job]:
        params = {"states": [s.value for s in states], "limit": limit}
        if node is not None:
            rows = self.conn.execute(_NODE_JOBS, {**params, "node": node})
        else:
            rows = self.conn.execute(_JOBS_IN, params)
        return [_job_from_row(r) for r in rows]

    def compute_seconds(self, start: int, end: int) -> dict[str, int]:
        """Seconds of delivered work per node (settled jobs whose outcome is
        ``completed``), for jobs finished in [start, end)."""
        rows = self.conn.execute(
            select(t.jobs.c.node, func.sum(t.jobs.c.seconds_used))
            .where(t.jobs.c.state == JobState.SETTLED.value,
                   t.jobs.c.outcome.in_([o.value for o in DELIVERED_WORK]),
                   t.jobs.c.node.is_not(None),
                   t.jobs.c.finished_at >= start, t.jobs.c.finished_at < end)
            .group_by(t.jobs.c.node)
        )
        return {str(node): int(secs) for node, secs in rows if secs}

    def total_seconds(self) -> int:
        """Compute seconds billed over every job."""
        return int(self.conn.execute(select(func.sum(t.jobs.c.seconds_used))).scalar() or 0)

    def count_by_state(self) -> dict[str, int]:
        rows = self.conn.execute(select(t.jobs.c.state, func.count()).group_by(t.jobs.c.state))
        return {str(state): int(n) for state, n in rows}

    def put_spec(self, spec_hash: str, body: str) -> None:
        self.conn.execute(_PUT_SPEC, {"hash": spec_hash, "body": body})

    def spec(self, spec_hash: str) -> str | None:
        value = self.conn.execute(_GET_SPEC, {"hash": spec_hash}).scalar()
        return None if value is None else str(value)


class MarketRepo:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, market: MarketParams, at: int) -> None:
        if self.find(market.name) is not None:
            raise AlreadyExists(f"market {market.name!r} already exists")
        self.conn.execute(t.markets.insert().values(
            name=market.name, params=market.model_dump_json(), created_at=at))

    def find(self, name: str) -> MarketParams | None:
        raw = self.conn.execute(_FIND_MARKET, {"name": name}).scalar()
        return None if raw is None else _market(str(raw))

    def get(self, name: str) -> MarketParams:
        market = self.find(name)
        if market is None:
            raise MarketNotFound(f"no market {name!r}; `nosgrid market list` shows the markets")
        return market

    def all(self) -> list[MarketParams]:
        rows = self.conn.execute(select(t.markets.c.params).order_by(t.markets.c.name))
        return [_market(r.params) for r in rows]

    def names(self) -> list[str]:
        return [str(n) for n in self.conn.execute(
            select(t.markets.c.name).order_by(t.markets.c.name)).scalars()]


class NodeRepo:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def upsert(self, node_id: str, hardware: HardwareReport, pinned: Sequence[str] | None,
               at: float) -> None:
        """Record a registration: the hardware report and the operator's pins (None: any
        market). The markets it serves are the service's to set (:meth:`set_markets`)."""
        values = {"hardware": hardware.model_dump_json(),
                  "pinned_markets": None if pinned is None else json.dumps(list(pinned)),
                  "status": "online", "last_heartbeat": at}
        ins = _insert(self.conn, t.nodes).values(id=node_id, registered_at=int(at),
                                                 markets="[]", **values)
        self.conn.execute(ins.on_conflict_do_update(index_elements=["id"], set_=values))

    def set_markets(self, node_id: str, markets: Sequence[str]) -> None:
        self.set(node_id, markets=json.dumps(list(markets)))

    def ids(self) -> list[str]:
        return [r.id for r in self.conn.execute(select(t.nodes.c.id).order_by(t.nodes.c.id))]

    def of_operator(self, operator: str) -> list[str]:
        """The nodes ``operator`` vouched for."""
        return [str(r.id) for r in self.conn.execute(
            select(t.nodes.c.id).where(t.nodes.c.operator == operator))]

    def exists(self, node_id: str) -> bool:
        return self.conn.execute(select(t.nodes.c.id).where(t.nodes.c.id == node_id)
                                 ).first() is not None

    def get(self, node_id: str) -> dict[str, Any]:
        row = self.conn.execute(_GET_NODE, {"node_id": node_id}).first()
        if row is None:
            raise NodeNotFound(f"node {node_id} is not registered; start it with "
                               "`nosgrid node start`")
        return _node_from_row(row)

    def set(self, node_id: str, **values: Any) -> None:
        self.conn.execute(update(t.nodes).where(t.nodes.c.id == node_id).values(**values))

    def stale(self, before: float) -> list[str]:
        rows = self.conn.execute(select(t.nodes.c.id).where(
            t.nodes.c.status == "online", t.nodes.c.last_heartbeat < before))
        return [r.id for r in rows]

    def waiting(self, market: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(select(t.nodes).where(
            t.nodes.c.status == "online", t.nodes.c.waiting_since.is_not(None)))
        return [
            {"id": r.id, "waiting_since": r.waiting_since}
            for r in rows if market in json.loads(r.markets)
        ]

    def all(self) -> list[dict[str, Any]]:
        """Every node, by id, in one query (the market and node pages list 1,000s)."""
        return [_node_from_row(r) for r in self.conn.execute(
            select(t.nodes).order_by(t.nodes.c.id))]


def _node_from_row(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "hardware": HardwareReport.model_validate_json(row.hardware),
        "markets": json.loads(row.markets), "status": row.status,
        "registered_at": row.registered_at, "last_heartbeat": row.last_heartbeat,
        "waiting_since": row.waiting_since,
        "pinned_markets": None if row.pinned_markets is None
        else json.loads(row.pinned_markets),
    }


class NonceRepo:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def use(self, pubkey: str, nonce: str, at: float) -> bool:
        """Record a nonce; False if this key used it before (a replay)."""
        res = self.conn.execute(_USE_NONCE, {"pubkey": pubkey, "nonce": nonce, "at": at})
        return res.rowcount == 1

    def forget_before(self, at: float) -> None:
        self.conn.execute(delete(t.nonces).where(t.nonces.c.at < at))

    def recent(self, since: float) -> dict[tuple[str, str], float]:
        rows = self.conn.execute(select(t.nonces).where(t.nonces.c.at >= since))
        return {(r.pubkey, r.nonce): float(r.at) for r in rows}


class BlobRepo:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, sha256: str, size: int, owner: str, at: int) -> None:
        ins = _insert(self.conn, t.blobs).values(sha256=sha256, size=size, owner=owner,
                                                 created_at=at)
        self.conn.execute(ins.on_conflict_do_nothing(index_elements=["sha256"]))

    def exists(self, sha256: str) -> bool:
        row = self.conn.execute(select(t.blobs.c.size).where(t.blobs.c.sha256 == sha256))
        return row.first() is not None

    def grant(self, sha256: str, pubkey: str) -> None:
        ins = _insert(self.conn, t.blob_grants).values(sha256=sha256, pubkey=pubkey)
        self.conn.execute(ins.on_conflict_do_nothing(index_elements=["sha256", "pubkey"]))

    def may_read(self, sha256: str, pubkey: str) -> bool:
        row = self.conn.execute(select(t.blob_grants.c.sha256).where(
            t.blob_grants.c.sha256 == sha256, t.blob_grants.c.pubkey == pubkey))
        return row.first() is not None


class LogRepo:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def append(self, job_id: str, chunks: Sequence[tuple[str, float, bytes]]) -> int:
        last = self.conn.execute(
            select(func.max(t.job_logs.c.seq)).where(t.job_logs.c.job_id == job_id)
        ).scalar()
        seq = -1 if last is None else int(last)
        rows = []
        for stream, at, data in chunks:
            seq += 1
            rows.append({"job_id": job_id, "seq": seq, "stream": stream, "at": at,
                         "data": data})
        if rows:
            self.conn.execute(t.job_logs.insert(), rows)
        return seq + 1

    def read(self, job_id: str, after: int = -1, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            select(t.job_logs).where(and_(t.job_logs.c.job_id == job_id, t.job_logs.c.seq > after))
            .order_by(t.job_logs.c.seq).limit(limit)
        )
        return [{"seq": r.seq, "stream": r.stream, "at": r.at, "data": bytes(r.data)}
                for r in rows]

    def total_bytes(self, job_id: str) -> int:
        value = self.conn.execute(
            select(func.coalesce(func.sum(func.length(t.job_logs.c.data)), 0))
            .where(t.job_logs.c.job_id == job_id)
        ).scalar()
        return int(value or 0)


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """The first answer to a request sent with an ``Idempotency-Key``."""

    route: str
    body_sha256: str
    status: int
    response: str
    at: int


class IdempotencyRepo:
    """Answers kept per (owner, key) for the retention window (a day by default).

    In the database, so that every coordinator process (and a restarted one) returns the
    same first answer; written in the request's own transaction, so an answer is kept
    exactly when what it says happened.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def get(self, owner: str, key: str) -> IdempotencyRecord | None:
        c = t.idempotency_records.c
        row = self.conn.execute(select(c.route, c.body_sha256, c.status, c.response, c.at)
                                .where(c.owner == owner, c.key == key)).first()
        return None if row is None else IdempotencyRecord(str(row.route), str(row.body_sha256),
                                                          int(row.status), str(row.response),
                                                          int(row.at))

    def put(self, owner: str, key: str, record: IdempotencyRecord) -> bool:
        """Keep ``record``; False when another request with this key got there first."""
        ins = _insert(self.conn, t.idempotency_records).values(
            owner=owner, key=key, route=record.route, body_sha256=record.body_sha256,
            status=record.status, response=record.response, at=record.at)
        return bool(self.conn.execute(ins.on_conflict_do_nothing()).rowcount)

    def forget_before(self, at: int) -> int:
        return int(self.conn.execute(delete(t.idempotency_records)
                                     .where(t.idempotency_records.c.at < at)).rowcount or 0)
