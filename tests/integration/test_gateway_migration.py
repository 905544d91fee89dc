"""Migration 0006 (gateway workers) on a database a 0005 coordinator left with holds."""

from __future__ import annotations

import json
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import insert, select

from nosgrid.core.ledger import Posting, default_allocations, genesis_entry, verify, wallet
from nosgrid.store import tables as t
from nosgrid.store.db import MIGRATIONS, make_engine, migrate
from nosgrid.store.gateway import GatewayRepo
from nosgrid.store.repositories import LedgerRepo


def test_old_holds_return_to_their_owners_in_one_journal_entry(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as conn:  # the schema a 0005 coordinator ran on, with two holds
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0005")
        ledger = LedgerRepo(conn)
        ledger.append_entry(genesis_entry(default_allocations(), at=0))
        ledger.append("faucet", "", 1, [Posting("alloc:community", wallet("alice"), 900)])
        for kid, amount in (("k_1", 300), ("k2", 200)):
            conn.execute(insert(t.gateway_keys).values(
                kid=kid, owner="alice", cap=10**6, expires_at=2**40, models="[]", label="",
                created_at=0, revoked_at=None, spent=0))
            ledger.append("gateway.hold", kid, 2, [Posting(wallet("alice"), f"gwhold:{kid}",
                                                           amount)])
        conn.commit()
    migrate(engine)
    with engine.connect() as conn:
        ledger = LedgerRepo(conn)
        balances = ledger.balances()
        assert balances["gwhold:k_1"] == balances["gwhold:k2"] == 0
        assert balances[wallet("alice")] == 900
        entries = ledger.entries()
        last = entries[-1]
        assert (last.kind, last.ref) == ("gateway.release", "migration-0006")
        assert sorted(p.as_list() for p in last.postings) == [
            ["gwhold:k2", wallet("alice"), 200], ["gwhold:k_1", wallet("alice"), 300]]
        assert verify(entries, balances).ok
        rows = GatewayRepo(conn).keys_by_id(["k_1", "k2"])
        assert {r["held"] for r in rows.values()} == {0}
        meta = conn.execute(select(t.journal.c.meta).where(t.journal.c.seq == last.seq))
        assert json.loads(meta.scalar_one()) == dict(last.meta)
    engine.dispose()
