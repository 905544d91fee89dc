"""Staking: locked NOS, stake score (xNOS-style), linear unlock, and O(1) fee rewards.

A node operator locks ``amount`` base units for ``days`` (14–365). Its **stake score** is
``amount × multiplier_bps // 10_000`` with ``multiplier_bps = 10_000 + 30_000 × lock /
365 days`` (floor): 1.115× at 14 days, exactly 4× at 365 days. This is Nosana's xNOS
rule (``1 + duration / 121.67 days``) with the exact ``365/3`` days in place of the
rounded 121.67, computed in integers.

``unstake`` drops the score to 0 at once and starts a linear unlock over the lock
duration; ``withdraw`` moves only the unlocked part back to the wallet. ``restake``
cancels an unstake, ``top_up`` adds tokens and ``extend`` lengthens the lock.

Stakers' share of job fees lands in ``stakers_pool`` (by the job's settle postings);
:func:`distribute_fees` records it in a reward-per-score accumulator in O(1). Each
account keeps a snapshot of the accumulator, so its rewards are computed only when it
is touched (stake, unstake, claim, slash) — never by a loop over all stakers.

Rounding rule (conservation): the accumulator grows by ``(fee × P + rem) // total_score``
and keeps ``rem``; each account keeps the scaled remainder of its own accrual. Hence the
sum ever owed to stakers is ``≤`` the sum of fees, and the difference ("dust", < one
base unit per account) stays in ``stakers_pool``. Fees arriving while nobody stakes wait
in ``undistributed`` for the next event.

>>> pool = RewardPool()
>>> r = stake(pool, None, "alice", 100_000_000, 365, now=0)
>>> r.account.score, [(p.src, p.dst, p.amount) for p in r.postings]
(400000000, [('wallet:alice', 'stake:alice', 100000000)])
>>> pool = distribute_fees(r.pool, 1_000, now=1).pool
>>> pending_rewards(pool, r.account)
1000
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from nosgrid.core.errors import Conflict, InvalidAmount, InvalidInput, NotFound, StakeLocked
from nosgrid.core.events import (
    Event,
    Restaked,
    RewardsClaimed,
    Staked,
    StakeExtended,
    StakerFeesDistributed,
    StakeToppedUp,
    StakeWithdrawn,
    Unstaked,
)
from nosgrid.core.ledger import STAKERS_POOL, Posting, stake_vault, wallet
from nosgrid.core.money import BASE_UNITS_PER_NOS, TOTAL_SUPPLY, format_nos

DAY: Final = 86_400
MIN_LOCK_DAYS: Final = 14
MAX_LOCK_DAYS: Final = 365
#: multiplier at the longest lock (4×, as xNOS)
MAX_MULTIPLIER_BPS: Final = 40_000
MIN_STAKE_AMOUNT: Final = 1 * BASE_UNITS_PER_NOS
#: scale of the reward-per-score accumulator; 1e24 keeps the per-event rounding error
#: below 1e-9 base units even with the whole supply staked at 4×
REWARD_PRECISION: Final = 10**24


class LockOutOfRange(InvalidInput):
    code = "lock_out_of_range"
    default_message = f"Lock for {MIN_LOCK_DAYS} to {MAX_LOCK_DAYS} days."


class StakeAmountOutOfRange(InvalidAmount):
    code = "stake_amount_out_of_range"
    default_message = "Stake at least 1 NOS and at most the total supply."


class NothingToClaim(Conflict):
    code = "nothing_to_claim"
    default_message = "No rewards are owed to this stake yet."


class StakeStateError(Conflict):
    code = "stake_state"
    default_message = "The stake is not in a state that allows this action."


class StakeNotFound(NotFound):
    code = "stake_not_found"
    default_message = "This key has no stake; stake first with `nosgrid stake create`."


@dataclass(frozen=True, slots=True)
class StakingParams:
    """Staking rules; defaults follow Nosana's xNOS."""

    min_lock_days: int = MIN_LOCK_DAYS
    max_lock_days: int = MAX_LOCK_DAYS
    max_multiplier_bps: int = MAX_MULTIPLIER_BPS
    min_amount: int = MIN_STAKE_AMOUNT
    max_amount: int = TOTAL_SUPPLY

    def __post_init__(self) -> None:
        if not 0 < self.min_lock_days <= self.max_lock_days:
            raise InvalidInput("need 0 < min_lock_days <= max_lock_days")
        if self.max_multiplier_bps < 10_000:
            raise InvalidInput("max_multiplier_bps must be at least 10000 (1×)")
        if not 0 < self.min_amount <= self.max_amount <= TOTAL_SUPPLY:
            raise InvalidInput("need 0 < min_amount <= max_amount <= TOTAL_SUPPLY")


