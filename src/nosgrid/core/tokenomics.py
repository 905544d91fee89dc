"""Tokenomics: genesis allocation, vesting, the declining emission and the fee split.

**Supply.** 100,000,000 NOS, minted once by the genesis entry into allocation accounts:
community & ecosystem 30%, team 25%, investors 20%, and — our assumption, since the
issue leaves the last quarter open — a **protocol reserve of 25%** (``alloc:reserve``)
that is the only source of provider rewards. Nothing is ever minted after genesis.

**Vesting.** Team (12-month cliff, 48 months linear) and investors (6-month cliff, 24
months linear) vest from genesis: nothing before the cliff, then
``allocation × elapsed // duration``, all of it after ``duration`` (so at the cliff the
accrued part releases at once). Community and reserve are not vested.

**Emission.** Epochs are 7 days. After ``k`` epochs the reserve still holds
``R_k = R × (10_000 − d)^k // 10_000^k`` (``d`` = 100 bps: 1% of what is left per
epoch, a half-life of ~69 epochs ≈ 1.3 years). Epoch ``k`` releases ``R_k − R_{k+1}``
into ``rewards_pool``. ``R_k`` never increases, so every release is ≥ 0 and the sum of
releases over epochs ``0..n−1`` telescopes to ``R − R_n ≤ R``: the emission can never
exceed the reserve, whatever the parameters.

**Rewards.** The pool pays providers pro rata to verified GPU-seconds of the epoch, at
most ``max_reward_per_gpu_second`` per GPU-second (so a near-empty network cannot farm
the whole release with a few fake seconds); floors and anything above the cap stay in
the pool for later epochs.

**Fees.** A job's gross pay splits into the node's part, the treasury's ``fee_bps`` and,
out of that fee, the stakers' ``stakers_share_bps`` — the same rule as the job settle.

>>> p = EconomicParams()
>>> [format_nos(epoch_release(k, p)) for k in range(3)]
['250000', '247500', '245025']
>>> fee_split(1_000_000, fee_bps=500, stakers_share_bps=2_000)
FeeSplit(node=950000, treasury=40000, stakers=10000)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from nosgrid.core.errors import InvalidInput
from nosgrid.core.ledger import REWARDS_POOL, Posting, wallet
from nosgrid.core.money import BASE_UNITS_PER_NOS, TOTAL_SUPPLY, bps_of, format_nos
from nosgrid.core.reputation import DEFAULT_REPUTATION, MatchingParams, ReputationParams
from nosgrid.core.slashing import DEFAULT_SLASHING, SlashingParams
from nosgrid.core.staking import DEFAULT_STAKING, StakingParams

DAY: Final = 86_400
MONTH: Final = 2_629_800  # 365.25 days / 12
RESERVE: Final = "alloc:reserve"

#: genesis split in bps of the supply; ``ledger.DEFAULT_ALLOCATION_BPS`` must equal it
ALLOCATION_BPS: Final[Mapping[str, int]] = {
    "alloc:community": 3_000,
    "alloc:team": 2_500,
    "alloc:investors": 2_000,
    RESERVE: 2_500,
}
EPOCH_SECONDS: Final = 7 * DAY
EMISSION_DECAY_BPS: Final = 100
MAX_REWARD_PER_GPU_SECOND: Final = BASE_UNITS_PER_NOS // 100  # 0.01 NOS
FEE_BPS: Final = 500
STAKERS_SHARE_BPS: Final = 2_000


@dataclass(frozen=True, slots=True)
class VestingSchedule:
    """Cliff + linear vesting from genesis, in seconds."""

    cliff: int
    duration: int

    def __post_init__(self) -> None:
        if not 0 <= self.cliff <= self.duration:
            raise InvalidInput("vesting needs 0 <= cliff <= duration")


TEAM_VESTING: Final = VestingSchedule(cliff=12 * MONTH, duration=48 * MONTH)
INVESTOR_VESTING: Final = VestingSchedule(cliff=6 * MONTH, duration=24 * MONTH)


@dataclass(frozen=True, slots=True)
class EconomicParams:
    """Every economic parameter of the protocol in one value.

    >>> EconomicParams().allocation_bps[RESERVE]
    2500
    """

    allocation_bps: Mapping[str, int] = field(default_factory=lambda: dict(ALLOCATION_BPS))
    vesting: Mapping[str, VestingSchedule] = field(default_factory=lambda: {
        "alloc:team": TEAM_VESTING, "alloc:investors": INVESTOR_VESTING})
    epoch_seconds: int = EPOCH_SECONDS
    emission_decay_bps: int = EMISSION_DECAY_BPS
    max_reward_per_gpu_second: int = MAX_REWARD_PER_GPU_SECOND  # 0 = no cap
    fee_bps: int = FEE_BPS
    stakers_share_bps: int = STAKERS_SHARE_BPS
    staking: StakingParams = DEFAULT_STAKING
    slashing: SlashingParams = DEFAULT_SLASHING
    reputation: ReputationParams = DEFAULT_REPUTATION
    matching: MatchingParams = field(default_factory=MatchingParams)

    def __post_init__(self) -> None:
        if sum(self.allocation_bps.values()) != 10_000 or min(self.allocation_bps.values()) < 0:
            raise InvalidInput("allocation_bps must be >= 0 and sum to 10000")
        if RESERVE not in self.allocation_bps:
            raise InvalidInput(f"the allocation needs a {RESERVE!r} account for rewards")
        if not set(self.vesting) <= set(self.allocation_bps):
            raise InvalidInput("vesting schedules must name allocation accounts")
        if not 0 < self.emission_decay_bps <= 10_000:
            raise InvalidInput("emission_decay_bps must be within 1..10000")
        if self.epoch_seconds <= 0 or self.max_reward_per_gpu_second < 0:
            raise InvalidInput("epoch_seconds > 0 and max_reward_per_gpu_second >= 0")
        if not (0 <= self.fee_bps <= 10_000 and 0 <= self.stakers_share_bps <= 10_000):
            raise InvalidInput("fee_bps and stakers_share_bps must be within 0..10000")


DEFAULT_PARAMS: Final = EconomicParams()


def allocations(params: EconomicParams = DEFAULT_PARAMS) -> dict[str, int]:
    """Genesis allocation in base units; rounding dust goes to the reserve.

    >>> sum(allocations().values()) == TOTAL_SUPPLY
    True
    """
    out = {acct: TOTAL_SUPPLY * bps // 10_000 for acct, bps in params.allocation_bps.items()}
    out[RESERVE] += TOTAL_SUPPLY - sum(out.values())
    return out


def reserve_amount(params: EconomicParams = DEFAULT_PARAMS) -> int:
    """The reserve that funds all provider rewards, in base units."""
    return allocations(params)[RESERVE]


# --------------------------------------------------------------------- vesting


def vested(allocation: int, elapsed: int, schedule: VestingSchedule) -> int:
    """How much of ``allocation`` has vested ``elapsed`` seconds after genesis.

    >>> s = VestingSchedule(cliff=10, duration=40)
    >>> [vested(1000, t, s) for t in (0, 9, 10, 20, 40, 99)]
    [0, 0, 250, 500, 1000, 1000]
    """
    if allocation < 0:
        raise InvalidInput("allocation must be >= 0")
    if elapsed < schedule.cliff:
        return 0
    if elapsed >= schedule.duration:
        return allocation
    return allocation * elapsed // schedule.duration


def releasable(account: str, allocation: int, released: int, elapsed: int,
               params: EconomicParams = DEFAULT_PARAMS) -> int:
    """What may leave ``account`` now: vested minus already released (unvested: all)."""
    schedule = params.vesting.get(account)
    total = allocation if schedule is None else vested(allocation, elapsed, schedule)
    return max(0, total - released)


def vesting_release(account: str, beneficiary: str, allocation: int, released: int,
                    elapsed: int, params: EconomicParams = DEFAULT_PARAMS) -> tuple[Posting, ...]:
    """Postings moving the newly vested part of ``account`` to ``wallet:<beneficiary>``."""
    amount = releasable(account, allocation, released, elapsed, params)
    return (Posting(account, wallet(beneficiary), amount),) if amount else ()


# --------------------------------------------------------------------- emission


def epoch_at(now: int, genesis_at: int, params: EconomicParams = DEFAULT_PARAMS) -> int:
    """The epoch number ``now`` falls in (0 from genesis)."""
    if now < genesis_at:
        raise InvalidInput("time before genesis has no epoch")
    return (now - genesis_at) // params.epoch_seconds


def reserve_after(epochs: int, params: EconomicParams = DEFAULT_PARAMS) -> int:
    """What the reserve still holds after ``epochs`` releases: ``R·(1 − d)^k``, floored."""
    if epochs < 0:
        raise InvalidInput("epochs must be >= 0")
    keep = 10_000 - params.emission_decay_bps
    num: int = keep**epochs
    den: int = 10_000**epochs
    return reserve_amount(params) * num // den


def epoch_release(epoch: int, params: EconomicParams = DEFAULT_PARAMS) -> int:
    """How much epoch ``epoch`` moves from the reserve into ``rewards_pool``."""
    return reserve_after(epoch, params) - reserve_after(epoch + 1, params)


def emission_schedule(epochs: int, params: EconomicParams = DEFAULT_PARAMS) -> list[int]:
    """Releases of epochs ``0..epochs−1`` (sums to ``reserve − reserve_after(epochs)``)."""
    left = [reserve_after(k, params) for k in range(epochs + 1)]
    return [left[k] - left[k + 1] for k in range(epochs)]


@dataclass(frozen=True, slots=True)
class EpochEmission:
    """One epoch's release and payout; ``kept`` stays in ``rewards_pool``."""

    epoch: int
    released: int
    paid: Mapping[str, int]
    kept: int
    postings: tuple[Posting, ...]


