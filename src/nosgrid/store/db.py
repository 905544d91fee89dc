"""Opening the database (SQLite in WAL mode by default) and the unit of work.

A :class:`UnitOfWork` is one database transaction for one use case: everything it
writes commits together or not at all. It also collects the domain events the use case
publishes and runs their handlers (a :class:`Handlers` registry, built once by the
coordinator's composition root): the money-moving ones inside the transaction, the
notifying ones after it committed. On SQLite a writing unit of work starts with
``BEGIN IMMEDIATE``, so two writers queue on the database lock instead of both reading
the ledger head and then failing to upgrade; on PostgreSQL the ``ledger_head`` row lock
does the same job.

>>> store = Store.open("sqlite://")          # in-memory, for examples
>>> with store.uow() as uow:
...     uow.ledger.balance("alloc:community") > 0
True
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.pool import StaticPool

from nosgrid.core.events import Event
from nosgrid.core.ledger import default_allocations, genesis_entry
from nosgrid.store.economics import EconomicsRepo
from nosgrid.store.pricing import PricingRepo
from nosgrid.store.repositories import (
    BlobRepo,
    IdempotencyRepo,
    JobRepo,
    LedgerRepo,
    LogRepo,
    MarketRepo,
    NodeRepo,
    NonceRepo,
)
from nosgrid.store.verification import VerificationRepo

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"


def database_url(path_or_url: str | Path) -> str:
    """Accept a file path or an SQLAlchemy URL."""
    text = str(path_or_url)
    if "://" in text:
        return text
    Path(text).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(text).expanduser().resolve()}"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _sqlite_begin)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    write = conn.get_execution_options().get("nosgrid_write", True)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with nosgrid's SQLite settings applied."""
    if url.startswith("sqlite"):
        memory = url in ("sqlite://", "sqlite:///:memory:")
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
        if memory:
            kwargs["poolclass"] = StaticPool
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        conn.commit()


@dataclass
class Piggyback:
    """A small write that rides along in the request's next writing unit of work.

    The coordinator records each signed request's nonce this way: in the same transaction
    as the request's own changes, instead of a commit of its own. ``stored`` turns true
    when that transaction commits; if it never does, the caller writes it separately. A
    ``write`` that raises (the nonce is in the database already: a replay through another
    coordinator process) aborts the unit of work before anything else is written.
    """

    write: Callable[[Connection], object]
    stored: bool = False


#: the piggyback of the request being handled (set by the coordinator's auth)
PIGGYBACK: ContextVar[Piggyback | None] = ContextVar("nosgrid_piggyback", default=None)

E = TypeVar("E", bound=Event)
#: runs inside the publishing transaction (it may write, move money, publish more)
InTransaction = Callable[["UnitOfWork", Any], None]
#: runs once the transaction committed (notify; it must not write to the database)
AfterCommit = Callable[[Any], None]


class Handlers:
    """Which functions run for each event type, in the order they were registered.

    Dispatch is by the event's exact type, so the registry reads as a table: for
    ``JobSettled``, these handlers. Built once in ``coordinator/bootstrap.py``.

    >>> from nosgrid.core.events import JobAssigned
    >>> h, seen = Handlers(), []
    >>> h.after(JobAssigned, lambda ev: seen.append(ev.node))
    >>> h.after_commit(JobAssigned(at=0, job_id="j", node="n1"))
    >>> seen
    ['n1']
    """

    def __init__(self) -> None:
        self._in: dict[type[Event], list[InTransaction]] = defaultdict(list)
        self._after: dict[type[Event], list[AfterCommit]] = defaultdict(list)

    def on(self, event_type: type[E], handler: Callable[[UnitOfWork, E], None]) -> None:
        """Run ``handler(uow, event)`` inside the transaction that publishes ``event_type``."""
        self._in[event_type].append(handler)

    def after(self, event_type: type[E], handler: Callable[[E], None]) -> None:
        """Run ``handler(event)`` after the transaction that published it committed."""
        self._after[event_type].append(handler)

    def in_transaction(self, uow: UnitOfWork, event: Event) -> None:
        for handler in self._in.get(type(event), ()):
            handler(uow, event)

    def after_commit(self, event: Event) -> None:
        for handler in self._after.get(type(event), ()):
            try:
                handler(event)
            except Exception:  # the change is committed; a failed notification must not undo it
                log.exception("after-commit handler failed", extra={"event": event.name})

    def table(self) -> dict[str, dict[str, list[str]]]:
        """Event name → handler names, inside and after the transaction (for docs, tests)."""
        names = {t.__name__ for t in (*self._in, *self._after)}
        by_name = {t.__name__: t for t in (*self._in, *self._after)}
        return {n: {"in_transaction": [_name(h) for h in self._in.get(by_name[n], ())],
                    "after_commit": [_name(h) for h in self._after.get(by_name[n], ())]}
                for n in sorted(names)}


