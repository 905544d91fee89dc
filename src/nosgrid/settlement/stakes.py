"""Stake vault moves on chain: the memo and the instructions (pure), one transaction each.

Every move is signed by the settlement authority only: it is the approved *delegate* of a
staker's account for a deposit, and the *owner* of the stake and rewards vaults for the
others. The memo names the action, the staker (or slashed node), the journal entry that
owes the move and, for a slash, the job cited as evidence::

    nosgrid stake owner=<pk> entry=<hash>
    nosgrid unstake owner=<pk> entry=<hash>
    nosgrid claim owner=<pk> entry=<hash>
    nosgrid slash node=<pk> job=<job id> entry=<hash>
    nosgrid audit job=<job id> entry=<hash>
    nosgrid emission epoch=<n> entry=<hash>

An ``audit`` move pays the runners of an audit of ``job`` out of the audit vault (which the
audit fee legs of payouts fill); an ``emission`` move pays an epoch's provider rewards out
of the emissions vault (the on-chain home of the protocol reserve).

>>> stake_memo_text("slash", "n1", "ab", job_id="job-1")
'nosgrid slash node=n1 job=job-1 entry=ab'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from solders.instruction import Instruction
from solders.pubkey import Pubkey

from nosgrid.core.errors import InvalidInput
from nosgrid.core.money import DECIMALS, check_amount
from nosgrid.settlement import spl
from nosgrid.settlement.spl import _field, _transfer  # shared with job settlements

#: a deposit into the stake vault, and the moves out of the stake / rewards vault
ACTIONS: Final = ("stake", "unstake", "claim", "slash", "audit", "emission")


def stake_memo_text(action: str, owner: str, entry_hash: str, job_id: str = "") -> str:
    """The memo of a stake move (see the module docstring); fields are checked like a job's."""
    if action not in ACTIONS:
        raise InvalidInput(f"unknown stake move {action!r}")
    if action == "audit":  # ``owner`` is the audited job
        return f"nosgrid audit job={_field('job_id', owner)} entry={_field('entry', entry_hash)}"
    if action == "emission":  # ``owner`` is the journal ref ``epoch:<n>``
        epoch = _field("epoch", owner.removeprefix("epoch:"))
        return f"nosgrid emission epoch={epoch} entry={_field('entry', entry_hash)}"
    who = "node" if action == "slash" else "owner"
    job = f" job={_field('job_id', job_id)}" if job_id else ""
    return f"nosgrid {action} {who}={_field(who, owner)}{job} entry={_field('entry', entry_hash)}"


@dataclass(frozen=True)
class StakeMove:
    """``legs`` leave ``source`` (a vault the authority owns, or the staker's account it is
    delegate of) in one transaction with ``memo``, signed by ``authority``."""

    source: Pubkey
    mint: Pubkey
    authority: Pubkey
    legs: tuple[spl.Leg, ...]
    memo: str
    decimals: int = DECIMALS

    @property
    def total(self) -> int:
        return sum(leg.amount for leg in self.legs)


def stake_move_instructions(move: StakeMove) -> list[Instruction]:
    """``transfer_checked`` per non-zero leg, then the memo signed by the authority."""
    transfers = [
        _transfer(move.source, leg.destination, move.mint, move.authority, leg.amount,
                  move.decimals)
        for leg in move.legs if check_amount(leg.amount) > 0
    ]
    if not transfers:
        raise InvalidInput(f"nothing to move for {move.memo!r}: every leg is 0")
    return [*transfers, spl.memo_instruction(move.memo, move.authority)]
