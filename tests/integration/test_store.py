"""The store on a real SQLite file: scenarios, atomicity, concurrency, verification."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from nosgrid.coordinator.bootstrap import open_store
from nosgrid.coordinator.services import accounts
from nosgrid.coordinator.services import jobs as svc
from nosgrid.core.errors import InsufficientFunds, InvalidInput, NosgridError
from nosgrid.core.jobs.load import parse_job_definition
from nosgrid.core.ledger import Posting, wallet
from nosgrid.core.markets import MarketParams
from nosgrid.core.money import parse_nos
from nosgrid.store.db import Store
from nosgrid.store.tables import metadata
from scenario_runner import DEFINITION, SCENARIOS, run


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(tmp_path / "nosgrid.db")


class StoreDriver:
    """Runs a golden scenario through the service layer and a real SQLite file."""

    def __init__(self, store: Store, market: MarketParams, client_funds: int) -> None:
        self.store = store
        with store.uow() as uow:
            svc.create_market(uow, market, 0)
            accounts.faucet(uow, "CLIENT", client_funds, 0, cap_per_hour=10**15)
            uow.commit()

    def step(self, s: dict[str, Any]) -> None:
        at = int(s["at"])
        with self.store.uow() as uow:
            do = s["do"]
            if do == "post":
                svc.post_job(
                    uow,
                    client="CLIENT",
                    definition=parse_job_definition(DEFINITION),
                    market="cpu",
                    timeout=s["timeout"],
                    max_price=parse_nos(s["max_price"]) if s.get("max_price") else None,
                    now=at,
                    job_id=s["job"],
                )
            elif do == "assign":
                job = uow.jobs.get(s["job"])
                svc.record(
                    uow, svc.rules.assign(job, s.get("node", "NODE"), at), kind="job.assigned"
                )
            elif do == "start":
                svc.start_job(uow, s["job"], self._node(uow, s), at)
            elif do == "complete":
                svc.finish_job(uow, s["job"], self._node(uow, s), at,
                               seconds_used=s.get("seconds_used"), result={"exit_code": 0})
            elif do == "requeue":
                svc.requeue_or_refund(uow, uow.jobs.get(s["job"]), at,
                                      "the node stopped sending heartbeats")
            elif do == "fail":
                svc.fail_job(
                    uow,
                    s["job"],
                    self._node(uow, s),
                    at,
                    fault=s["fault"],
                    reason="failed",
                    seconds_used=s.get("seconds_used"),
                )
            elif do == "cancel":
                svc.cancel_job(uow, s["job"], "CLIENT", at)
            elif do == "expire":
                svc.expire_overdue(uow, at)
            uow.commit()

    @staticmethod
    def _node(uow: Any, s: dict[str, Any]) -> str:
        """The node a step acts as: the job's own (the scenario may name it)."""
        return str(s.get("node") or uow.jobs.get(s["job"]).node)

    def outcome_of(self, job_id: str) -> str | None:
        with self.store.uow(write=False) as uow:
            outcome = uow.jobs.get(job_id).outcome
        return None if outcome is None else outcome.value

    def compute_seconds(self) -> dict[str, int]:
        with self.store.uow(write=False) as uow:
            return uow.jobs.compute_seconds(0, 2**62)

    def state_of(self, job_id: str) -> str | None:
        with self.store.uow(write=False) as uow:
            try:
                return uow.jobs.get(job_id).state.value
            except NosgridError:
                return None

    def balance(self, account: str) -> int:
        with self.store.uow(write=False) as uow:
            return uow.ledger.balance(account)


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_on_store(path: Path, tmp_path: Path) -> None:
    store = open_store(tmp_path / f"{path.stem}.db")
    run(path, lambda market, funds: StoreDriver(store, market, funds))
    with store.uow(write=False) as uow:
        report = accounts.verify_ledger(uow)
    assert report.ok, report.problems