DEFAULT_STAKING: Final = StakingParams()


def multiplier_bps(days: int, params: StakingParams = DEFAULT_STAKING) -> int:
    """Score multiplier (bps) for ``days``: 1× plus ``max − 1``× pro rata to the longest lock.

    >>> multiplier_bps(14), multiplier_bps(365)
    (11150, 40000)
    """
    check_lock(days, params)
    extra = params.max_multiplier_bps - 10_000
    return 10_000 + extra * days // params.max_lock_days


def check_lock(days: int, params: StakingParams = DEFAULT_STAKING) -> int:
    """Return ``days`` if it is an allowed lock, else raise :class:`LockOutOfRange`."""
    if isinstance(days, bool) or not isinstance(days, int):
        raise LockOutOfRange(f"lock must be a whole number of days, got {days!r}")
    if not params.min_lock_days <= days <= params.max_lock_days:
        raise LockOutOfRange(
            f"lock of {days} days is outside {params.min_lock_days}..{params.max_lock_days} days",
            days=days,
        )
    return days


def _check_amount(amount: int, params: StakingParams, *, total: int | None = None) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise StakeAmountOutOfRange(f"stake amount must be a positive integer, got {amount!r}")
    after = amount if total is None else total
    if after < params.min_amount:
        raise StakeAmountOutOfRange(
            f"stake of {format_nos(after)} NOS is below the minimum of "
            f"{format_nos(params.min_amount)} NOS"
        )
    if after > params.max_amount:
        raise StakeAmountOutOfRange(
            f"stake of {format_nos(after)} NOS is above the maximum of "
            f"{format_nos(params.max_amount)} NOS"
        )


@dataclass(frozen=True, slots=True)
class RewardPool:
    """Global accumulator state of the stakers' pool (one row)."""

    total_score: int = 0
    acc: int = 0  # rewards per unit of score, × REWARD_PRECISION
    rem: int = 0  # scaled remainder not yet folded into ``acc``
    undistributed: int = 0  # fees received while nobody had a score
    total_funded: int = 0
    total_claimed: int = 0


@dataclass(frozen=True, slots=True)
class StakeAccount:
    """One operator's stake. ``amount`` is the balance of ``stake:<owner>``."""

    owner: str
    amount: int = 0
    days: int = 0
    multiplier_bps: int = 10_000
    score: int = 0
    staked_at: int = 0
    unstaked_at: int | None = None
    unlock_base: int = 0  # amount when unstaked: the linear unlock runs over this
    withdrawn: int = 0  # withdrawn since the unstake
    acc_snapshot: int = 0
    reward_frac: int = 0
    owed: int = 0  # settled, unclaimed rewards

    @property
    def active(self) -> bool:
        """Staked and not unstaking (the stake counts for markets and rewards)."""
        return self.amount > 0 and self.unstaked_at is None

    @property
    def market_stake(self) -> int:
        """What counts against a market's ``min_stake``: the active amount, else 0."""
        return self.amount if self.active else 0


