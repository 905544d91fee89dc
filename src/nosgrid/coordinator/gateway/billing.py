"""The gateway's money: per-worker holds, charges written as requests end, flushes, and
taking over the holds and charges of a worker that died.

Each :class:`~nosgrid.coordinator.gateway.runtime.Gateway` is one **worker** with a random
id and a lease row in ``gateway_workers`` that its tick renews. Its holds are ledger
accounts ``gwhold:<kid>:<worker>`` that only it spends from, so its in-memory
:class:`~nosgrid.core.metering.Meter` is exact for them and no other process can
contradict it. What other processes share is in the database and changed only by
conditional, transactional statements:

- a top-up (wallet → this worker's hold) and the cap check over all workers
  (``gateway_keys.held``: ``spent + held + top-up <= cap``) are one transaction;
- every charge is a ``gateway_charges`` row written when its request ends (after at most
  ``charge_batch_s``), so a crash loses no usage;
- a flush pays this worker's charges (one ``gateway.usage`` entry per key owner), moves
  them from ``held`` to ``spent``, records usage and deletes them, in one transaction;
- a worker whose lease expired is taken over by the first other worker to notice (at its
  start or tick): its charges are paid to the nodes, then its holds return to their owners,
  in the transaction that deletes its lease.

Every write of a worker renews (and, on PostgreSQL, locks) its lease row first, so a worker
that was taken over while it looked dead cannot move money any more; it notices, registers
again and starts from the database's figures (``_lease_lost``).

:class:`BillingMixin` is that half of ``Gateway``; the attributes it uses are declared here
and set by ``Gateway.__init__``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

from nosgrid.coordinator.gateway.records import Recorder
from nosgrid.coordinator.gateway.registry import Registry
from nosgrid.coordinator.gateway.settings import GatewaySettings
from nosgrid.coordinator.runtime import Coordinator
from nosgrid.core.apikeys import KeyClaims
from nosgrid.core.errors import InsufficientFunds, InvalidApiKey, QuotaExceeded
from nosgrid.core.events import UsageBilled
from nosgrid.core.ledger import Posting, wallet
from nosgrid.core.metering import (
    Bill,
    Charge,
    Meter,
    Prices,
    Reservation,
    bill,
    hold_account,
    leftovers,
    release_postings,
)
from nosgrid.store.db import UnitOfWork
from nosgrid.store.gateway import GatewayRepo
from nosgrid.store.inference import InferenceRepo

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """This worker's lease row is gone: another worker took it over as dead."""


