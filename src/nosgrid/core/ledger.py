"""The double-entry ledger: accounts, postings, hash-chained journal entries, verification.

Every movement of NOS is a :class:`Posting` from one account to another, grouped into a
:class:`JournalEntry`. Each entry carries the sha256 of the previous entry, so the journal
is a hash chain anyone can recompute.

Accounts (names are strings; the prefix says the kind):

======================  ======================================================
``genesis``             the mint. Entry 0 moves the whole 100M NOS supply out of it
                        into the allocation accounts; it is the only account that
                        may be negative (it holds exactly ``-TOTAL_SUPPLY``).
``alloc:<name>``        genesis allocations (community, team, investors, reserve)
``wallet:<pubkey>``     a client's or node's spendable balance
``escrow:<job_id>``     a job's deposit while the job is open
``replicas:<job_id>``   the deposits a client reserved for its job's redundant runs
``gwhold:<kid>:<w>``    a client's money held for the gateway requests of one API key,
                        by one gateway worker ``w`` (a coordinator process)
``stake:<pubkey>``      a node's stake vault
``treasury``            the protocol's fee income
``rewards_pool``        emissions for providers (funded from the reserve)
``stakers_pool``        fees owed to stakers until they claim
======================  ======================================================

Invariants (checked by property tests and by ``nosgrid ledger verify``):

1. the sum over all accounts is zero (double entry), so the sum over every account
   but ``genesis`` is the minted supply, 100,000,000 NOS once genesis has run;
2. no account but ``genesis`` is ever negative;
3. every entry's ``prev_hash`` is the previous entry's ``hash`` and its ``hash`` is the
   sha256 of its canonical body;
4. replaying the journal from empty gives the stored balances.

>>> e0 = genesis_entry({"alloc:community": TOTAL_SUPPLY}, at=0)
>>> balances = replay([e0])
>>> balances["alloc:community"] == TOTAL_SUPPLY
True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from nosgrid.core.errors import InsufficientFunds, InvalidAmount, LedgerCorrupt
from nosgrid.core.money import TOTAL_SUPPLY, format_nos

GENESIS: Final = "genesis"
TREASURY: Final = "treasury"
REWARDS_POOL: Final = "rewards_pool"
STAKERS_POOL: Final = "stakers_pool"
#: collects audit fees and pays auditors and tiebreakers (docs/verification.md)
AUDIT_POOL: Final = "audit_pool"
ZERO_HASH: Final = "0" * 64

#: The default genesis split (basis points of supply). ``core.tokenomics`` owns the
#: full schedule; this is what a fresh local marketplace mints.
DEFAULT_ALLOCATION_BPS: Final[Mapping[str, int]] = {
    "alloc:community": 3_000,
    "alloc:team": 2_500,
    "alloc:investors": 2_000,
    "alloc:reserve": 2_500,
}


def wallet(pubkey: str) -> str:
    """The spendable account of a key (client or node)."""
    return f"wallet:{pubkey}"


def escrow(job_id: str) -> str:
    """The escrow account that holds one job's deposit."""
    return f"escrow:{job_id}"


def replica_reserve(job_id: str) -> str:
    """What a client reserved for the redundant runs of one job (``replicas`` > 1)."""
    return f"replicas:{job_id}"


GATEWAY_HOLD_PREFIX: Final = "gwhold:"


def gateway_hold(kid: str, worker: str) -> str:
    """The account that holds a gateway key's pre-paid, not yet charged money in one
    gateway worker (each coordinator process spends only from its own holds).

    >>> gateway_hold("k1", "w7")
    'gwhold:k1:w7'
    """
    return f"{GATEWAY_HOLD_PREFIX}{kid}:{worker}"


GATEWAY_AUDIT_PREFIX: Final = "gwaudit:"


def gateway_audit_hold(owner: str, node: str) -> str:
    """What ``owner``'s gateway requests served by ``node`` cost, held for their audit
    window (issue 14): paid to the node and the treasury when it ends, back to the owner
    when an audit fails.

    >>> gateway_audit_hold("alice", "n1")
    'gwaudit:alice:n1'
    """
    return f"{GATEWAY_AUDIT_PREFIX}{owner}:{node}"


def stake_vault(pubkey: str) -> str:
    """The stake vault of a node operator."""
    return f"stake:{pubkey}"


@dataclass(frozen=True, slots=True)
class Posting:
    """Move ``amount`` base units from account ``src`` to account ``dst``."""

    src: str
    dst: str
    amount: int

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount <= 0:
            raise InvalidAmount(f"a posting moves a positive integer amount, got {self.amount!r}")
        if self.src == self.dst:
            raise InvalidAmount(f"a posting must move between two accounts, got {self.src!r} twice")

    def as_list(self) -> list[Any]:
        return [self.src, self.dst, self.amount]


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One atomic group of postings, chained to the previous entry by hash."""

    seq: int
    kind: str
    ref: str
    at: int
    postings: tuple[Posting, ...]
    prev_hash: str
    hash: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return entry_body(self.seq, self.kind, self.ref, self.at, self.postings, self.prev_hash,
                          self.meta)


def entry_body(
    seq: int,
    kind: str,
    ref: str,
    at: int,
    postings: Sequence[Posting],
    prev_hash: str,
    meta: Mapping[str, Any],
) -> dict[str, Any]:
    """The dictionary that an entry's hash covers."""
    return {
        "seq": seq,
        "kind": kind,
        "ref": ref,
        "at": at,
        "postings": [p.as_list() for p in postings],
        "prev_hash": prev_hash,
        "meta": dict(meta),
    }