@dataclass(frozen=True, slots=True)
class StakeResult:
    """New pool and account, the events and the ledger postings of one staking action."""

    pool: RewardPool
    account: StakeAccount
    events: tuple[Event, ...] = ()
    postings: tuple[Posting, ...] = ()


# --------------------------------------------------------------------- accumulator


def settle_rewards(pool: RewardPool, account: StakeAccount) -> StakeAccount:
    """Fold the rewards accrued since the account's snapshot into ``owed`` (pure, O(1))."""
    if account.acc_snapshot == pool.acc:
        return account
    scaled = account.score * (pool.acc - account.acc_snapshot) + account.reward_frac
    owed, frac = divmod(scaled, REWARD_PRECISION)
    return replace(account, owed=account.owed + owed, reward_frac=frac, acc_snapshot=pool.acc)


def pending_rewards(pool: RewardPool, account: StakeAccount) -> int:
    """Rewards ``account`` could claim now, in base units."""
    return settle_rewards(pool, account).owed


def set_score(
    pool: RewardPool, account: StakeAccount, score: int
) -> tuple[RewardPool, StakeAccount]:
    """Change an account's score after settling what it earned at the old score."""
    account = settle_rewards(pool, account)
    pool = replace(pool, total_score=pool.total_score - account.score + score)
    return pool, replace(account, score=score)


@dataclass(frozen=True, slots=True)
class FeesDistributed:
    pool: RewardPool
    events: tuple[Event, ...]


def distribute_fees(pool: RewardPool, amount: int, now: int) -> FeesDistributed:
    """Record ``amount`` base units that just arrived in ``stakers_pool``; O(1).

    No postings: the money moved with the job's settle entry.

    >>> p = distribute_fees(RewardPool(), 5, now=0).pool
    >>> p.undistributed  # nobody stakes yet: kept for the next event
    5
    """
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise InvalidAmount(f"fee amount must be a non-negative integer, got {amount!r}")
    funded = pool.total_funded + amount
    if pool.total_score == 0:
        new = replace(pool, undistributed=pool.undistributed + amount, total_funded=funded)
    else:
        scaled = (amount + pool.undistributed) * REWARD_PRECISION + pool.rem
        step, rem = divmod(scaled, pool.total_score)
        new = replace(pool, acc=pool.acc + step, rem=rem, undistributed=0, total_funded=funded)
    return FeesDistributed(new, (StakerFeesDistributed(at=now, amount=amount),))


# --------------------------------------------------------------------- commands


def _score(amount: int, mult_bps: int) -> int:
    return amount * mult_bps // 10_000


def _require(account: StakeAccount | None, owner: str | None = None) -> StakeAccount:
    if account is None or (account.amount == 0 and account.owed == 0
                           and account.unstaked_at is None):
        raise StakeNotFound(f"{owner or 'this key'} has no stake")
    return account


def stake(
    pool: RewardPool,
    account: StakeAccount | None,
    owner: str,
    amount: int,
    days: int,
    now: int,
    params: StakingParams = DEFAULT_STAKING,
) -> StakeResult:
    """Lock ``amount`` for ``days``: ``wallet:<owner>`` → ``stake:<owner>``.

    An account that is still staked or unlocking must use :func:`top_up`/:func:`extend`
    or withdraw everything first.
    """
    check_lock(days, params)
    _check_amount(amount, params)
    if account is not None and account.amount > 0:
        raise StakeStateError(f"{owner} already has a stake; top it up or extend it instead")
    base = account if account is not None else StakeAccount(owner=owner)
    base = settle_rewards(pool, base)
    mult = multiplier_bps(days, params)
    acct = replace(base, amount=amount, days=days, multiplier_bps=mult, staked_at=now,
                   unstaked_at=None, unlock_base=0, withdrawn=0)
    pool, acct = set_score(pool, acct, _score(amount, mult))
    ev = Staked(at=now, owner=owner, amount=amount, days=days, score=acct.score)
    return StakeResult(pool, acct, (ev,), (Posting(wallet(owner), stake_vault(owner), amount),))