def test_migrations_match_the_tables(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_a_failed_use_case_changes_nothing(store: Store) -> None:
    with store.uow() as uow:
        svc.create_market(uow, MarketParams(name="cpu", price_per_second=10), 0)
        accounts.faucet(uow, "alice", 1_000, 0)
        uow.commit()
    with store.uow(write=False) as uow:
        before = (uow.ledger.balances(), uow.ledger.head(), uow.jobs.count_by_state())
    for bad in [dict(timeout=10**6), dict(timeout=3600, max_price=None)]:
        with pytest.raises((InvalidInput, InsufficientFunds)), store.uow() as uow:
            svc.post_job(
                uow,
                client="alice",
                definition=parse_job_definition(DEFINITION),
                market="cpu",
                now=1,
                max_price=bad.get("max_price"),
                timeout=int(bad["timeout"]),
            )
            uow.commit()
    with pytest.raises(InsufficientFunds), store.uow() as uow:
        # the first posting would apply, the second cannot: the whole entry rolls back
        uow.ledger.append(
            "x",
            "",
            1,
            [Posting(wallet("alice"), "treasury", 500), Posting(wallet("alice"), "treasury", 501)],
        )
        uow.commit()
    with store.uow(write=False) as uow:
        assert (uow.ledger.balances(), uow.ledger.head(), uow.jobs.count_by_state()) == before


def test_two_writers_never_both_spend_the_same_balance(store: Store) -> None:
    with store.uow() as uow:
        accounts.faucet(uow, "alice", 100, 0)
        uow.commit()
    results: list[str] = []
    barrier = threading.Barrier(8)

    def spend() -> None:
        barrier.wait()
        try:
            with store.uow() as uow:
                uow.ledger.append("spend", "", 1, [Posting(wallet("alice"), "treasury", 30)])
                uow.commit()
            results.append("ok")
        except InsufficientFunds:
            results.append("short")

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(results) == ["ok"] * 3 + ["short"] * 5
    with store.uow(write=False) as uow:
        assert uow.ledger.balance(wallet("alice")) == 10
        assert accounts.verify_ledger(uow).ok


def test_verify_detects_a_corrupted_row(store: Store) -> None:
    with store.uow() as uow:
        accounts.faucet(uow, "alice", 5, 0)
        uow.commit()
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE postings SET amount = amount + 1 WHERE entry_seq = 1"))
    with store.uow(write=False) as uow:
        report = accounts.verify_ledger(uow)
    assert not report.ok
    assert any("hash does not match" in p for p in report.problems)
    assert any("stored balance" in p for p in report.problems)


def test_faucet_is_capped_per_hour(store: Store) -> None:
    with store.uow() as uow:
        accounts.faucet(uow, "bob", parse_nos("9000"), 0)
        uow.commit()
    with pytest.raises(NosgridError, match="per key per hour"), store.uow() as uow:
        accounts.faucet(uow, "bob", parse_nos("2000"), 100)
    with store.uow() as uow:
        accounts.faucet(uow, "bob", parse_nos("2000"), 3601)
        uow.commit()


def test_a_failing_money_handler_rolls_back_the_whole_use_case(store: Store) -> None:
    """Handlers of a money event run inside the use case's transaction: if one fails (say
    the settlement backend cannot queue a payout), the job is not settled either."""
    from nosgrid.core.events import JobSettled

    def broken_payout(_uow: Any, _event: JobSettled) -> None:
        raise InvalidInput("the payout could not be queued")

    with store.uow() as uow:
        svc.create_market(uow, MarketParams(name="cpu", price_per_second=10), 0)
        accounts.faucet(uow, "alice", 10_000, 0)
        job = svc.post_job(uow, client="alice", definition=parse_job_definition(DEFINITION),
                           market="cpu", timeout=10, now=0)
        uow.commit()
    with store.uow(write=False) as uow:
        before = (uow.ledger.balances(), uow.ledger.head())
    store.handlers.on(JobSettled, broken_payout)
    with pytest.raises(InvalidInput, match="payout"), store.uow() as uow:
        svc.cancel_job(uow, job.id, "alice", 1)
        uow.commit()
    with store.uow(write=False) as uow:
        assert (uow.ledger.balances(), uow.ledger.head()) == before
        assert uow.jobs.get(job.id).state.value == "queued"


def test_a_clients_cancellation_does_not_count_against_the_node(store: Store) -> None:
    """Outcome ``cancelled`` is the client's doing: the node's reputation learns nothing
    (before outcomes, a job cancelled while running counted as the node's failure)."""
    with store.uow() as uow:
        svc.create_market(uow, MarketParams(name="cpu", price_per_second=10), 0)
        accounts.faucet(uow, "alice", 10_000, 0)
        job = svc.post_job(uow, client="alice", definition=parse_job_definition(DEFINITION),
                           market="cpu", timeout=10, now=0)
        svc.assign_to(uow, job, "NODE", 1)
        svc.start_job(uow, job.id, "NODE", 2)
        done = svc.cancel_job(uow, job.id, "alice", 5)
        uow.commit()
    with store.uow(write=False) as uow:
        rep = uow.economics.reputation("NODE")
    assert done.outcome is not None and done.outcome.value == "cancelled"
    assert rep.success_ok == 0 and rep.success_bad == 0
