"""The pure rules of receipts, the attestor chain and chain requests (no chain, no store)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from nosgrid.core import receipts as r
from nosgrid.core.attestor import AttestorEpoch, genesis, parse_memo, rotate, verify_chain
from nosgrid.core.chain_requests import (
    BadRequest,
    RefundReason,
    RequestMemo,
    check_payment,
    parse_request_memo,
    refund_memo_text,
    request_memo_text,
)
from nosgrid.core.errors import BrokenAttestorChain, InvalidInput, InvalidReceipt
from nosgrid.settlement import receipts as tx
from nosgrid.settlement import spl
from nosgrid.settlement.chain import ChainInstruction, ChainTransaction
from nosgrid.settlement.requests import payment_into

KEY = Keypair.from_seed(bytes(range(32)))
REPLY = Pubkey.from_string("Sysvar1nstructions1111111111111111111111111")


def _receipt(**changes: object) -> r.Receipt:
    fields: dict[str, object] = dict(
        verdict=r.Verdict.AUDIT_AGREED, epoch=3, seq=0x0102030405060708, slot=99,
        market=r.market_digest("cpu"), job=r.job_digest("job-1"),
        definition=hashlib.sha256(b"def").digest(), result=r.result_digest({"exit_code": 0}),
        reply_key=bytes(REPLY))
    fields.update(changes)
    return r.Receipt(**fields)  # type: ignore[arg-type]


def test_every_field_sits_at_its_documented_offset() -> None:
    raw = _receipt().encode()
    assert len(raw) == r.RECEIPT_LEN == 172
    at = {name: raw[o:o + n] for name, (o, n) in r.OFFSETS.items()}
    assert at["magic"] == b"NGRC" and at["version"] == b"\x01" and at["verdict"] == b"\x01"
    assert at["flags"] == b"\x01\x00" and at["epoch"] == (3).to_bytes(4, "little")
    assert at["seq"] == bytes.fromhex("0807060504030201") and at["slot"][0] == 99
    assert at["market"] == hashlib.sha256(b"cpu").digest()[:16]
    assert at["job"] == hashlib.sha256(b"job-1").digest()
    assert at["reply_key"] == bytes(REPLY)
    assert sum(n for _o, n in r.OFFSETS.values()) == r.RECEIPT_LEN
    # golden: these bytes and their signature with this seed never change
    signed = r.sign(_receipt(), KEY)
    assert signed.receipt.hex().startswith(
        "4e47524301010100030000000807060504030201630000000000000068ab84f7")
    assert signed.signature.hex().startswith("69c810eddb32e3e8793555c70c3d12bc")
    assert r.verify_receipt(signed.receipt, signed.signature, str(KEY.pubkey())) == _receipt()


@given(st.sampled_from(list(r.Verdict)), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1),
       st.integers(0, 2**64 - 1), st.binary(min_size=32, max_size=32),
       st.booleans())
def test_encode_decode_round_trip(verdict: r.Verdict, epoch: int, seq: int, slot: int,
                                  digest: bytes, with_reply: bool) -> None:
    receipt = _receipt(verdict=verdict, epoch=epoch, seq=seq, slot=slot, result=digest,
                       reply_key=bytes(REPLY) if with_reply else bytes(32))
    assert r.decode(receipt.encode()) == receipt
    assert (receipt.reply_pubkey is not None) is with_reply


@given(st.integers(0, r.RECEIPT_LEN * 8 - 1))
def test_any_flipped_bit_breaks_the_signature(bit: int) -> None:
    signed = r.sign(_receipt(), KEY)
    altered = bytearray(signed.receipt)
    altered[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(InvalidReceipt):
        r.verify_receipt(bytes(altered), signed.signature, str(KEY.pubkey()))


@pytest.mark.parametrize(("offset", "value", "match"), [
    (0, 0x41, "magic"), (4, 2, "version"), (5, 9, "verdict"), (6, 0, "flags"),
])
def test_decode_refuses_what_is_not_a_v1_receipt(offset: int, value: int, match: str) -> None:
    raw = bytearray(_receipt().encode())
    raw[offset] = value
    with pytest.raises(InvalidReceipt, match=match):
        r.decode(bytes(raw))
    with pytest.raises(InvalidReceipt, match="172"):
        r.decode(bytes(raw[:100]))


def test_bad_fields_are_refused_before_signing() -> None:
    with pytest.raises(InvalidInput, match="seq"):
        _receipt(seq=-1).encode()
    with pytest.raises(InvalidInput, match="job"):
        _receipt(job=b"short").encode()


def test_dispute_verdicts_map_to_receipt_verdicts() -> None:
    assert r.Verdict.from_dispute("agreed") is r.Verdict.AUDIT_AGREED
    assert r.Verdict.from_dispute("node_wrong") is r.Verdict.NODE_WRONG
    with pytest.raises(InvalidInput):
        r.Verdict.from_dispute("maybe")


def test_the_attestor_chain_follows_from_the_first_key_and_finds_a_break() -> None:
    keys = [Keypair() for _ in range(4)]
    chain = [genesis(str(keys[0].pubkey()))]
    for i in range(3):
        chain.append(rotate(i, keys[i], str(keys[i + 1].pubkey())))
    assert verify_chain(chain, str(keys[0].pubkey())) == str(keys[3].pubkey())
    assert [parse_memo(e.memo()) for e in chain] == chain  # what the Memos publish
    forged = rotate(1, Keypair(), str(Keypair().pubkey()))  # not signed by epoch 1's key
    with pytest.raises(BrokenAttestorChain, match="epoch 2"):
        verify_chain([*chain[:2], forged, chain[3]], str(keys[0].pubkey()))
    with pytest.raises(BrokenAttestorChain, match="missing"):
        verify_chain([chain[0], chain[2]], str(keys[0].pubkey()))
    with pytest.raises(BrokenAttestorChain):
        verify_chain(chain[1:], str(keys[0].pubkey()))
    with pytest.raises(BrokenAttestorChain):
        verify_chain([AttestorEpoch(0, str(keys[1].pubkey())), *chain[1:]],
                     str(keys[0].pubkey()))


@pytest.mark.parametrize("memo", [
    "nosgrid anchor seq=1",
    "nosgrid request reply=11111111111111111111111111111111",
    "nosgrid request def=" + "ab" * 32 + " inline=e30= reply=11111111111111111111111111111111",
    "nosgrid request def=" + "AB" * 32 + " reply=11111111111111111111111111111111",
    "nosgrid request def=" + "ab" * 32 + " reply=nope",
    "nosgrid request inline=!!! reply=11111111111111111111111111111111",
    "nosgrid request def=" + "ab" * 32 + " reply=11111111111111111111111111111111 timeout=0",
    "nosgrid request def=" + "ab" * 32 + " reply=11111111111111111111111111111111 color=red",
    "nosgrid request def=" + "ab" * 32 + " def=" + "cd" * 32,
])
def test_a_bad_request_memo_is_refunded_as_bad_memo(memo: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_request_memo(memo)
    assert err.value.reason is RefundReason.BAD_MEMO


def test_request_memo_round_trip_and_refund_text() -> None:
    memo = RequestMemo(str(REPLY), inline=b'{"a":1}', market="cpu", timeout=60)
    assert parse_request_memo(request_memo_text(memo)) == memo
    assert refund_memo_text("sig", RefundReason.PRICE_TOO_LOW) == \
        "nosgrid refund ref=sig reason=price_too_low"
    assert check_payment(100, 60) == 40
    with pytest.raises(BadRequest) as err:
        check_payment(59, 60)
    assert err.value.reason is RefundReason.PRICE_TOO_LOW


def test_the_packer_fits_two_receipts_per_transaction_and_reads_them_back() -> None:
    payer = Keypair().pubkey()
    receipts = [r.sign(_receipt(seq=i), KEY) for i in range(5)]
    batches = tx.pack(receipts, payer)
    assert [len(b) for b, _ in batches] == [2, 2, 1]
    for batch, ixs in batches:
        assert spl.transaction_size(ixs, payer) <= spl.MAX_TRANSACTION_SIZE
        assert tx.parse_ed25519(bytes(ixs[0].data)) == batch
        assert tx.receipts_in_memo(bytes(ixs[1].data).decode()) == [s.receipt for s in batch]
    two_keys = [r.sign(_receipt(), KEY), r.sign(_receipt(seq=1), Keypair())]
    assert [s.attestor for s in tx.parse_ed25519(bytes(
        tx.ed25519_instruction(two_keys).data))] == [s.attestor for s in two_keys]
    with pytest.raises(InvalidInput):
        tx.receipts_in_memo("nosgrid anchor seq=1")


def test_a_payment_is_a_transfer_into_the_vault_top_level_or_inner() -> None:
    vault, src, owner, other = (str(Pubkey.new_unique()) for _ in range(4))
    token, memo_program = str(spl.TOKEN_PROGRAM_ID), str(spl.MEMO_PROGRAM_ID)
    amount = (70_000).to_bytes(8, "little")
    checked = ChainInstruction(token, (src, other, vault, owner), bytes([12]) + amount + b"\x06")
    memo = ChainInstruction(memo_program, (owner,), b"nosgrid request def=x reply=y")
    paid = payment_into(ChainTransaction("s", 1, (memo, checked)), vault)
    assert paid is not None and (paid.amount, paid.source, paid.authority) == (70_000, src, owner)
    assert paid.memo == "nosgrid request def=x reply=y"
    outgoing = ChainInstruction(token, (vault, other, src, owner), bytes([12]) + amount + b"\x06")
    assert payment_into(ChainTransaction("s", 1, (outgoing,)), vault) is None
    assert payment_into(ChainTransaction("s", 1, (memo,)), vault) is None
