"""Round-trip tests of the pure SPL Token / Memo builders in nosgrid.settlement.spl."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import Transaction
from spl.memo.instructions import decode_create_memo
from spl.token.instructions import (
    decode_approve_checked,
    decode_freeze_account,
    decode_initialize_mint2,
    decode_mint_to_checked,
    decode_transfer_checked,
)

from nosgrid.core.errors import InvalidAmount, InvalidInput
from nosgrid.settlement import spl

MINT = Pubkey.new_unique()
AUTHORITY = Pubkey.new_unique()
TREASURY = Pubkey.new_unique()
VAULT = Pubkey.new_unique()
HASH = "ab" * 32


def make_job(i: int = 0, client: Pubkey | None = None, legs: int = 3) -> spl.SettleJob:
    node = spl.ata(Pubkey.new_unique(), MINT)
    dests = [node, TREASURY, VAULT][:legs]
    return spl.SettleJob(
        job_id=f"0190a7c2-4e6b-7d3a-9f00-{i:012d}",
        entry_hash=HASH,
        source=spl.ata(client or Pubkey.new_unique(), MINT),
        mint=MINT,
        authority=AUTHORITY,
        legs=tuple(spl.Leg(d, 1_000 * (k + 1)) for k, d in enumerate(dests)),
    )


def test_settle_job_round_trips_every_leg_and_the_memo() -> None:
    job = make_job()
    ixs = spl.settle_job_instructions(job)
    assert len(ixs) == 4
    for leg, ix in zip(job.legs, ixs[:3], strict=True):
        assert ix.program_id == spl.TOKEN_PROGRAM_ID
        decoded = decode_transfer_checked(ix)
        assert decoded.amount == leg.amount
        assert decoded.decimals == 6
        assert decoded.source == job.source
        assert decoded.dest == leg.destination
        assert decoded.mint == MINT
        assert decoded.owner == AUTHORITY
        signer_meta = ix.accounts[3]
        assert signer_meta.pubkey == AUTHORITY and signer_meta.is_signer
    memo = decode_create_memo(ixs[3])
    assert memo.program_id == spl.MEMO_PROGRAM_ID
    assert memo.signer == AUTHORITY
    kind, fields = spl.parse_memo(memo.message.decode())
    assert kind == "settle"
    assert fields == {"job": job.job_id, "entry": HASH}
    assert job.total == 6_000


def test_zero_legs_are_skipped_and_all_zero_is_refused() -> None:
    job = make_job()
    zero_node = replace(job, legs=(spl.Leg(TREASURY, 0), job.legs[1]))
    assert len(spl.settle_job_instructions(zero_node)) == 2
    with pytest.raises(InvalidInput, match="nothing to settle"):
        spl.settle_job_instructions(replace(job, legs=(spl.Leg(TREASURY, 0),)))


@pytest.mark.parametrize("amount", [-1, 10**18, True])
def test_bad_amounts_are_refused(amount: int) -> None:
    job = make_job()
    with pytest.raises(InvalidAmount):
        spl.settle_job_instructions(replace(job, legs=(spl.Leg(TREASURY, amount),)))


@pytest.mark.parametrize("job_id", ["", "has space", "x" * 129, "semi;colon", "ünï"])
def test_memo_fields_are_validated(job_id: str) -> None:
    with pytest.raises(InvalidInput):
        spl.memo_text(job_id, HASH)


def test_transaction_size_matches_a_signed_transaction() -> None:
    payer = Keypair()
    job = replace(make_job(), authority=payer.pubkey())
    ixs = spl.settle_job_instructions(job)
    message = Message.new_with_blockhash(ixs, payer.pubkey(), Hash.new_unique())
    tx = Transaction([payer], message, message.recent_blockhash)
    assert spl.transaction_size(ixs, payer.pubkey()) == len(bytes(tx))


def test_batch_packs_as_many_jobs_as_fit_and_never_splits_one() -> None:
    jobs = [make_job(i) for i in range(10)]
    batches = spl.batch_payout_instructions(jobs, AUTHORITY)
    assert [j.job_id for batch, _ in batches for j in batch] == [j.job_id for j in jobs]
    for batch, ixs in batches:
        assert spl.transaction_size(ixs, AUTHORITY) <= spl.MAX_TRANSACTION_SIZE
        assert len(ixs) == 4 * len(batch)
    # distinct clients, 3 legs, 64-hex hashes: three jobs per transaction, a fourth won't fit
    assert [len(batch) for batch, _ in batches] == [3, 3, 3, 1]
    first_four = [ix for job in jobs[:4] for ix in spl.settle_job_instructions(job)]
    assert spl.transaction_size(first_four, AUTHORITY) > spl.MAX_TRANSACTION_SIZE


def test_batch_of_one_client_fits_more_jobs() -> None:
    client = Pubkey.new_unique()
    batches = spl.batch_payout_instructions([make_job(i, client) for i in range(8)], AUTHORITY)
    assert [len(batch) for batch, _ in batches] == [4, 4]


def test_a_job_too_large_for_any_transaction_is_refused() -> None:
    job = make_job()
    many = tuple(spl.Leg(spl.ata(Pubkey.new_unique(), MINT), 1) for _ in range(40))
    with pytest.raises(InvalidInput, match="transaction limit"):
        spl.batch_payout_instructions([replace(job, legs=many)], AUTHORITY)


def test_stake_deposit_is_signed_by_the_staker() -> None:
    staker = Pubkey.new_unique()
    ixs = spl.stake_deposit_instructions(
        spl.StakeDeposit(spl.ata(staker, MINT), VAULT, MINT, staker, 5_000_000, memo="stake")
    )
    decoded = decode_transfer_checked(ixs[0])
    assert (decoded.source, decoded.dest, decoded.owner, decoded.amount) == (
        spl.ata(staker, MINT),
        VAULT,
        staker,
        5_000_000,
    )
    assert decode_create_memo(ixs[1]).message == b"stake"


def test_vault_withdraw_is_signed_by_the_vault_authority() -> None:
    dest = Pubkey.new_unique()
    ixs = spl.vault_withdraw_instructions(
        spl.VaultWithdraw(VAULT, dest, MINT, AUTHORITY, 42, "slash", "job-7")
    )
    decoded = decode_transfer_checked(ixs[0])
    assert (decoded.source, decoded.dest, decoded.owner, decoded.amount) == (
        VAULT,
        dest,
        AUTHORITY,
        42,
    )
    assert spl.parse_memo(decode_create_memo(ixs[1]).message.decode()) == (
        "slash",
        {"ref": "job-7"},
    )


def test_approve_names_the_authority_as_delegate() -> None:
    owner = Pubkey.new_unique()
    (ix,) = spl.approve_instructions(
        spl.Approve(spl.ata(owner, MINT), MINT, AUTHORITY, owner, 7_000_000)
    )
    decoded = decode_approve_checked(ix)
    assert (decoded.delegate, decoded.owner, decoded.amount, decoded.decimals) == (
        AUTHORITY,
        owner,
        7_000_000,
        6,
    )


def test_anchor_memo_round_trips() -> None:
    ix = spl.anchor_memo_instruction(HASH, 12, AUTHORITY)
    assert spl.parse_memo(bytes(ix.data).decode()) == ("anchor", {"seq": "12", "root": HASH})
    unsigned = spl.anchor_memo_instruction(HASH, 12)
    assert unsigned.accounts == []
    with pytest.raises(InvalidInput):
        spl.anchor_memo_text(HASH, -1)


def test_setup_builders_round_trip() -> None:
    mint = Pubkey.new_unique()
    ixs = spl.create_mint_instructions(AUTHORITY, mint, AUTHORITY, 1_461_600)
    init = decode_initialize_mint2(ixs[1])
    assert (init.decimals, init.mint, init.mint_authority, init.freeze_authority) == (
        6,
        mint,
        AUTHORITY,
        None,
    )
    minted = decode_mint_to_checked(spl.mint_to_instruction(mint, TREASURY, AUTHORITY, 9))
    assert (minted.amount, minted.dest, minted.decimals) == (9, TREASURY, 6)
    frozen = decode_freeze_account(spl.freeze_instruction(TREASURY, mint, AUTHORITY))
    assert (frozen.account, frozen.authority) == (TREASURY, AUTHORITY)
    ata_ix: Instruction = spl.create_ata_instruction(AUTHORITY, AUTHORITY, mint)
    assert ata_ix.accounts[1].pubkey == spl.ata(AUTHORITY, mint)
    assert bytes(ata_ix.data) == b"\x01"  # idempotent variant


def test_pubkeys_parse_or_fail_typed() -> None:
    key = Pubkey.new_unique()
    assert spl.to_pubkey(str(key)) == key
    assert spl.ata(str(key), str(MINT)) == spl.ata(key, MINT)
    with pytest.raises(InvalidInput):
        spl.to_pubkey("not-a-key")


_FIELD = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:/+-",
    min_size=1,
    max_size=128,
)


@settings(max_examples=50, deadline=None)
@given(job_id=_FIELD, entry=_FIELD)
def test_memo_text_parses_back(job_id: str, entry: str) -> None:
    kind, fields = spl.parse_memo(spl.memo_text(job_id, entry))
    assert (kind, fields) == ("settle", {"job": job_id, "entry": entry})
