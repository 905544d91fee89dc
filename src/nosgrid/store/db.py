"""Opening the database (SQLite in WAL mode by default) and the unit of work.

A :class:`UnitOfWork` is one database transaction for one use case: everything it
writes commits together or not at all. On SQLite a writing unit of work starts with
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
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.pool import StaticPool

from nosgrid.core.ledger import default_allocations, genesis_entry
from nosgrid.store.economics import EconomicsRepo
from nosgrid.store.repositories import (
    BlobRepo,
    JobRepo,
    LedgerRepo,
    LogRepo,
    MarketRepo,
    NodeRepo,
    NonceRepo,
)

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
    when that transaction commits; if it never does, the caller writes it separately.
    """

    write: Callable[[Connection], object]
    stored: bool = False


#: the piggyback of the request being handled (set by the coordinator's auth)
PIGGYBACK: ContextVar[Piggyback | None] = ContextVar("nosgrid_piggyback", default=None)


class UnitOfWork:
    """One transaction. Use as a context manager and call :meth:`commit` at the end."""

    def __init__(self, engine: Engine, *, write: bool = True) -> None:
        self._engine = engine
        self._write = write
        self._committed = False

    def __enter__(self) -> UnitOfWork:
        self.conn = self._engine.connect().execution_options(nosgrid_write=self._write)
        self._tx = self.conn.begin()
        self._piggyback = PIGGYBACK.get() if self._write else None
        if self._piggyback is not None and not self._piggyback.stored:
            self._piggyback.write(self.conn)
        self.ledger = LedgerRepo(self.conn)
        self.jobs = JobRepo(self.conn)
        self.markets = MarketRepo(self.conn)
        self.nodes = NodeRepo(self.conn)
        self.nonces = NonceRepo(self.conn)
        self.blobs = BlobRepo(self.conn)
        self.logs = LogRepo(self.conn)
        self.economics = EconomicsRepo(self.conn)
        return self

    def commit(self) -> None:
        self._tx.commit()
        self._committed = True
        if self._piggyback is not None:
            self._piggyback.stored = True

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

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, path_or_url: str | Path, *, now: Callable[[], float] = time.time) -> Store:
        """Open (creating and migrating if needed) and make sure genesis has run."""
        engine = make_engine(database_url(path_or_url))
        migrate(engine)
        store = cls(engine)
        store.ensure_genesis(int(now()))
        return store

    def uow(self, *, write: bool = True) -> UnitOfWork:
        return UnitOfWork(self.engine, write=write)

    def ensure_genesis(self, at: int) -> None:
        with self.uow() as uow:
            if uow.ledger.head() is None:
                uow.ledger.append_entry(genesis_entry(default_allocations(), at=at))
                uow.commit()

    def table_names(self) -> list[str]:
        return sorted(inspect(self.engine).get_table_names())

    def close(self) -> None:
        self.engine.dispose()
