"""`nosgrid ledger verify --db FILE` reads the file and never writes it (issue 13).

The CLI runs as a subprocess, as a user runs it, on files a real Store wrote: closed,
still open (a live coordinator's ``-wal``), or left by a process that died before its
checkpoint; and on files it must refuse (old schema, empty, not a database, missing).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy.exc import OperationalError

from nosgrid.coordinator.services import accounts
from nosgrid.core.errors import InvalidInput, SchemaMismatch, Unavailable
from nosgrid.store.db import MIGRATIONS, Store, database_url, make_engine
from nosgrid.store.readonly import open_readonly


def verify_cli(db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nosgrid.cli.main", "ledger", "verify", "--db", str(db)],
        capture_output=True, text=True, timeout=120, check=False,
    )


def snapshot(directory: Path) -> dict[str, str]:
    """Every file in ``directory`` → sha256 of its bytes (the -shm wal-index left out: it
    is SQLite's shared lock memory, which every reader updates)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.iterdir()) if not p.name.endswith("-shm")}


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def fund(store: Store, who: str, amount: int) -> None:
    with store.uow() as uow:
        accounts.faucet(uow, who, amount, 0, cap_per_hour=10**15)
        uow.commit()


@pytest.fixture
def written(tmp_path: Path) -> Path:
    """A database file a real Store wrote a few journal entries to, then closed."""
    db = tmp_path / "data" / "coordinator.db"
    store = Store.open(db)
    for i in range(3):
        fund(store, f"CLIENT{i}", 1_000_000 * (i + 1))
    store.close()
    return db


def test_verify_of_a_closed_database_changes_no_byte(written: Path) -> None:
    before, files = snapshot(written.parent), names(written.parent)
    assert files == ["coordinator.db"]  # the last connection checkpointed and removed -wal
    proc = verify_cli(written)
    assert proc.returncode == 0, proc.stderr
    assert "ledger ok: 4 entries" in proc.stdout
    assert names(written.parent) == files  # no -wal or -shm created (opened immutable)
    assert snapshot(written.parent) == before


def test_verify_while_a_coordinator_holds_the_database_reads_its_wal(written: Path) -> None:
    store = Store.open(written)
    try:
        fund(store, "LATE", 7_000_000)  # committed to the -wal, not checkpointed yet
        with store.uow(write=False) as uow:  # keep the connection (and the -wal) open
            assert uow.ledger.balance("wallet:LATE") == 7_000_000
            wal = written.with_name(written.name + "-wal")
            assert wal.stat().st_size > 0
            before, files = snapshot(written.parent), names(written.parent)
            proc = verify_cli(written)
            assert proc.returncode == 0, proc.stderr
            assert "ledger ok: 5 entries" in proc.stdout  # the entry in the -wal counts
            assert names(written.parent) == files
            assert snapshot(written.parent) == before  # the db and the -wal bytes included
    finally:
        store.close()


def test_verify_after_a_crash_reads_the_leftover_wal_and_leaves_it(written: Path) -> None:
    crash = textwrap.dedent(f"""
        import os
        from nosgrid.coordinator.services import accounts
        from nosgrid.store.db import Store
        store = Store.open({str(written)!r})
        with store.uow() as uow:
            accounts.faucet(uow, "CRASH", 3_000_000, 0, cap_per_hour=10**15)
            uow.commit()
        os._exit(0)  # no close, no checkpoint: the entry lives only in the -wal
    """)
    subprocess.run([sys.executable, "-c", crash], check=True, timeout=120)
    assert written.with_name(written.name + "-wal").stat().st_size > 0
    before, files = snapshot(written.parent), names(written.parent)
    proc = verify_cli(written)
    assert proc.returncode == 0, proc.stderr
    assert "ledger ok: 5 entries" in proc.stdout
    assert names(written.parent) == files
    assert snapshot(written.parent) == before  # no checkpoint into the file on close


def migrate_to(db: Path, revision: str) -> None:
    engine = make_engine(database_url(db))
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.commit()
    engine.dispose()


def test_an_old_schema_is_refused_with_how_to_migrate_and_left_as_it_was(
    tmp_path: Path,
) -> None:
    db = tmp_path / "old.db"
    migrate_to(db, "0004")
    before, files = snapshot(tmp_path), names(tmp_path)
    proc = verify_cli(db)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error [schema_mismatch]: ")
    assert "schema revision 0004, older than the newest" in proc.stderr
    assert "run the migrations first" in proc.stderr
    assert f"nosgrid coordinator start --db {db}" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert names(tmp_path) == files and snapshot(tmp_path) == before
    # the advice works: what the coordinator does on start (Store.open) makes it verifiable
    Store.open(db).close()
    assert verify_cli(db).returncode == 0


def test_files_that_are_no_nosgrid_database_get_one_clear_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    junk = tmp_path / "notes.txt"
    junk.write_text("not a database\n" * 20)
    before = snapshot(tmp_path)

    proc = verify_cli(empty)
    assert proc.returncode == 1 and "has no nosgrid schema yet" in proc.stderr
    assert "run the migrations first" in proc.stderr and "Traceback" not in proc.stderr
    proc = verify_cli(junk)
    assert proc.returncode == 1 and "is not a readable SQLite database" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = verify_cli(tmp_path / "missing.db")
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert snapshot(tmp_path) == before  # nothing created, the empty file stayed empty


def test_open_readonly_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no database file"):
        open_readonly(tmp_path / "nope" / "missing.db")
    assert not (tmp_path / "nope").exists()  # unlike Store.open, no directory is made
    with pytest.raises(InvalidInput, match="SQLite files, not postgresql"):
        open_readonly("postgresql://127.0.0.1/nosgrid")
    with pytest.raises(InvalidInput, match="in-memory"):
        open_readonly("sqlite://")
    db = tmp_path / "old.db"
    migrate_to(db, "0004")
    with pytest.raises(SchemaMismatch) as info:
        open_readonly(f"sqlite:///{db}")
    assert info.value.code == "schema_mismatch" and info.value.details["revision"] == ["0004"]


def test_a_read_only_store_takes_no_writes_and_notices_a_changed_file(written: Path) -> None:
    store = open_readonly(written)
    try:
        with pytest.raises(InvalidInput, match="read-only"):
            store.uow(write=True)
        with store.uow() as uow, pytest.raises(OperationalError, match="readonly"):
            uow.conn.exec_driver_sql("DELETE FROM journal")
        store.check_unchanged()
        os.utime(written, ns=(0, 0))  # what a writer's checkpoint would do to the stamp
        with pytest.raises(Unavailable, match="changed while it was read"):
            store.check_unchanged()
    finally:
        store.close()
