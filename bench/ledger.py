"""Journal entries committed per second through the store, against bare sqlite3 inserts.

Both sides write the same number of rows to a fresh SQLite file in WAL mode with
``synchronous=NORMAL``, one transaction per entry, in the same run:

* nosgrid: ``LedgerRepo.append`` in a unit of work (BEGIN IMMEDIATE, head lock,
  conditional debit, upsert credit, journal row, posting row, head update, hash chain);
* baseline: one bare ``INSERT`` of a (seq, src, dst, amount) row per transaction.

Prints one JSON object; the ratio is what survives a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

from nosgrid.coordinator.services.accounts import faucet
from nosgrid.core.ledger import Posting, wallet
from nosgrid.store.db import Store


def bench_store(path: Path, n: int) -> float:
    store = Store.open(path)
    with store.uow() as uow:
        faucet(uow, "alice", 10**12, 0, cap_per_hour=10**15)
        uow.commit()
    start = time.perf_counter()
    for i in range(n):
        with store.uow() as uow:
            uow.ledger.append("transfer", str(i), i, [Posting(wallet("alice"), wallet("bob"), 1)])
            uow.commit()
    elapsed = time.perf_counter() - start
    with store.uow(write=False) as uow:
        assert uow.ledger.balance(wallet("bob")) == n
    store.close()
    return n / elapsed


def bench_sqlite(path: Path, n: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE rows (seq INTEGER PRIMARY KEY, src TEXT, dst TEXT, amount INT)")
    start = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO rows VALUES (?, ?, ?, ?)", (i, "alice", "bob", 1))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=3000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store_rate = bench_store(Path(tmp) / "store.db", args.entries)
        sqlite_rate = bench_sqlite(Path(tmp) / "bare.db", args.entries)
    print(json.dumps({
        "benchmark": "ledger",
        "entries": args.entries,
        "store_entries_per_s": round(store_rate, 1),
        "bare_sqlite_inserts_per_s": round(sqlite_rate, 1),
        "ratio_store_vs_bare": round(store_rate / sqlite_rate, 3),
    }))


if __name__ == "__main__":
    main()
