"""The outbox sender: turns committed outbox rows into confirmed Solana transactions.

Per transaction, in this order::

    pending ──prepare (sign)──► record signature + signed bytes, status sent, COMMIT
            ──submit──► confirmed ──► status confirmed, COMMIT

A crash can happen anywhere; on restart :meth:`Sender.recover` looks at every ``sent``
row: if ``confirmed(signature)`` it is only marked; if not, the *same* signed
transaction is submitted again (a landed signature cannot execute twice); only when its
blockhash has expired **and** the signature is still unconfirmed — so it can never land —
is the row put back to ``pending`` and a new transaction built. A transaction the chain
rejected (``TransactionFailed``: it did not execute) goes back to ``pending`` too. Nothing
is ever paid twice and nothing committed is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from solders.instruction import Instruction
from solders.transaction import Transaction

from nosgrid.core.chain_requests import RefundReason, refund_memo_text
from nosgrid.core.errors import SettlementFailed
from nosgrid.settlement import receipts as receipt_tx
from nosgrid.settlement import requests as request_tx
from nosgrid.settlement import spl
from nosgrid.settlement.chain import PreparedTransaction
from nosgrid.settlement.errors import TransactionFailed
from nosgrid.settlement.solana import SettlementRequest, SolanaSettlement
from nosgrid.store.db import Store
from nosgrid.store.outbox import OutboxKind, OutboxRepo, OutboxRow, OutboxStatus
from nosgrid.store.receipts import AttestorRepo, ChainRefundRepo, ReceiptRepo

log = logging.getLogger(__name__)

#: the memo action of each stake-vault kind (see :mod:`nosgrid.settlement.stakes`)
STAKE_ACTIONS: Final = {
    OutboxKind.STAKE_DEPOSIT: "stake",
    OutboxKind.STAKE_WITHDRAW: "unstake",
    OutboxKind.REWARDS_CLAIM: "claim",
    OutboxKind.SLASH: "slash",
    OutboxKind.AUDIT_PAY: "audit",
    OutboxKind.EMISSION: "emission",
}


@dataclass
class SenderStats:
    """What one pass did (counts of outbox rows)."""

    confirmed: int = 0
    resubmitted: int = 0
    rebuilt: int = 0
    failed: int = 0
    anchored: int = 0
    stake_moves: int = 0
    receipts: int = 0
    refunds: int = 0
    transactions: int = 0
    errors: list[str] = field(default_factory=list)


class Sender:
    """Sends the outbox of one store through one :class:`SolanaSettlement`.

    ``batch_size`` jobs are checked together and packed into as few transactions as fit
    (each job stays atomic); ``anchor_every`` > 0 anchors the ledger head every that many
    journal entries. ``retry_after_s`` spaces retries of a row the chain refused.
    """

    def __init__(self, store: Store, settlement: SolanaSettlement, *, batch_size: int = 1,
                 anchor_every: int = 0, retry_after_s: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.settlement = settlement
        self.chain = settlement.chain
        self.batch_size = max(1, batch_size)
        self.anchor_every = anchor_every
        self.retry_after_s = retry_after_s
        self.clock = clock
        self.wake = asyncio.Event()
        self._known_accounts: set[str] = set()
        #: the chain's slot at the start of the last pass (receipts cite it)
        self.last_slot = 0

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, interval_s: float = 1.0) -> None:
        """Recover, then send whenever woken (a job settled) or every ``interval_s``."""
        while True:
            self.wake.clear()
            try:
                await self.pass_once()
            except Exception:  # keep sending; the rows stay in the outbox
                log.exception("settlement sender pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), interval_s)

    async def pass_once(self, limit: int = 500) -> SenderStats:
        """One pass: recover ``sent`` rows, anchor if due, send ``pending`` rows."""
        stats = SenderStats()
        with contextlib.suppress(SettlementFailed):  # a slot is nice to cite, not needed
            self.last_slot = await self.chain.slot()
        await self.recover(stats)
        self._queue_anchor_if_due()
        now = self.clock()
        with self.store.uow(write=False) as uow:
            rows = [r for r in OutboxRepo(uow.conn).in_status(OutboxStatus.PENDING, limit)
                    if not r.error or now - r.updated_at >= self.retry_after_s]
        payouts = [r for r in rows if r.kind is OutboxKind.PAYOUT]
        for i in range(0, len(payouts), self.batch_size):
            await self._send_payouts(payouts[i:i + self.batch_size], stats)
        await self._send_stake_moves([r for r in rows if r.kind in STAKE_ACTIONS], stats)
        await self._send_receipts([r for r in rows if r.kind is OutboxKind.RECEIPT], stats)
        for row in rows:
            if row.kind is OutboxKind.REFUND:
                await self._send_refund(row, stats)
        for row in rows:
            if row.kind is OutboxKind.ATTESTOR:
                await self._send_attestor(row, stats)
            if row.kind is OutboxKind.ANCHOR:
                payer = self.settlement.signer
                ix = spl.anchor_memo_instruction(row.entry_hash, row.seq or 0, payer.pubkey())
                if await self._send([row], [ix], stats):
                    stats.anchored += 1
        return stats

    # -- recovery ---------------------------------------------------------------------------

    async def recover(self, stats: SenderStats | None = None) -> SenderStats:
        """Settle the fate of every ``sent`` row (after a crash, or an unknown outcome)."""
        stats = stats or SenderStats()
        with self.store.uow(write=False) as uow:
            sent = OutboxRepo(uow.conn).in_status(OutboxStatus.SENT)
        by_signature: dict[str, list[OutboxRow]] = {}
        for row in sent:
            by_signature.setdefault(row.signature or "", []).append(row)
        for signature, rows in by_signature.items():
            ids = [r.id for r in rows]
            if not signature or rows[0].tx is None:
                self._pending(ids, "no transaction stored")
                continue
            prepared = PreparedTransaction(signature, Transaction.from_bytes(rows[0].tx),
                                           rows[0].last_valid_block_height)
            if await self.chain.confirmed(signature):
                self._confirmed(ids)
                stats.confirmed += len(ids)
            elif await self.chain.expired(prepared) and not await self.chain.confirmed(signature):
                self._pending(ids, f"transaction {signature} expired unconfirmed; rebuilding")
                stats.rebuilt += len(ids)
            else:
                stats.resubmitted += len(ids)
                await self._submit(ids, prepared, stats)
        return stats

    # -- sending ----------------------------------------------------------------------------

    async def _send_payouts(self, rows: Sequence[OutboxRow], stats: SenderStats) -> None:
        await self._ensure_destinations(rows)
        requests = [SettlementRequest(r.job_id or str(r.id), r.entry_hash,
                                      tuple((leg.destination, leg.amount) for leg in r.legs),
                                      r.source or "") for r in rows]
        try:
            batches = await self.settlement.payout_batches(requests)
        except SettlementFailed as err:  # pre-flight: nothing was sent
            if len(rows) > 1:  # find the row at fault, send the others
                for row in rows:
                    await self._send_payouts([row], stats)
                return
            message = err.message
            self._update(lambda o: o.note_error([rows[0].id], message, self.clock()))
            stats.failed += 1
            stats.errors.append(err.message)
            log.warning("payout refused before sending",
                        extra={"job_id": rows[0].job_id, "error": err.message})
            return
        by_job = {r.job_id or str(r.id): r for r in rows}
        for job_ids, ixs in batches:
            await self._send([by_job[j] for j in job_ids], ixs, stats)

    async def _send_stake_moves(self, rows: Sequence[OutboxRow], stats: SenderStats) -> None:
        """One transaction per stake move, in journal order. A move out of a stake waits
        while that staker's deposit is unconfirmed, so the vault never pays out a stake it
        has not received (the staker could have revoked the approval meanwhile)."""
        if not rows:
            return
        with self.store.uow(write=False) as uow:
            deposits = Counter(r.source for r in OutboxRepo(uow.conn).unconfirmed()
                               if r.kind is OutboxKind.STAKE_DEPOSIT)
        await self._ensure_destinations(rows)
        for row in rows:
            if row.kind in (OutboxKind.STAKE_WITHDRAW, OutboxKind.SLASH) and deposits[row.source]:
                self._note([row.id], "waiting for this staker's stake deposit to confirm")
                continue
            try:
                ixs = await self.settlement.stake_move_instructions(
                    STAKE_ACTIONS[row.kind], row.source or "", row.entry_hash,
                    [(leg.destination, leg.amount) for leg in row.legs], row.job_id or "")
            except SettlementFailed as err:  # pre-flight: nothing was sent
                self._note([row.id], err.message)
                stats.failed += 1
                stats.errors.append(err.message)
                log.warning("stake move refused before sending",
                            extra={"kind": row.kind.value, "owner": row.source,
                                   "error": err.message})
                continue
            if await self._send([row], ixs, stats):
                stats.stake_moves += 1
                if row.kind is OutboxKind.STAKE_DEPOSIT:
                    deposits[row.source] -= 1

    async def _send_receipts(self, rows: Sequence[OutboxRow], stats: SenderStats) -> None:
        """Receipts, as many per transaction as fit (``settlement.receipts.pack``)."""
        if not rows:
            return
        with self.store.uow(write=False) as uow:
            stored = {r.id: r.signed
                      for r in ReceiptRepo(uow.conn).many([r.seq or 0 for r in rows])}
        ready = [row for row in rows if row.seq in stored]
        row_of = {stored[row.seq or 0].receipt: row for row in ready}
        signed = [stored[row.seq or 0] for row in ready]
        payer = self.settlement.signer
        # every batch is signed and recorded ``sent`` in one commit, and the confirmed ones
        # are marked in one more: two commits a pass, not two a transaction; recover()
        # still settles each row by its own signature
        prepared = [([row_of[s.receipt] for s in batch],
                     await self.chain.prepare(ixs, [payer], payer))
                    for batch, ixs in receipt_tx.pack(signed, payer.pubkey())]
        now = self.clock()

        def sent(o: OutboxRepo) -> None:
            for batch_rows, tx in prepared:
                o.mark_sent([r.id for r in batch_rows], tx.signature, bytes(tx.transaction),
                            tx.last_valid_block_height, now)

        self._update(sent)
        stats.transactions += len(prepared)
        landed: list[int] = []
        for batch_rows, tx in prepared:
            ids = [r.id for r in batch_rows]
            if await self._submit(ids, tx, stats, mark=False):
                landed += ids
                stats.receipts += len(ids)
        if landed:
            self._confirmed(landed)

    async def _send_attestor(self, row: OutboxRow, stats: SenderStats) -> None:
        """An attestor epoch as a Memo signed by the settlement authority (who vouches
        for epoch 0; later epochs carry the previous key's signature in the text)."""
        with self.store.uow(write=False) as uow:
            records = {e.epoch: e for e in AttestorRepo(uow.conn).epochs()}
        record = records.get(row.seq or 0)
        if record is None:
            self._note([row.id], f"attestor epoch {row.seq} is not recorded")
            return
        payer = self.settlement.signer
        await self._send([row], [spl.memo_instruction(record.memo(), payer.pubkey())], stats)

    async def _send_refund(self, row: OutboxRow, stats: SenderStats) -> None:
        """Request vault → the request's source, with ``nosgrid refund ref=… reason=…``."""
        s = self.settlement
        with self.store.uow(write=False) as uow:
            refund = ChainRefundRepo(uow.conn).get(row.entry_hash)
        if refund is None or s.request_vault is None:
            self._note([row.id], "no chain refund recorded for this row (or no request vault)")
            return
        ixs = request_tx.refund_instructions(
            s.request_vault, spl.to_pubkey(refund.destination), s.mint, s.authority,
            refund.amount, refund_memo_text(refund.request, RefundReason(refund.reason)),
            s.decimals)
        if await self._send([row], ixs, stats):
            stats.refunds += 1

    async def _send(self, rows: Sequence[OutboxRow], ixs: Sequence[Instruction],
                    stats: SenderStats) -> bool:
        payer = self.settlement.signer
        prepared = await self.chain.prepare(ixs, [payer], payer)
        ids = [r.id for r in rows]
        self._update(lambda o: o.mark_sent(ids, prepared.signature, bytes(prepared.transaction),
                                           prepared.last_valid_block_height, self.clock()))
        stats.transactions += 1
        return await self._submit(ids, prepared, stats)

    async def _submit(self, ids: list[int], prepared: PreparedTransaction,
                      stats: SenderStats, *, mark: bool = True) -> bool:
        """Submit; ``mark=False`` leaves marking the landed rows confirmed to the caller."""
        try:
            await self.chain.submit(prepared)
        except TransactionFailed as err:  # the chain refused it: it did not execute
            self._pending(ids, err.message)
            stats.failed += len(ids)
            stats.errors.append(err.message)
            log.warning("settlement transaction failed",
                        extra={"signature": prepared.signature, "error": err.message})
            return False
        except SettlementFailed as err:  # unknown outcome: stays sent, recover() decides
            message = err.message
            self._update(lambda o: o.note_error(ids, message, self.clock()))
            stats.errors.append(err.message)
            return False
        if mark:
            self._confirmed(ids)
        stats.confirmed += len(ids)
        return True

    async def _ensure_destinations(self, rows: Sequence[OutboxRow]) -> None:
        """Create missing NOS accounts of paid wallets (a node's first payout)."""
        fixed = {str(v) for v in self.settlement.vaults}
        owners = sorted({leg.destination for r in rows for leg in r.legs} - fixed
                        - self._known_accounts)
        if not owners:
            return
        infos = await self.chain.token_account_infos(
            [self.settlement.token_account(o) for o in owners])
        for owner, info in zip(owners, infos, strict=True):
            if info is None:
                await self.settlement.ensure_account(owner)
            self._known_accounts.add(owner)

    def _queue_anchor_if_due(self) -> None:
        if self.anchor_every <= 0:
            return
        with self.store.uow() as uow:
            head = uow.ledger.head()
            outbox = OutboxRepo(uow.conn)
            last = outbox.last_anchor_seq()
            if head is None or head[0] - (last if last is not None else 0) < self.anchor_every:
                return
            outbox.add(kind=OutboxKind.ANCHOR, entry_hash=head[1], seq=head[0], legs=[],
                       at=self.clock())
            uow.commit()

    def _note(self, ids: list[int], error: str) -> None:
        self._update(lambda o: o.note_error(ids, error, self.clock()))

    def _pending(self, ids: list[int], error: str) -> None:
        self._update(lambda o: o.back_to_pending(ids, error, self.clock()))

    def _confirmed(self, ids: list[int]) -> None:
        self._update(lambda o: o.mark_confirmed(ids, self.clock()))

    def _update(self, change: Callable[[OutboxRepo], None]) -> None:
        with self.store.uow() as uow:
            change(OutboxRepo(uow.conn))
            uow.commit()