def hash_body(body: Mapping[str, Any]) -> str:
    """sha256 over the canonical JSON of an entry body (sorted keys, no spaces)."""
    raw = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()


def make_entry(
    *,
    seq: int,
    prev_hash: str,
    kind: str,
    ref: str,
    at: int,
    postings: Sequence[Posting],
    meta: Mapping[str, Any] | None = None,
) -> JournalEntry:
    """Build the next journal entry (pure). ``at`` is unix seconds passed in by the caller."""
    meta = dict(meta or {})
    body = entry_body(seq, kind, ref, at, postings, prev_hash, meta)
    return JournalEntry(seq, kind, ref, at, tuple(postings), prev_hash, hash_body(body), meta)


def genesis_entry(allocations: Mapping[str, int], *, at: int) -> JournalEntry:
    """Entry 0: mint the whole supply out of ``genesis`` into the allocation accounts."""
    if sum(allocations.values()) != TOTAL_SUPPLY:
        raise InvalidAmount(
            f"genesis must mint exactly the supply ({format_nos(TOTAL_SUPPLY)} NOS), "
            f"got {format_nos(sum(allocations.values()))}"
        )
    postings = [Posting(GENESIS, acct, amt) for acct, amt in sorted(allocations.items()) if amt]
    return make_entry(seq=0, prev_hash=ZERO_HASH, kind="genesis", ref="", at=at,
                      postings=postings)


def default_allocations() -> dict[str, int]:
    """The default genesis allocation in base units (rounding dust goes to the reserve)."""
    out = {acct: TOTAL_SUPPLY * bps // 10_000 for acct, bps in DEFAULT_ALLOCATION_BPS.items()}
    out["alloc:reserve"] += TOTAL_SUPPLY - sum(out.values())
    return out


def balance_deltas(postings: Iterable[Posting]) -> dict[str, int]:
    """Net change per account implied by ``postings``."""
    deltas: dict[str, int] = {}
    for p in postings:
        deltas[p.src] = deltas.get(p.src, 0) - p.amount
        deltas[p.dst] = deltas.get(p.dst, 0) + p.amount
    return deltas


def check_postings(balances: Mapping[str, int], postings: Sequence[Posting]) -> dict[str, int]:
    """Return the new balances of the touched accounts, or raise if one would go negative.

    The check is on the net effect of the whole entry, so an entry may pass money
    through an account (escrow → node → treasury) as long as it ends non-negative.
    """
    new: dict[str, int] = {}
    for account, delta in balance_deltas(postings).items():
        after = balances.get(account, 0) + delta
        if after < 0 and account != GENESIS:
            raise InsufficientFunds(
                f"{account} has {format_nos(balances.get(account, 0))} NOS but "
                f"{format_nos(-delta)} NOS is needed",
                account=account,
                balance=balances.get(account, 0),
                needed=-delta,
            )
        new[account] = after
    return new


def replay(entries: Iterable[JournalEntry]) -> dict[str, int]:
    """Rebuild every balance from the journal, checking non-negativity as it goes."""
    balances: dict[str, int] = {}
    for entry in entries:
        balances.update(check_postings(balances, entry.postings))
    return balances


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What ``verify`` found; ``ok`` when ``problems`` is empty."""

    entries: int
    accounts: int
    supply: int
    head_hash: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "accounts": self.accounts,
            "supply": format_nos(self.supply),
            "head_hash": self.head_hash,
            "problems": list(self.problems),
        }


def verify(
    entries: Sequence[JournalEntry], stored_balances: Mapping[str, int]
) -> VerifyReport:
    """Check the chain, the invariants and that replay reproduces ``stored_balances``."""
    problems: list[str] = []
    prev = ZERO_HASH
    replayed: dict[str, int] = {}
    for i, entry in enumerate(entries):
        if entry.seq != i:
            problems.append(f"entry {i}: sequence number is {entry.seq}, expected {i}")
        if entry.prev_hash != prev:
            problems.append(f"entry {entry.seq}: prev_hash does not match entry {entry.seq - 1}")
        if hash_body(entry.body()) != entry.hash:
            problems.append(f"entry {entry.seq}: hash does not match its contents (tampered?)")
        prev = entry.hash
        for account, delta in balance_deltas(entry.postings).items():
            replayed[account] = replayed.get(account, 0) + delta
            if replayed[account] < 0 and account != GENESIS:
                problems.append(f"entry {entry.seq}: {account} goes negative")
    total = sum(stored_balances.values())
    if total != 0:
        problems.append(f"balances do not sum to zero (off by {total} base units)")
    minted = -stored_balances.get(GENESIS, 0)
    if entries and minted != TOTAL_SUPPLY:
        problems.append(f"minted supply is {format_nos(minted)} NOS, expected the full supply")
    for account, amount in sorted(stored_balances.items()):
        if amount < 0 and account != GENESIS:
            problems.append(f"{account} is negative ({amount})")
    for account in sorted(set(replayed) | set(stored_balances)):
        if replayed.get(account, 0) != stored_balances.get(account, 0):
            problems.append(
                f"{account}: stored balance {stored_balances.get(account, 0)} but the journal "
                f"gives {replayed.get(account, 0)}"
            )
    return VerifyReport(len(entries), len(stored_balances), minted, prev, tuple(problems))


def require_ok(report: VerifyReport) -> None:
    """Raise :class:`LedgerCorrupt` listing the problems unless ``report`` is clean."""
    if not report.ok:
        raise LedgerCorrupt("ledger verification failed: " + "; ".join(report.problems[:5]))