class BillingMixin:
    """Holds, charges, flushes and takeovers of ``Gateway`` (see the module docstring)."""

    coord: Coordinator
    settings: GatewaySettings
    registry: Registry
    recorder: Recorder
    worker: str
    meter: Meter
    revoked: set[str]
    _unsaved: list[tuple[int, Charge]]
    _charge_seq: Iterator[int]
    _save_handle: asyncio.TimerHandle | None
    _since_flush: int
    _last_flush: float
    _last_touch: float
    _retired: bool

    # ------------------------------------------------------------------ lease

    def heartbeat(self) -> None:
        """Renew this worker's lease (registering again if it was taken over)."""
        with self.coord.store.uow() as uow:
            alive = GatewayRepo(uow.conn).heartbeat(self.worker, self.coord.now())
            uow.commit()
        if not alive:
            self._lease_lost()

    def _lease_lost(self) -> None:
        """Another worker took this one over as dead: it paid the charges written here and
        returned the holds. Register again and start from the database's figures; charges
        not written yet are lost (their requests go unbilled), logged."""
        lost = sum(c.cost for _seq, c in self._unsaved)
        self._unsaved = []
        if self._retired:  # stopped: a request that ended after the last flush goes unbilled
            log.warning("a gateway charge after shutdown was dropped",
                        extra={"worker": self.worker, "cost": lost})
            return
        log.error("this gateway worker's lease was taken over; registering again",
                  extra={"worker": self.worker, "unsaved_cost_lost": lost})
        with self.coord.store.uow() as uow:
            repo = GatewayRepo(uow.conn)
            repo.add_worker(self.worker, self.coord.now())
            for kid, b in self.meter.books.items():
                row = repo.key(kid)
                b.hold = uow.ledger.balance(hold_account(kid, self.worker))
                b.pending = 0
                if row is not None:
                    b.spent, b.held = int(row["spent"]), int(row["held"])
            uow.commit()

    # ------------------------------------------------------------------ reserving

    def reserve(self, claims: KeyClaims, amount: int) -> Reservation:
        """Hold ``amount`` for one request, moving money wallet → hold first if needed.

        Raises :class:`QuotaExceeded` (the cap over all workers, or the wallet) or
        :class:`InvalidApiKey` (revoked meanwhile).
        """
        if amount > self.meter.book(claims.kid).free:  # only then is the database asked
            try:
                self._top_up(claims, amount)
            except LeaseLost:
                self._lease_lost()
                self._top_up(claims, amount)
        return self.meter.reserve(claims.kid, amount, now=time.monotonic())

    def _top_up(self, claims: KeyClaims, amount: int) -> None:
        kid, now = claims.kid, self.coord.now()
        try:
            with self.coord.store.uow() as uow:
                repo = GatewayRepo(uow.conn)
                row = repo.key(kid)
                if row is None or row["revoked_at"] is not None:
                    self._closed(kid)
                    raise InvalidApiKey(f"The API key {kid} was revoked", reason="revoked")
                self.meter.sync(kid, spent=int(row["spent"]), held=int(row["held"]))
                have = uow.ledger.balance(wallet(claims.owner))
                top_up = self.meter.top_up_needed(kid, amount, wallet_balance=have)
                if not top_up:
                    return
                if not repo.heartbeat(self.worker, now):
                    raise LeaseLost
                # the ledger (its head row) before the key's row, as in every flush: one lock
                # order, so two processes cannot deadlock on PostgreSQL
                uow.ledger.append("gateway.hold", kid, int(now), [
                    Posting(wallet(claims.owner), hold_account(kid, self.worker), top_up)])
                if not repo.take_room(kid, top_up):  # another process took it meanwhile
                    raise QuotaExceeded(f"the API key {kid} would pass its spend cap",
                                        reason="over_cap")
                uow.commit()
        except InsufficientFunds as exc:  # the wallet was spent between the read and the debit
            raise QuotaExceeded(f"the key's wallet cannot cover this request: {exc.message}",
                                reason="insufficient_funds") from None
        self.meter.add_to_hold(kid, top_up)

    def _closed(self, kid: str) -> None:
        """The key was revoked: refuse it from now on; its hold returns at the next flush."""
        self.revoked.add(kid)
        if kid in self.meter.books:
            self.meter.books[kid].closed = True

    # ------------------------------------------------------------------ charging

    def charge(self, res: Reservation, *, model: str, node: str, prompt_tokens: int,
               completion_tokens: int, prices: Prices, record: str = "") -> int:
        """End a request: bill the tokens delivered (nothing delivered, nothing recorded)
        and write the charge, with its usage record's hash, to the database
        (:meth:`save_soon`). Returns the amount charged."""
        c = self.meter.charge(res, model=model, node=node, prompt_tokens=prompt_tokens,
                              completion_tokens=completion_tokens, prices=prices,
                              record=record)
        if c.cost < prices.cost(prompt_tokens, completion_tokens):
            log.warning("reservation too small; charged what the hold had",
                        extra={"kid": res.kid, "charged": c.cost})
        if c.prompt_tokens or c.completion_tokens:
            self._unsaved.append((next(self._charge_seq), c))
            self.save_soon()
        self._since_flush += 1
        if self._since_flush >= self.settings.flush_every:
            self.flush()
        return c.cost

    def save_soon(self) -> None:
        """Write the charges not written yet: now, or with those of the next
        ``charge_batch_s`` (one commit for all of them)."""
        if not self._unsaved:
            return
        if self.settings.charge_batch_s <= 0:
            self.save_charges()
            return
        if self._save_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.save_charges()
                return
            self._save_handle = loop.call_later(self.settings.charge_batch_s,
                                                self.save_charges)

    def save_charges(self) -> None:
        """Write the charges not written yet (one transaction); kept for a retry on error."""
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
        batch, self._unsaved = self._unsaved, []
        if not batch:
            return
        try:
            with self.coord.store.uow() as uow:
                repo = GatewayRepo(uow.conn)
                now = self.coord.now()
                if not repo.heartbeat(self.worker, now):
                    raise LeaseLost
                repo.add_charges(self.worker, batch, now)
                written = self.recorder.write(uow, [c for _s, c in batch])
                uow.commit()
            self.recorder.done(written)
        except LeaseLost:
            self._unsaved = batch + self._unsaved
            self._lease_lost()
        except Exception:
            self._unsaved = batch + self._unsaved
            log.exception("could not write gateway charges; will retry")

    # ------------------------------------------------------------------ flushing

    def flush(self, *, release_all: bool = False, retire: bool = False) -> int:
        """Pay this worker's charges (one journal entry per key owner) and return idle,
        closed (or, ``release_all``, all) holds to their owners, in one transaction.
        ``retire`` (a clean stop) returns every hold and drops the lease too. Returns the
        number of usage postings."""
        self._since_flush = 0
        self._last_flush = time.monotonic()
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
        unsaved, self._unsaved = self._unsaved, []
        releases = (self.meter.remaining() if retire else
                    self.meter.releasable(now=time.monotonic(),
                                          idle_s=self.settings.idle_release_s,
                                          everything=release_all))
        used = [r.job_id for r in self.registry.replicas.values()
                if r.outstanding or r.last_used > self._last_touch]
        now = int(self.coord.now())
        try:
            with self.coord.store.uow() as uow:
                repo = GatewayRepo(uow.conn)
                if not repo.heartbeat(self.worker, now):
                    raise LeaseLost
                repo.add_charges(self.worker, unsaved, now)
                written = self.recorder.write(uow, [c for _s, c in unsaved])
                charges = repo.charges_of(self.worker)
                paid = self._pay(uow, repo, self.worker, [c for _seq, c in charges], now)
                if charges:
                    repo.drop_charges(self.worker, charges[-1][0])
                if releases:
                    self._release(uow, repo, self.worker, releases, now)
                repo.touch_services(used, now)
                if retire:
                    repo.drop_worker(self.worker)
                uow.commit()
            self._retired = retire
            self.recorder.done(written)
        except LeaseLost:
            self._unsaved = unsaved + self._unsaved
            self._lease_lost()
            return 0
        except Exception:
            self._unsaved = unsaved + self._unsaved
            log.exception("gateway flush failed; will retry")
            return 0
        self._last_touch = time.monotonic()
        self.meter.flush_done(paid.spend)
        for kid, _owner, amount in releases:
            self.meter.released(kid, amount)
        return sum(len(p) for p in paid.postings.values())

    def _pay(self, uow: UnitOfWork, repo: GatewayRepo, worker: str, charges: list[Charge],
             now: int) -> Bill:
        """Journal ``worker``'s ``charges``: one usage entry per key owner (on Solana each is
        one payout from that owner's token account: the hold was a reservation of its
        allowance), usage rows, and the keys' spend (out of ``held``)."""
        paid = bill(charges, fee_bps=self.settings.fee_bps, worker=worker,
                    audit_hold=self.settings.audit_hold)
        for owner, postings in paid.postings.items():
            meta = paid.meta(owner)
            entry = uow.ledger.append("gateway.usage", owner, now, postings, meta)
            uow.publish(UsageBilled(at=now, entry=entry, owner=owner,
                                    requests=meta["requests"], tokens=meta["tokens"]))
            InferenceRepo(uow.conn).bill_records(
                paid.records.get(owner, ()), entry.seq,
                paid_at=None if self.settings.audit_hold else now)
        for (kid, model), line in sorted(paid.usage.items()):
            repo.add_usage(kid, model, line)
        for kid, amount in sorted(paid.spend.items()):
            repo.add_spend(kid, amount)
        return paid

    def _release(self, uow: UnitOfWork, repo: GatewayRepo, worker: str,
                 rows: list[tuple[str, str, int]], now: int) -> None:
        uow.ledger.append("gateway.release", "holds", now, release_postings(rows, worker))
        for kid, _owner, amount in rows:
            repo.release_held(kid, amount)

    # ------------------------------------------------------------------ dead workers

    def take_over_dead(self) -> list[str]:
        """Pay the charges of every other worker whose lease expired, then return its holds
        to their owners (one transaction per dead worker). Returns the workers taken over."""
        now = self.coord.now()
        before = now - self.settings.worker_lease_s
        with self.coord.store.uow(write=False) as uow:
            dead = [w for w in GatewayRepo(uow.conn).expired_workers(before)
                    if w != self.worker]
        done = []
        for worker in dead:
            try:
                with self.coord.store.uow() as uow:
                    repo = GatewayRepo(uow.conn)
                    if not repo.claim_dead(worker, before):
                        continue  # it came back, or another worker took it
                    charges = repo.charges_of(worker)
                    holds = repo.holds_of(worker)
                    paid = self._pay(uow, repo, worker, [c for _seq, c in charges], int(now))
                    if charges:
                        repo.drop_charges(worker, charges[-1][0])
                    rows = leftovers(holds, paid)
                    if rows:
                        self._release(uow, repo, worker, rows, int(now))
                    uow.commit()
            except Exception:
                log.exception("could not take over a dead gateway worker; will retry",
                              extra={"dead": worker})
                continue
            done.append(worker)
            log.warning("took over a dead gateway worker", extra={
                "dead": worker, "charges": len(charges),
                "paid": sum(paid.spend.values()), "released": sum(a for *_x, a in rows)})
        return done


__all__ = ["BillingMixin", "LeaseLost"]