def _name(handler: Callable[..., Any]) -> str:
    owner = getattr(handler, "__self__", None)
    qual = getattr(handler, "__qualname__", repr(handler))
    if owner is not None and "." not in qual:
        qual = f"{type(owner).__name__}.{qual}"
    return f"{getattr(handler, '__module__', '')}.{qual}".lstrip(".")


class SettlementChecks(Protocol):
    """What a use case asks the settlement backend before it spends a key's money (the
    backend also handles the money events; ``local`` checks nothing)."""

    def check_post(self, uow: UnitOfWork, client: str, deposit: int) -> None:
        """Raise a typed error if ``client`` cannot fund ``deposit``."""
        ...

    def check_stake(self, uow: UnitOfWork, owner: str, amount: int) -> None:
        """Raise a typed error if ``owner`` cannot fund a stake (or top-up) of ``amount``."""
        ...


class NoChecks:
    """Local settlement: the ledger itself refuses what a wallet cannot pay."""

    def check_post(self, uow: UnitOfWork, client: str, deposit: int) -> None:
        return None

    def check_stake(self, uow: UnitOfWork, owner: str, amount: int) -> None:
        return None


class UnitOfWork:
    """One transaction. Use as a context manager and call :meth:`commit` at the end."""

    def __init__(self, engine: Engine, *, write: bool = True, handlers: Handlers | None = None,
                 settlement: SettlementChecks | None = None) -> None:
        self._engine = engine
        self._write = write
        self._committed = False
        self._handlers = handlers or Handlers()
        self.settlement: SettlementChecks = settlement or NoChecks()
        #: every event published in this transaction, in order
        self.events: list[Event] = []

    def __enter__(self) -> UnitOfWork:
        self.conn = self._engine.connect().execution_options(nosgrid_write=self._write)
        self._tx = self.conn.begin()
        self._piggyback = PIGGYBACK.get() if self._write else None
        if self._piggyback is not None and not self._piggyback.stored:
            try:
                self._piggyback.write(self.conn)
            except BaseException:
                self._tx.rollback()
                self.conn.close()
                raise
        self.ledger = LedgerRepo(self.conn)
        self.jobs = JobRepo(self.conn)
        self.markets = MarketRepo(self.conn)
        self.nodes = NodeRepo(self.conn)
        self.nonces = NonceRepo(self.conn)
        self.blobs = BlobRepo(self.conn)
        self.logs = LogRepo(self.conn)
        self.economics = EconomicsRepo(self.conn)
        self.verification = VerificationRepo(self.conn)
        self.pricing = PricingRepo(self.conn)
        self.idempotency = IdempotencyRepo(self.conn)
        return self

    def publish(self, *events: Event) -> None:
        """Record events of this transaction and run their in-transaction handlers now.

        A handler that raises aborts the use case: the transaction is rolled back and no
        after-commit handler runs.
        """
        for ev in events:
            self.events.append(ev)
            self._handlers.in_transaction(self, ev)

    def commit(self) -> None:
        self._tx.commit()
        self._committed = True
        if self._piggyback is not None:
            self._piggyback.stored = True
        published, self.events = self.events, []
        for ev in published:
            self._handlers.after_commit(ev)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self._committed and self._tx.is_active:
                self._tx.rollback()
        finally:
            self.conn.close()


class Store:
    """The database: engine, migrations, genesis, and units of work."""

    def __init__(self, engine: Engine, *, handlers: Handlers | None = None,
                 settlement: SettlementChecks | None = None) -> None:
        self.engine = engine
        #: set once by the composition root (``coordinator/bootstrap.py``)
        self.handlers = handlers or Handlers()
        self.settlement: SettlementChecks = settlement or NoChecks()

    @classmethod
    def open(cls, path_or_url: str | Path, *, now: Callable[[], float] = time.time) -> Store:
        """Open (creating and migrating if needed) and make sure genesis has run."""
        engine = make_engine(database_url(path_or_url))
        migrate(engine)
        store = cls(engine)
        store.ensure_genesis(int(now()))
        return store

    def uow(self, *, write: bool = True) -> UnitOfWork:
        return UnitOfWork(self.engine, write=write, handlers=self.handlers,
                          settlement=self.settlement)

    def ensure_genesis(self, at: int) -> None:
        with self.uow() as uow:
            if uow.ledger.head() is None:
                uow.ledger.append_entry(genesis_entry(default_allocations(), at=at))
                uow.commit()

    def table_names(self) -> list[str]:
        return sorted(inspect(self.engine).get_table_names())

    def close(self) -> None:
        self.engine.dispose()
