"""The ``solana`` settlement backend: the ledger mirrors an SPL token, payouts go on-chain.

It ties :class:`SolanaSettlement` (transactions), :mod:`mirror` (what the ledger records)
and the outbox :class:`Sender` together, and offers the coordinator's Solana routes what
they need: market info, relaying a client-signed approval, syncing an allowance, the dev
faucet (LiteSVM) and ``reconcile`` for ``nosgrid ledger verify --onchain``.

>>> import asyncio
>>> from nosgrid.store.db import Store
>>> async def demo() -> str:
...     backend = await SolanaBackend.litesvm()
...     store = Store.open("sqlite://")
...     await backend.open(store, now=0)
...     return backend.name
>>> asyncio.run(demo())
'litesvm'
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

from solders.keypair import Keypair
from solders.transaction import Transaction
from spl.token.constants import ASSOCIATED_TOKEN_PROGRAM_ID

from nosgrid.core.chain_requests import RefundReason
from nosgrid.core.errors import Forbidden, InvalidInput
from nosgrid.core.events import (
    AttestorRotated,
    Event,
    JobPosted,
    JobSettled,
    ReceiptIssued,
    UsageBilled,
)
from nosgrid.core.identity import keypair_from_json
from nosgrid.core.jobs.state import Outcome
from nosgrid.core.ledger import (
    REWARDS_POOL,
    STAKERS_POOL,
    TREASURY,
    JournalEntry,
    verify,
    wallet,
)
from nosgrid.core.tokenomics import RESERVE
from nosgrid.core.verification import AUDIT_POOL
from nosgrid.settlement import mirror, request_vault, spl
from nosgrid.settlement.chain import PreparedTransaction, SolanaChain
from nosgrid.settlement.litesvm_chain import LiteSVMChain
from nosgrid.settlement.rpc_chain import RpcChain
from nosgrid.settlement.sender import Sender
from nosgrid.settlement.solana import SettlementAccounts, SolanaSettlement
from nosgrid.store.db import Store, UnitOfWork
from nosgrid.store.outbox import OutboxKind, OutboxRepo, OutboxStatus
from nosgrid.store.receipts import ChainRequestRepo, ReceiptRepo

log = logging.getLogger(__name__)

#: programs a relayed client transaction may call (approve, create ATA, memo, budget)
RELAY_PROGRAMS: Final = frozenset({
    str(spl.TOKEN_PROGRAM_ID), str(ASSOCIATED_TOKEN_PROGRAM_ID), str(spl.MEMO_PROGRAM_ID),
    "ComputeBudget111111111111111111111111111111",
})
LITESVM_CLIENT_SOL: Final = 10**9
#: how ``reconcile`` names the sum of every ``stake:<pk>`` (the stake vault's ledger side)
STAKES: Final = "stake:*"
#: the reconcile row of the emissions vault: the ledger's undistributed reserve
EMISSIONS: Final = "alloc:reserve+rewards_pool"


class SolanaBackend:
    """``name`` is ``litesvm`` (in-process chain) or ``solana`` (an RPC cluster)."""

    def __init__(self, settlement: SolanaSettlement, *, name: str = "solana",
                 cluster: str = "", batch_size: int = 1, anchor_every: int = 0,
                 sender_interval_s: float = 1.0, clock: Callable[[], float] = time.time,
                 mint_reserve: bool = False, publish_receipts: bool = False) -> None:
        self.settlement = settlement
        #: publish result receipts and attestor epochs through the outbox (a coordinator
        #: does, ``open_backend``; a bare backend settles money only)
        self.publish_receipts = publish_receipts
        #: the market bootstrapped its own mint: mint the ledger's reserve into the
        #: emissions vault when the mirror opens
        self.mint_reserve = mint_reserve
        self.chain: SolanaChain = settlement.chain
        self.name = name
        self.cluster = cluster or name
        self.batch_size = batch_size
        self.anchor_every = anchor_every
        self.sender_interval_s = sender_interval_s
        self.clock = clock
        self.sender: Sender | None = None
        self._task: asyncio.Task[None] | None = None

    # -- construction -----------------------------------------------------------------------

    @classmethod
    async def litesvm(cls, authority: Keypair | None = None, **kwargs: Any) -> SolanaBackend:
        """A fresh in-process chain with a new NOS mint, treasury and vaults."""
        chain = LiteSVMChain()
        authority = authority or Keypair()
        chain.airdrop_sol_now(authority.pubkey(), 10_000 * 10**9)
        settlement = await SolanaSettlement.bootstrap(chain, authority)
        return cls(settlement, name="litesvm", cluster="litesvm (in-process)",
                   mint_reserve=True, **kwargs)

    @classmethod
    async def rpc(cls, url: str, authority: Keypair, accounts_file: Path,
                  commitment: str = "confirmed", **kwargs: Any) -> SolanaBackend:
        """A cluster at ``url``; the market's addresses come from ``accounts_file`` (JSON of
        :class:`SettlementAccounts`), bootstrapped there on first start (dev clusters)."""
        import json

        chain = RpcChain(url, commitment)
        if accounts_file.exists():
            acc = SettlementAccounts(**json.loads(accounts_file.read_text()))
            if acc.authority != str(authority.pubkey()):
                raise InvalidInput(f"{accounts_file} names authority {acc.authority}, but the "
                                   f"keypair is {authority.pubkey()}")
            added = {}
            for vault in ("audit_vault", "emissions_vault", "request_vault"):  # newer vaults
                if not getattr(acc, vault):
                    added[vault] = str(await chain.create_token_account(
                        authority.pubkey(), spl.to_pubkey(acc.mint), authority))
            if added:
                acc = SettlementAccounts(**{**asdict(acc), **added})
                accounts_file.write_text(json.dumps(asdict(acc), indent=2))
            settlement = SolanaSettlement(chain, mint=acc.mint, authority=authority,
                                          treasury=acc.treasury, stake_vault=acc.stake_vault,
                                          rewards_vault=acc.rewards_vault,
                                          audit_vault=acc.audit_vault,
                                          emissions_vault=acc.emissions_vault,
                                          request_vault=acc.request_vault)
            return cls(settlement, name="solana", cluster=url, **kwargs)
        settlement = await SolanaSettlement.bootstrap(chain, authority)
        accounts_file.parent.mkdir(parents=True, exist_ok=True)
        accounts_file.write_text(json.dumps(asdict(settlement.accounts), indent=2))
        return cls(settlement, name="solana", cluster=url, mint_reserve=True, **kwargs)

    # -- in the services' unit of work --------------------------------------------------------

    def check_post(self, uow: UnitOfWork, client: str, deposit: int) -> None:
        mirror.check_allowance(uow, client, deposit)

    def on_job_settled(self, uow: UnitOfWork, event: JobSettled) -> None:
        s, entry = self.settlement, _booked(event)
        mirror.enqueue_payout(uow, event.job, entry, treasury=str(s.treasury),
                              rewards_vault=str(s.rewards_vault),
                              audit_vault=str(s.audit_vault or ""), at=self.clock())
        # a dispute's settle entry pays runners from the pool
        mirror.enqueue_pool_payouts(uow, entry, pools=self._pools(), at=self.clock())
        vault = s.request_vault
        if vault is not None and event.job.client == str(vault) and event.refund > 0:
            request = ChainRequestRepo(uow.conn).for_job(event.job.id)
            if request is not None:  # the unused deposit goes back to who paid
                reason = (RefundReason.UNUSED if event.job.outcome is Outcome.COMPLETED
                          else RefundReason.JOB_ENDED)
                request_vault.enqueue_refund(uow, str(vault), request.signature,
                                             event.refund, reason, int(self.clock()),
                                             job_id=event.job.id)

    def on_usage_billed(self, uow: UnitOfWork, event: UsageBilled) -> None:
        mirror.enqueue_usage_payout(uow, _booked(event), event.owner,
                                    treasury=str(self.settlement.treasury), at=self.clock())

    def on_job_posted(self, uow: UnitOfWork, event: JobPosted) -> None:
        if event.posting_fee > 0:
            mirror.enqueue_usage_payout(uow, _booked(event), event.client,
                                        treasury=str(self.settlement.treasury),
                                        at=self.clock(), label=f"posting-fee-{event.job_id}")

    def on_pool_payout(self, uow: UnitOfWork, event: Event) -> None:
        mirror.enqueue_pool_payouts(uow, _booked(event), pools=self._pools(), at=self.clock())

    def after_money_moved(self, event: Event) -> None:
        """Wake the sender once the outbox rows of ``event`` are committed."""
        if self.sender is not None:
            self.sender.wake.set()

    def _pools(self) -> list[str]:
        """The protocol pools this market has vaults for."""
        s = self.settlement
        return [pool for pool, vault in ((AUDIT_POOL, s.audit_vault),
                                         (REWARDS_POOL, s.emissions_vault)) if vault]

    # -- receipts (issue 17): queued in the transaction that issued them --------------------

    def on_receipt_issued(self, uow: UnitOfWork, event: ReceiptIssued) -> None:
        """Queue the receipt for publication (a signature check + Memo batch)."""
        if not self.publish_receipts:
            return
        stored = ReceiptRepo(uow.conn).get(event.receipt_id)
        OutboxRepo(uow.conn).add(kind=OutboxKind.RECEIPT, job_id=event.job_id,
                                 entry_hash=hashlib.sha256(stored.signed.receipt).hexdigest(),
                                 seq=event.receipt_id, legs=[], at=self.clock())

    def on_attestor_rotated(self, uow: UnitOfWork, event: AttestorRotated) -> None:
        """Queue the epoch's Memo (``nosgrid attestor epoch=N key=K [sig=S]``)."""
        if not self.publish_receipts:
            return
        statement = f"{event.epoch}:{event.key}:{event.signature}".encode()
        OutboxRepo(uow.conn).add(kind=OutboxKind.ATTESTOR,
                                 entry_hash=hashlib.sha256(statement).hexdigest(),
                                 seq=event.epoch, legs=[], at=self.clock())

    def observed_slot(self) -> int:
        """The chain slot receipts cite: LiteSVM's own, else the sender's last pass."""
        if isinstance(self.chain, LiteSVMChain):
            return int(self.chain.svm.get_clock().slot)
        return self.sender.last_slot if self.sender is not None else 0

    def check_stake(self, uow: UnitOfWork, owner: str, amount: int) -> None:
        mirror.check_stake(uow, owner, amount)

    def on_stake_moved(self, uow: UnitOfWork, event: Event) -> None:
        if event.entry is None:  # nothing moved (a slash of a node that has no stake)
            return
        mirror.enqueue_stake_moves(uow, _booked(event),
                                   stake_vault_account=str(self.settlement.stake_vault),
                                   treasury=str(self.settlement.treasury), at=self.clock())

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self, store: Store, now: int) -> None:
        """Start (or check) the ledger's mirror of this market's chain accounts."""
        s = self.settlement
        with store.uow(write=False) as uow:
            first = mirror.opening(uow) is None
            reserve = uow.ledger.balance(RESERVE) + uow.ledger.balance(REWARDS_POOL)
        if first and self.mint_reserve and s.emissions_vault is not None and reserve > 0:
            await s.fund_emissions(reserve)
        optional = {"audit_vault": s.audit_vault, "emissions_vault": s.emissions_vault}
        named = {"treasury": s.treasury, "rewards_vault": s.rewards_vault,
                 "stake_vault": s.stake_vault,
                 **{n: key for n, key in optional.items() if key is not None}}
        names = list(named)
        infos = await self.chain.token_account_infos(list(named.values()))
        baseline = {n: (0 if i is None else i.amount) for n, i in zip(names, infos, strict=True)}
        if "emissions_vault" in baseline:  # the vault mirrors the reserve the ledger holds
            baseline["emissions_vault"] -= reserve
        with store.uow() as uow:
            mirror.open_mirror(uow, asdict(s.accounts), baseline, now)
            uow.commit()

    async def start(self, store: Store) -> None:
        self.sender = Sender(store, self.settlement, batch_size=self.batch_size,
                             anchor_every=self.anchor_every, clock=self.clock)
        self._task = asyncio.create_task(self.sender.run(self.sender_interval_s))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if isinstance(self.chain, RpcChain):
            await self.chain.close()

    # -- what the routes call -----------------------------------------------------------------

    async def info(self) -> dict[str, Any]:
        if isinstance(self.chain, LiteSVMChain):
            # LiteSVM keeps one blockhash until told otherwise: give each client transaction
            # its own, so approving the same amount twice is not a duplicate transaction
            self.chain.svm.expire_blockhash()
        acc = self.settlement.accounts
        return {"settlement": self.name, "cluster": self.cluster, **asdict(acc),
                "decimals": self.settlement.decimals,
                "recent_blockhash": str(await self.chain.latest_blockhash())}

    async def relay(self, raw: bytes, signer: str) -> str:
        """Submit a transaction the client signed (an approval), after checking it only
        calls token/ATA/memo programs and is paid for and signed by ``signer``."""
        try:
            tx = Transaction.from_bytes(raw)
        except ValueError as exc:
            raise InvalidInput(f"not a serialized Solana transaction: {exc}") from exc
        message = tx.message
        keys = message.account_keys
        if not keys or str(keys[0]) != signer:
            raise Forbidden("the transaction's fee payer must be the key that signs the "
                            "request")
        if not tx.verify_with_results() or not all(tx.verify_with_results()):
            raise InvalidInput("the transaction's signatures do not verify; sign it again")
        for ix in message.instructions:
            program = str(keys[ix.program_id_index])
            if program not in RELAY_PROGRAMS:
                raise Forbidden(f"the coordinator relays only token approvals; program "
                                f"{program} is not allowed")
        prepared = PreparedTransaction(str(tx.signatures[0]), tx)
        if await self.chain.confirmed(prepared.signature):
            raise InvalidInput("this exact transaction was already processed; build it again "
                               "with a fresh blockhash (GET /v1/solana/info)")
        return await self.chain.submit(prepared)

    async def allowance(self, client: str) -> int:
        return await self.settlement.allowance(client)

    async def sync(self, store: Store, client: str, now: int) -> dict[str, Any]:
        """Mirror ``client``'s on-chain allowance into the ledger; their account view."""
        allowance = await self.settlement.allowance(client)
        balance = (await self.settlement.balances([client]))[client]
        with store.uow() as uow:
            free = mirror.sync_allowance(uow, client, allowance, now)
            reserved = mirror.reserved_for(uow, client)
            uow.commit()
        return {"pubkey": client, "token_account": self.settlement.token_account(client),
                "onchain_balance": balance, "allowance": allowance, "free": free,
                "reserved": reserved}

    async def account(self, store: Store, client: str) -> dict[str, Any]:
        allowance = await self.settlement.allowance(client)
        balance = (await self.settlement.balances([client]))[client]
        with store.uow(write=False) as uow:
            free = uow.ledger.balance(wallet(client))
            reserved = mirror.reserved_for(uow, client)
        return {"pubkey": client, "token_account": self.settlement.token_account(client),
                "onchain_balance": balance, "allowance": allowance, "free": free,
                "reserved": reserved}

    async def faucet(self, owner: str, amount: int) -> int:
        """Dev faucet on LiteSVM: SOL for fees and ``amount`` NOS minted to ``owner``."""
        if not isinstance(self.chain, LiteSVMChain):
            raise Forbidden("the on-chain faucet exists only with --settlement litesvm")
        await self.chain.airdrop_sol(owner, LITESVM_CLIENT_SOL)
        await self.settlement.faucet(owner, amount)
        return (await self.settlement.balances([owner]))[owner]

    def payouts(self, store: Store, job_id: str) -> list[dict[str, Any]]:
        with store.uow(write=False) as uow:
            rows = OutboxRepo(uow.conn).for_job(job_id)
        return [{"kind": r.kind.value, "status": r.status.value, "signature": r.signature,
                 "attempts": r.attempts,
                 "error": r.error, "entry_hash": r.entry_hash,
                 "legs": [asdict(leg) for leg in r.legs], "created_at": r.created_at,
                 "confirmed_at": r.confirmed_at} for r in rows]

    # -- verification -----------------------------------------------------------------------

    async def reconcile(self, store: Store) -> dict[str, Any]:
        """The ledger check plus anchors and on-chain balances (``verify --onchain``)."""
        s = self.settlement
        with store.uow(write=False) as uow:
            entries = uow.ledger.entries()
            balances = uow.ledger.balances()
            outbox = OutboxRepo(uow.conn)
            unconfirmed = outbox.unconfirmed()
            anchors = outbox.in_status(OutboxStatus.CONFIRMED, kind=OutboxKind.ANCHOR)
            opened = mirror.opening(uow) or {}
            vault = str(s.request_vault) if s.request_vault is not None else None
            wallets = sorted(name.removeprefix("wallet:") for name in balances
                             if name.startswith("wallet:") and name != wallet(vault or ""))
            vault_expected = (request_vault.expected_balance(uow, vault)
                              if vault is not None else 0)
            expected_allowance = {pk: balances[wallet(pk)] + mirror.reserved_for(uow, pk)
                                  for pk in wallets}
            pool_runs = mirror.open_pool_run_escrows(uow)
        report = verify(entries, balances).as_dict()
        problems: list[str] = list(report["problems"])
        notes: list[str] = []
        if opened.get("mint") != str(s.mint):
            problems.append(f"the ledger mirrors mint {opened.get('mint')}, the market uses "
                            f"{s.mint}")
        by_hash = {e.seq: e.hash for e in entries}
        checked_anchors = 0
        for row in anchors:
            if by_hash.get(row.seq or -1) != row.entry_hash:
                problems.append(f"anchor seq={row.seq}: the journal no longer has hash "
                                f"{row.entry_hash[:16]}… there (rewritten history?)")
                continue
            logs = await self.chain.transaction_logs(row.signature or "")
            memo = spl.anchor_memo_text(row.entry_hash, row.seq or 0)
            if logs is None or not any(memo in line for line in logs):
                problems.append(f"anchor seq={row.seq}: transaction {row.signature} with memo "
                                f"{memo!r} is not on chain")
                continue
            checked_anchors += 1
        pending: dict[str, int] = {}  # owed into these accounts, not yet on chain
        leaving: dict[str, int] = {}  # owed out of these vaults, not yet on chain
        for row in unconfirmed:
            for leg in row.legs:
                into = STAKES if leg.account.startswith(mirror.STAKE_PREFIX) else leg.account
                pending[into] = pending.get(into, 0) + leg.amount
            out_of = {OutboxKind.STAKE_WITHDRAW: STAKES, OutboxKind.SLASH: STAKES,
                      OutboxKind.REWARDS_CLAIM: STAKERS_POOL,
                      OutboxKind.AUDIT_PAY: AUDIT_POOL,
                      OutboxKind.EMISSION: EMISSIONS}.get(row.kind)
            if out_of is not None:
                leaving[out_of] = leaving.get(out_of, 0) + row.total
            if row.error:
                notes.append(f"outbox {row.kind.value} {row.job_id or row.source or row.seq}: "
                             f"{row.status.value}, last error: {row.error.splitlines()[0]}")
        base = opened.get("baseline", {})
        keys = [s.treasury, s.rewards_vault, s.stake_vault]
        vaults = [(TREASURY, "treasury", balances.get(TREASURY, 0)),
                  (STAKERS_POOL, "rewards_vault", balances.get(STAKERS_POOL, 0)),
                  (STAKES, "stake_vault", sum(v for k, v in balances.items()
                                              if k.startswith(mirror.STAKE_PREFIX)))]
        if s.audit_vault is not None:  # the pool, and the escrows of the runs it funds
            keys.append(s.audit_vault)
            vaults.append((AUDIT_POOL, "audit_vault", balances.get(AUDIT_POOL, 0) + pool_runs))
        if s.emissions_vault is not None:  # the reserve not yet paid to providers
            keys.append(s.emissions_vault)
            vaults.append((EMISSIONS, "emissions_vault",
                           balances.get(RESERVE, 0) + balances.get(REWARDS_POOL, 0)))
        infos = await self.chain.token_account_infos(keys)
        rows: list[dict[str, Any]] = []
        for (account, base_key, ledger), info in zip(vaults, infos, strict=True):
            onchain = info.amount if info else 0
            want = (ledger - pending.get(account, 0) + leaving.get(account, 0)
                    + int(base.get(base_key, 0)))
            rows.append({"account": account, "ledger": ledger,
                         "pending": pending.get(account, 0),
                         "leaving": leaving.get(account, 0), "onchain": onchain,
                         "expected_onchain": want})
            if want != onchain:
                problems.append(f"{account}: chain holds {onchain} but the ledger says {want} "
                                f"(after {pending.get(account, 0)} pending in, "
                                f"{leaving.get(account, 0)} pending out)")
        if s.request_vault is not None:  # what chain requests paid in, less what left
            info = await self.chain.token_account_info(s.request_vault)
            held = info.amount if info else 0
            rows.append({"account": "request_vault", "ledger": balances.get(wallet(str(
                s.request_vault)), 0), "onchain": held, "expected_onchain": vault_expected})
            if held < vault_expected:
                problems.append(f"request_vault: chain holds {held} but the ledger says "
                                f"{vault_expected}")
            elif held > vault_expected:
                notes.append(f"request_vault: {held - vault_expected} paid in on chain but "
                             "not yet read by the request watcher")
        for pk in wallets:
            allowance = await s.allowance(pk)
            want = expected_allowance[pk]
            rows.append({"account": wallet(pk), "ledger": balances[wallet(pk)],
                         "reserved": want - balances[wallet(pk)], "onchain": allowance,
                         "expected_onchain": want})
            if allowance < want:
                problems.append(f"{wallet(pk)}: the chain allows the market {allowance} but the "
                                f"ledger counts on {want}; the client must approve more")
            elif allowance > want:
                notes.append(f"{wallet(pk)}: {allowance - want} approved on chain but not yet "
                             "synced (POST /v1/solana/sync)")
        report.update(ok=not problems, problems=problems, notes=notes, accounts_checked=rows,
                      anchors_checked=checked_anchors, outbox=_counts(unconfirmed),
                      mint=str(s.mint), settlement=self.name)
        return report


