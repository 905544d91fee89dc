"""Typed events and the handler registry: the table, the order, what a failure does."""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest

from nosgrid.coordinator.bootstrap import bootstrap
from nosgrid.coordinator.settings import CoordinatorSettings
from nosgrid.core import events
from nosgrid.core.events import Event, JobAssigned, JobQueued, JobSettled
from nosgrid.core.jobs import state as rules
from nosgrid.core.jobs.terms import JobTerms
from nosgrid.core.ledger import JournalEntry
from nosgrid.core.markets import MarketParams
from nosgrid.store.db import Handlers

MARKET = MarketParams(name="cpu", price_per_second=10, max_timeout=100, fee_bps=500)


def test_every_event_is_a_frozen_past_tense_value() -> None:
    found = [c for _n, c in inspect.getmembers(events, inspect.isclass)
             if issubclass(c, Event) and c.__module__ == events.__name__]
    assert len(found) > 20
    for cls in found:
        params = cls.__dataclass_params__  # type: ignore[attr-defined]
        assert dataclasses.is_dataclass(cls) and params.frozen
        past = re.search(r"(ed|Paid|Held|Out|drawn)(?=[A-Z]|$)", cls.__name__)
        assert cls in (Event, events.JobEvent, events.StakeEvent) or past, \
            f"{cls.__name__} is not in the past tense"


def test_a_transition_returns_typed_events_and_books_them_with_its_entry() -> None:
    tr = rules.post(job_id="j", client="c", market=MARKET, spec_hash="h",
                    terms=JobTerms("cpu", 10), now=5)
    [posted] = tr.events
    assert posted.name == "JobPosted" and posted.deposit == 100  # type: ignore[attr-defined]
    entry = JournalEntry(seq=1, kind="job.posted", ref="j", at=5, postings=tr.postings,
                         prev_hash="00" * 32, hash="11" * 32)
    assert posted.booked(entry).entry is entry and posted.entry is None


def test_handlers_run_in_registration_order_and_after_commit_failures_are_contained() -> None:
    h, seen = Handlers(), []
    h.after(JobAssigned, lambda ev: seen.append(("first", ev.node)))
    h.after(JobAssigned, lambda ev: 1 / 0)  # a broken notifier must not undo a commit
    h.after(JobAssigned, lambda ev: seen.append(("third", ev.node)))
    h.after_commit(JobAssigned(at=0, job_id="j", node="n"))
    assert seen == [("first", "n"), ("third", "n")]
    h.after_commit(JobQueued(at=0, job_id="j", market="m"))  # no handler: nothing happens


def test_the_composition_root_wires_the_money_and_the_notifications() -> None:
    coord = bootstrap(CoordinatorSettings(db="sqlite://"))
    table = coord.store.handlers.table()
    settled = table[JobSettled.__name__]
    assert [n.rsplit(".", 1)[-1] for n in settled["in_transaction"]] == [
        "on_job_settled", "return_unused_reserve", "on_job_settled", "on_job_settled"]
    assert "ReceiptIssuer" in settled["in_transaction"][2]  # the result receipt
    assert any("logs_moved" in n for n in settled["after_commit"])
    assert table["JobQueued"]["after_commit"][0].endswith("market_has_work")
    with pytest.raises(RuntimeError, match="chosen once"):
        from nosgrid.coordinator.bootstrap import install_settlement
        from nosgrid.settlement.local import LOCAL

        install_settlement(coord, LOCAL)