def top_up(
    pool: RewardPool, account: StakeAccount | None, amount: int, now: int,
    params: StakingParams = DEFAULT_STAKING,
) -> StakeResult:
    """Add ``amount`` to an active stake (same lock)."""
    acct = _require(account)
    if not acct.active:
        raise StakeStateError("the stake is unstaking; restake it before topping up")
    _check_amount(amount, params, total=acct.amount + amount)
    acct = replace(acct, amount=acct.amount + amount)
    pool, acct = set_score(pool, acct, _score(acct.amount, acct.multiplier_bps))
    ev = StakeToppedUp(at=now, owner=acct.owner, amount=amount, score=acct.score)
    return StakeResult(pool, acct, (ev,),
                       (Posting(wallet(acct.owner), stake_vault(acct.owner), amount),))


def extend(
    pool: RewardPool, account: StakeAccount | None, days: int, now: int,
    params: StakingParams = DEFAULT_STAKING,
) -> StakeResult:
    """Lengthen an active stake's lock to ``days`` (must be longer than now)."""
    acct = _require(account)
    check_lock(days, params)
    if not acct.active:
        raise StakeStateError("the stake is unstaking; restake it before extending")
    if days <= acct.days:
        raise LockOutOfRange(f"the lock is already {acct.days} days; extend to more than that")
    mult = multiplier_bps(days, params)
    acct = replace(acct, days=days, multiplier_bps=mult)
    pool, acct = set_score(pool, acct, _score(acct.amount, mult))
    ev = StakeExtended(at=now, owner=acct.owner, days=days, score=acct.score)
    return StakeResult(pool, acct, (ev,))


def unstake(pool: RewardPool, account: StakeAccount | None, now: int) -> StakeResult:
    """Start the linear unlock; the score (and future rewards) drop to 0 at once."""
    acct = _require(account)
    if not acct.active:
        raise StakeStateError("the stake is already unstaking")
    pool, acct = set_score(pool, acct, 0)
    acct = replace(acct, unstaked_at=now, unlock_base=acct.amount, withdrawn=0)
    ev = Unstaked(at=now, owner=acct.owner, amount=acct.amount,
                  unlocked_at=now + acct.days * DAY)
    return StakeResult(pool, acct, (ev,))


def restake(pool: RewardPool, account: StakeAccount | None, now: int) -> StakeResult:
    """Cancel an unstake: what is still in the vault is locked again for the same days."""
    acct = _require(account)
    if acct.unstaked_at is None or acct.amount == 0:
        raise StakeStateError("only a stake that is unstaking can be restaked")
    acct = replace(acct, unstaked_at=None, unlock_base=0, withdrawn=0, staked_at=now)
    pool, acct = set_score(pool, acct, _score(acct.amount, acct.multiplier_bps))
    ev = Restaked(at=now, owner=acct.owner, amount=acct.amount, score=acct.score)
    return StakeResult(pool, acct, (ev,))


def unlocked(account: StakeAccount, now: int) -> int:
    """How much of the unstaked amount has unlocked by ``now`` (linear over the lock)."""
    if account.unstaked_at is None:
        return 0
    span = account.days * DAY
    elapsed = min(max(now - account.unstaked_at, 0), span)
    return account.unlock_base * elapsed // span


def withdrawable(account: StakeAccount, now: int) -> int:
    """What :func:`withdraw` would move now: unlocked minus withdrawn, within the vault.

    A slash during the unlock takes from the still-locked part first.
    """
    if account.unstaked_at is None:
        return 0
    return max(0, min(account.amount, unlocked(account, now) - account.withdrawn))