def epoch_emission(
    epoch: int,
    gpu_seconds: Mapping[str, int],
    params: EconomicParams = DEFAULT_PARAMS,
    pool_balance: int = 0,
) -> EpochEmission:
    """Release epoch ``epoch`` and pay nodes pro rata to their verified GPU-seconds.

    ``gpu_seconds`` maps node keys to verified GPU-seconds of completed work in the
    epoch; ``pool_balance`` is what ``rewards_pool`` already holds (earlier remainders).
    Each node gets ``budget × s_i // Σs`` with ``budget = min(pool + release, cap × Σs)``.
    The caller must apply each epoch once (the journal entry's ref is the epoch).

    >>> e = epoch_emission(0, {"a": 3, "b": 1}, EconomicParams(max_reward_per_gpu_second=0))
    >>> e.released, dict(e.paid), e.kept
    (250000000000, {'a': 187500000000, 'b': 62500000000}, 0)
    """
    if pool_balance < 0:
        raise InvalidInput("pool_balance must be >= 0")
    for node, secs in gpu_seconds.items():
        if isinstance(secs, bool) or not isinstance(secs, int) or secs < 0 or not node:
            raise InvalidInput(f"GPU-seconds must be integers >= 0 per node, got {node!r}: "
                               f"{secs!r}")
    released = epoch_release(epoch, params)
    total = sum(gpu_seconds.values())
    budget = pool_balance + released
    if params.max_reward_per_gpu_second:
        budget = min(budget, params.max_reward_per_gpu_second * total)
    paid = {n: budget * s // total for n, s in sorted(gpu_seconds.items())} if total else {}
    paid = {n: amt for n, amt in paid.items() if amt > 0}
    postings = [Posting(RESERVE, REWARDS_POOL, released)] if released else []
    postings += [Posting(REWARDS_POOL, wallet(n), amt) for n, amt in paid.items()]
    kept = pool_balance + released - sum(paid.values())
    return EpochEmission(epoch, released, paid, kept, tuple(postings))


# --------------------------------------------------------------------- fees


@dataclass(frozen=True, slots=True)
class FeeSplit:
    node: int
    treasury: int
    stakers: int


def fee_split(gross: int, fee_bps: int = FEE_BPS,
              stakers_share_bps: int = STAKERS_SHARE_BPS) -> FeeSplit:
    """Split a job's gross pay: fee = gross × fee_bps; stakers get their share of the fee."""
    if gross < 0:
        raise InvalidInput("gross must be >= 0")
    fee = bps_of(gross, fee_bps)
    stakers = bps_of(fee, stakers_share_bps)
    return FeeSplit(gross - fee, fee - stakers, stakers)


def allocation_table(params: EconomicParams = DEFAULT_PARAMS) -> list[dict[str, object]]:
    """Rows for display: account, bps, amount (NOS string), vesting in months."""
    rows: list[dict[str, object]] = []
    for acct, amount in allocations(params).items():
        v = params.vesting.get(acct)
        rows.append({"account": acct, "bps": params.allocation_bps[acct],
                     "amount_nos": format_nos(amount),
                     "cliff_months": round(v.cliff / MONTH, 2) if v else 0,
                     "vesting_months": round(v.duration / MONTH, 2) if v else 0})
    return rows
