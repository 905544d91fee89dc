"""Opening an SQLite database file for reading only: no migration, no genesis, no write.

`nosgrid ledger verify --db FILE` checks a file it must not change. :meth:`Store.open`
would migrate it and may write a genesis entry; :func:`open_readonly` only reads, and
refuses a file whose schema is not the newest instead of upgrading it.

SQLite and WAL (the coordinator's journal mode): a ``mode=ro`` connection to a WAL
database creates the ``-wal`` and ``-shm`` files when they are missing and leaves them
behind, and ``immutable=1`` ignores a ``-wal`` file, so it misses committed changes that
are not checkpointed yet. Hence two ways in:

- no ``-wal`` (nor ``-journal``) next to the file: every committed change is in the file
  itself. It is opened ``immutable=1`` (no locks, no side files). Should a coordinator
  start on it meanwhile, :meth:`ReadOnlyStore.check_unchanged` notices the file changed.
- a ``-wal`` is there (a coordinator runs, or one stopped without a checkpoint): it is
  opened ``mode=ro`` and reads through the ``-wal``, whose bytes it never changes; it
  shares the ``-shm`` wal-index (lock state, not data) with the other connections.

Either way the connection is ``query_only`` and starts plain (deferred) transactions, and
none of the pragmas that write (``journal_mode=WAL``) run. SQLite only: for PostgreSQL ask
a coordinator running on it (``nosgrid ledger verify --url URL``).

>>> open_readonly("/nonexistent/nosgrid.db")
Traceback (most recent call last):
...
nosgrid.core.errors.InvalidInput: there is no database file at /nonexistent/nosgrid.db
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from nosgrid.core.errors import InvalidInput, SchemaMismatch, Unavailable
from nosgrid.store.db import MIGRATIONS, Store, UnitOfWork

MIGRATE_HINT = ("run the migrations first: starting the coordinator on it migrates it "
                "(`nosgrid coordinator start --db {path}`, then stop it)")


@dataclass(frozen=True)
class FileStamp:
    """What changes when anything writes the file (compared after an ``immutable`` read)."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileStamp:
        st = path.stat()
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class ReadOnlyStore(Store):
    """A store that can only read: every unit of work is a read transaction."""

    def __init__(self, engine: Engine, *, path: Path, stamp: FileStamp | None) -> None:
        super().__init__(engine)
        self.path = path
        self._stamp = stamp

    def uow(self, *, write: bool = False) -> UnitOfWork:
        if write:
            raise InvalidInput(f"{self.path} is open read-only; it takes no writes")
        return super().uow(write=False)

    def check_unchanged(self) -> None:
        """Raise if the file changed since it was opened ``immutable`` (see the module doc).

        Call it after the reads whose result must be one consistent snapshot.
        """
        if self._stamp is None:  # opened through the -wal: SQLite's own locks keep reads whole
            return
        try:
            now = FileStamp.of(self.path)
        except OSError as exc:
            raise Unavailable(f"{self.path} went away while it was read: {exc}") from exc
        if now != self._stamp:
            raise Unavailable(f"{self.path} changed while it was read (did a coordinator "
                              "start on it?); run the check again")


def sqlite_file(path_or_url: str | Path) -> Path:
    """The file behind a path or an ``sqlite:///`` URL (no directory is created)."""
    text = str(path_or_url)
    if "://" in text:
        url = make_url(text)
        if url.get_backend_name() != "sqlite":
            raise InvalidInput(f"read-only opening works on SQLite files, not "
                               f"{url.get_backend_name()}; for PostgreSQL ask a coordinator "
                               "running on it (`nosgrid ledger verify --url URL`)")
        if not url.database or url.database == ":memory:":
            raise InvalidInput("an in-memory database has nothing to read; name a file")
        text = url.database
    return Path(text).expanduser().resolve()


def open_readonly(path_or_url: str | Path) -> ReadOnlyStore:
    """Open an SQLite file for reading only; raise if its schema is not the newest.

    Raises :class:`InvalidInput` for a missing file or one that is not an SQLite
    database, and :class:`SchemaMismatch` (with how to migrate) for an empty, older or
    newer schema.
    """
    path = sqlite_file(path_or_url)
    if not path.is_file():
        raise InvalidInput(f"there is no database file at {path}")
    side_files = [path.with_name(path.name + s) for s in ("-wal", "-journal")]
    immutable = not any(f.exists() for f in side_files)
    stamp = FileStamp.of(path) if immutable else None
    uri = path.as_uri() + ("?mode=ro&immutable=1" if immutable else "?mode=ro")

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA query_only=ON")
        conn.execute("PRAGMA busy_timeout=30000")  # a checkpointing coordinator holds a lock
        return conn

    engine = create_engine("sqlite://", creator=connect, poolclass=NullPool)
    event.listen(engine, "begin", _begin_deferred)
    store = ReadOnlyStore(engine, path=path, stamp=stamp)
    try:
        _check_schema(store, path)
    except BaseException:
        store.close()
        raise
    return store


def _begin_deferred(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")  # never BEGIN IMMEDIATE: that takes the write lock


def _check_schema(store: ReadOnlyStore, path: Path) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(cfg)
    newest = set(script.get_heads())
    known = {rev.revision for rev in script.walk_revisions()}
    try:
        with store.uow() as uow:
            current = set(MigrationContext.configure(uow.conn).get_current_heads())
    except DBAPIError as exc:
        if isinstance(exc.orig, sqlite3.DatabaseError):
            raise InvalidInput(f"{path} is not a readable SQLite database: {exc.orig}") from exc
        raise
    hint = MIGRATE_HINT.format(path=path)
    if not current:
        raise SchemaMismatch(f"{path} has no nosgrid schema yet; {hint}",
                             path=str(path), revision=None, newest=sorted(newest))
    if current - known:
        raise SchemaMismatch(f"{path} has schema revision {', '.join(sorted(current))}, newer "
                             "than this nosgrid knows; upgrade nosgrid to read it",
                             path=str(path), revision=sorted(current), newest=sorted(newest))
    if current != newest:
        raise SchemaMismatch(f"{path} has schema revision {', '.join(sorted(current))}, older "
                             f"than the newest ({', '.join(sorted(newest))}); {hint}",
                             path=str(path), revision=sorted(current), newest=sorted(newest))