def withdraw(pool: RewardPool, account: StakeAccount | None, now: int) -> StakeResult:
    """Move the unlocked part ``stake:<k>`` → ``wallet:<k>``; :class:`StakeLocked` if none."""
    acct = _require(account)
    if acct.unstaked_at is None:
        raise StakeLocked("the stake is locked; unstake first, then withdraw as it unlocks")
    amount = withdrawable(acct, now)
    if amount == 0:
        end = acct.unstaked_at + acct.days * DAY
        raise StakeLocked(f"nothing has unlocked yet; the unlock runs until {end}",
                          unlocked_at=end)
    acct = replace(acct, amount=acct.amount - amount, withdrawn=acct.withdrawn + amount)
    ev = StakeWithdrawn(at=now, owner=acct.owner, amount=amount, remaining=acct.amount)
    return StakeResult(pool, acct, (ev,),
                       (Posting(stake_vault(acct.owner), wallet(acct.owner), amount),))


def claim_rewards(pool: RewardPool, account: StakeAccount | None, now: int) -> StakeResult:
    """Pay the owed rewards ``stakers_pool`` → ``wallet:<k>``."""
    acct = settle_rewards(pool, _require(account))
    if acct.owed == 0:
        raise NothingToClaim(f"{acct.owner} has no rewards to claim yet")
    amount = acct.owed
    acct = replace(acct, owed=0)
    pool = replace(pool, total_claimed=pool.total_claimed + amount)
    ev = RewardsClaimed(at=now, owner=acct.owner, amount=amount)
    return StakeResult(pool, acct, (ev,), (Posting(STAKERS_POOL, wallet(acct.owner), amount),))


def reduce_stake(
    pool: RewardPool, account: StakeAccount, amount: int
) -> tuple[RewardPool, StakeAccount]:
    """Take ``amount`` out of the vault (used by slashing); the score follows the amount."""
    if not 0 <= amount <= account.amount:
        raise InvalidAmount(f"cannot take {amount} from a stake of {account.amount}")
    acct = replace(account, amount=account.amount - amount)
    score = _score(acct.amount, acct.multiplier_bps) if acct.unstaked_at is None else 0
    return set_score(pool, acct, score)


# --------------------------------------------------------------------- command objects


@dataclass(frozen=True, slots=True)
class Stake:
    owner: str
    amount: int
    days: int
    now: int


@dataclass(frozen=True, slots=True)
class TopUp:
    owner: str
    amount: int
    now: int


@dataclass(frozen=True, slots=True)
class Extend:
    owner: str
    days: int
    now: int


@dataclass(frozen=True, slots=True)
class Unstake:
    owner: str
    now: int


@dataclass(frozen=True, slots=True)
class Restake:
    owner: str
    now: int


@dataclass(frozen=True, slots=True)
class Withdraw:
    owner: str
    now: int


@dataclass(frozen=True, slots=True)
class ClaimRewards:
    owner: str
    now: int


StakeCommand = Stake | TopUp | Extend | Unstake | Restake | Withdraw | ClaimRewards


def handle(
    pool: RewardPool,
    account: StakeAccount | None,
    cmd: StakeCommand,
    params: StakingParams = DEFAULT_STAKING,
) -> StakeResult:
    """Apply one staking command (the service layer's single entry point).

    >>> r = handle(RewardPool(), None, Stake("bob", 5_000_000, 14, now=0))
    >>> r.account.score
    5575000
    """
    if account is not None and account.owner != cmd.owner:
        raise InvalidInput(f"account of {account.owner} given for a command of {cmd.owner}")
    match cmd:
        case Stake():
            return stake(pool, account, cmd.owner, cmd.amount, cmd.days, cmd.now, params)
        case TopUp():
            return top_up(pool, account, cmd.amount, cmd.now, params)
        case Extend():
            return extend(pool, account, cmd.days, cmd.now, params)
        case Unstake():
            return unstake(pool, account, cmd.now)
        case Restake():
            return restake(pool, account, cmd.now)
        case Withdraw():
            return withdraw(pool, account, cmd.now)
        case ClaimRewards():
            return claim_rewards(pool, account, cmd.now)
    raise InvalidInput(f"unknown staking command {cmd!r}")