def _booked(event: Event) -> JournalEntry:
    """The journal entry that recorded a money event (the service books it first)."""
    if event.entry is None:
        raise InvalidInput(f"{event.name} carries no journal entry to pay out")
    return event.entry


def _counts(rows: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r.status.value] = out.get(r.status.value, 0) + 1
    return out


async def open_backend(kind: str, *, rpc_url: str, commitment: str,
                       authority_keypair: Path | None, accounts_file: Path,
                       batch_size: int = 1, anchor_every: int = 0,
                       clock: Callable[[], float] = time.time,
                       publish_receipts: bool = True) -> SolanaBackend:
    """The configured non-local backend: ``litesvm`` or ``solana`` (RPC)."""
    authority = None
    if authority_keypair is not None:
        if not authority_keypair.exists():
            raise InvalidInput(f"no authority keypair at {authority_keypair}")
        authority = keypair_from_json(authority_keypair.read_text(), str(authority_keypair))
    options: dict[str, Any] = {"batch_size": batch_size, "anchor_every": anchor_every,
                               "clock": clock, "publish_receipts": publish_receipts}
    if kind == "litesvm":
        return await SolanaBackend.litesvm(authority, **options)
    if kind == "solana":
        if authority is None:
            raise InvalidInput("--settlement solana needs --authority-keypair (the market's "
                               "settlement authority, a solana-keygen id.json)")
        return await SolanaBackend.rpc(rpc_url, authority, accounts_file, commitment, **options)
    raise InvalidInput(f"unknown settlement {kind!r}; use local, litesvm or solana")
