"""Solana settlement against the real SPL Token, ATA and Memo programs in LiteSVM."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from nosgrid.core.errors import SettlementFailed
from nosgrid.settlement import spl
from nosgrid.settlement.chain import SolanaChain, TokenAccountState
from nosgrid.settlement.errors import (
    AllowanceTooSmall,
    InsufficientTokenBalance,
    TokenAccountFrozen,
    TokenAccountMissing,
    TokenOwnerMismatch,
    WrongMint,
)
from nosgrid.settlement.litesvm_chain import LiteSVMChain
from nosgrid.settlement.rpc_chain import RpcChain
from nosgrid.settlement.solana import SettlementRequest, SolanaSettlement

NOS = 1_000_000
HASH = "cd" * 32


@dataclass
class Market:
    chain: LiteSVMChain
    authority: Keypair
    backend: SolanaSettlement
    client: Keypair
    node: Keypair

    @property
    def client_id(self) -> str:
        return str(self.client.pubkey())

    @property
    def node_id(self) -> str:
        return str(self.node.pubkey())

    def legs(
        self, pay: int = 900_000, fee: int = 50_000, share: int = 50_000
    ) -> list[tuple[str, int]]:
        return [
            (self.node_id, pay),
            (str(self.backend.treasury), fee),
            (str(self.backend.rewards_vault), share),
        ]

    async def snapshot(self) -> dict[str, int]:
        return await self.backend.balances(
            [
                self.client_id,
                self.node_id,
                str(self.backend.treasury),
                str(self.backend.rewards_vault),
            ]
        )


async def open_market(chain: LiteSVMChain | None = None) -> Market:
    chain = chain or LiteSVMChain()
    authority, client, node = Keypair(), Keypair(), Keypair()
    await chain.airdrop_sol(authority.pubkey(), 100 * 10**9)
    await chain.airdrop_sol(client.pubkey(), 10**9)
    backend = await SolanaSettlement.bootstrap(chain, authority)
    await backend.faucet(str(client.pubkey()), 10 * NOS)
    await backend.ensure_account(str(node.pubkey()))
    return Market(chain, authority, backend, client, node)


@pytest.fixture
async def market() -> Market:
    return await open_market()


def memo_lines(chain: LiteSVMChain, signature: str) -> list[str]:
    return [line for line in chain.logs(signature) if line.startswith("Program log: nosgrid ")]


async def test_chain_adapters_satisfy_the_protocol() -> None:
    rpc = RpcChain("http://127.0.0.1:1")
    assert isinstance(LiteSVMChain(), SolanaChain)
    assert isinstance(rpc, SolanaChain)
    with pytest.raises(SettlementFailed, match=r"127\.0\.0\.1"):
        await rpc.latest_blockhash()
    await rpc.close()


async def test_settle_moves_exactly_the_legs_in_one_transaction_with_a_memo(
    market: Market,
) -> None:
    await market.backend.approve(market.client, 5 * NOS)
    assert await market.backend.allowance(market.client_id) == 5 * NOS
    supply = await market.chain.mint_supply(market.backend.mint)

    signature = await market.backend.settle("job-1", HASH, market.legs(), client=market.client_id)

    assert await market.chain.confirmed(signature)
    after = await market.snapshot()
    assert after[market.client_id] == 10 * NOS - NOS
    assert after[market.node_id] == 900_000
    assert after[str(market.backend.treasury)] == 50_000
    assert after[str(market.backend.rewards_vault)] == 50_000
    assert await market.backend.allowance(market.client_id) == 4 * NOS
    logs = market.chain.logs(signature)
    token_calls = f"Program {spl.TOKEN_PROGRAM_ID} invoke [1]"
    assert sum(line == token_calls for line in logs) == 3  # three transfers, one transaction
    assert memo_lines(market.chain, signature) == [f"Program log: {spl.memo_text('job-1', HASH)}"]
    info = await market.chain.token_account_info(market.backend.token_account(market.client_id))
    assert info is not None
    assert info.delegate == str(market.authority.pubkey())
    assert info.delegated_amount == 4 * NOS
    assert info.state is TokenAccountState.INITIALIZED
    assert await market.chain.mint_supply(market.backend.mint) == supply


async def test_a_batch_settles_several_jobs_per_transaction(market: Market) -> None:
    other = Keypair()
    await market.chain.airdrop_sol(other.pubkey(), 10**9)
    await market.backend.faucet(str(other.pubkey()), 10 * NOS)
    await market.backend.approve(market.client, 10 * NOS)
    await market.backend.approve(other, 10 * NOS)
    requests = [
        SettlementRequest(
            f"job-{i}",
            HASH,
            tuple(market.legs(100_000 + i, 1_000, 2_000)),
            market.client_id if i % 2 else str(other.pubkey()),
        )
        for i in range(7)
    ]
    signatures = await market.backend.settle_batch(requests)

    assert set(signatures) == {r.job_id for r in requests}
    # one node, two clients: 5 + 2 jobs (as many as fit 1232 bytes per transaction)
    assert len(set(signatures.values())) == 2
    first = signatures["job-0"]
    in_first = [line.split(" job=")[1].split()[0] for line in memo_lines(market.chain, first)]
    assert in_first == ["job-0", "job-1", "job-2", "job-3", "job-4"]
    after = await market.snapshot()
    assert after[market.node_id] == sum(100_000 + i for i in range(7))
    assert after[str(market.backend.treasury)] == 7 * 1_000
    paid_by_client = sum(103_000 + i for i in range(7) if i % 2)
    assert after[market.client_id] == 10 * NOS - paid_by_client
    assert await market.backend.allowance(market.client_id) == 10 * NOS - paid_by_client


async def test_allowance_too_small_is_refused_before_sending(market: Market) -> None:
    before = await market.snapshot()
    with pytest.raises(AllowanceTooSmall, match="nosgrid wallet approve"):
        await market.backend.settle("job-1", HASH, market.legs(), client=market.client_id)
    await market.backend.approve(market.client, 999_999)
    with pytest.raises(AllowanceTooSmall, match=r"0\.999999 NOS but settling needs 1 NOS") as err:
        await market.backend.settle("job-1", HASH, market.legs(), client=market.client_id)
    assert err.value.http_status == 402
    assert err.value.details["needed"] == NOS
    assert await market.snapshot() == before


async def test_the_chain_itself_refuses_an_overdrawn_allowance(market: Market) -> None:
    await market.backend.approve(market.client, 10)
    job = await market.backend._build_job(
        SettlementRequest("job-1", HASH, tuple(market.legs()), market.client_id)
    )
    before = await market.snapshot()
    with pytest.raises(InsufficientTokenBalance) as err:
        await market.chain.send(
            spl.settle_job_instructions(job), [market.authority], market.authority
        )
    assert err.value.program_error == 1
    assert any("insufficient funds" in line for line in err.value.logs)
    assert "program logs" in err.value.message
    assert await market.snapshot() == before


async def test_frozen_token_account_is_a_typed_error(market: Market) -> None:
    await market.backend.approve(market.client, 5 * NOS)
    await market.chain.freeze(
        market.backend.token_account(market.node_id), market.backend.mint, market.authority
    )
    before = await market.snapshot()
    with pytest.raises(TokenAccountFrozen, match="frozen"):
        await market.backend.settle("job-1", HASH, market.legs(), client=market.client_id)
    job = await market.backend._build_job(
        SettlementRequest("job-1", HASH, tuple(market.legs()), market.client_id)
    )
    with pytest.raises(TokenAccountFrozen) as err:
        await market.chain.send(
            spl.settle_job_instructions(job), [market.authority], market.authority
        )
    assert err.value.program_error == 17
    assert await market.snapshot() == before


async def test_wrong_mint_is_a_typed_error(market: Market) -> None:
    await market.backend.approve(market.client, 5 * NOS)
    other_mint = await market.chain.create_mint(market.authority)
    foreign = await market.chain.create_token_account(
        market.node.pubkey(), other_mint, market.authority
    )
    legs = [(str(foreign), 900_000)]
    with pytest.raises(WrongMint, match="not NOS"):
        await market.backend.settle("job-1", HASH, legs, client=market.client_id)
    job = await market.backend._build_job(
        SettlementRequest("job-1", HASH, tuple(legs), market.client_id)
    )
    with pytest.raises(WrongMint) as err:
        await market.chain.send(
            spl.settle_job_instructions(job), [market.authority], market.authority
        )
    assert err.value.program_error == 3
    assert await market.chain.token_balance(foreign) == 0


async def test_missing_or_closed_token_accounts_are_typed_errors(market: Market) -> None:
    await market.backend.approve(market.client, 5 * NOS)
    stranger = str(Keypair().pubkey())
    with pytest.raises(TokenAccountMissing, match="does not exist"):
        await market.backend.settle("job-1", HASH, [(stranger, 1)], client=market.client_id)
    with pytest.raises(TokenAccountMissing):
        await market.backend.settle("job-1", HASH, market.legs(), client=stranger)
    job = await market.backend._build_job(
        SettlementRequest("job-1", HASH, ((stranger, 1),), market.client_id)
    )
    with pytest.raises(TokenAccountMissing) as err:
        await market.chain.send(
            spl.settle_job_instructions(job), [market.authority], market.authority
        )
    assert err.value.logs
    assert await market.chain.token_balance(spl.ata(stranger, market.backend.mint)) is None


async def test_stake_vault_moves_only_with_the_vault_authority(market: Market) -> None:
    staker = market.client
    await market.backend.deposit_stake(staker, 3 * NOS)
    vault = str(market.backend.stake_vault)
    assert (await market.backend.balances([vault]))[vault] == 3 * NOS

    signature = await market.backend.withdraw_from_vault(
        str(market.backend.treasury), NOS, reason="slash", reference="job-9"
    )
    assert memo_lines(market.chain, signature) == ["Program log: nosgrid slash ref=job-9"]
    await market.backend.withdraw_from_vault(str(staker.pubkey()), NOS, reason="unstake")
    balances = await market.backend.balances(
        [vault, str(market.backend.treasury), market.client_id]
    )
    assert balances == {vault: NOS, str(market.backend.treasury): NOS, market.client_id: 8 * NOS}

    impostor = Keypair()
    await market.chain.airdrop_sol(impostor.pubkey(), 10**9)
    forged = SolanaSettlement(
        market.chain,
        mint=market.backend.mint,
        authority=impostor,
        treasury=market.backend.treasury,
        stake_vault=market.backend.stake_vault,
    )
    with pytest.raises(TokenOwnerMismatch) as err:
        await forged.withdraw_from_vault(market.node_id, NOS, reason="slash")
    assert err.value.program_error == 4
    with pytest.raises(InsufficientTokenBalance):
        await market.backend.withdraw_from_vault(market.node_id, 2 * NOS)
    assert (await market.backend.balances([vault]))[vault] == NOS


async def test_anchor_writes_the_ledger_hash_in_a_signed_memo(market: Market) -> None:
    signature = await market.backend.anchor(HASH, 3)
    assert await market.chain.confirmed(signature)
    assert memo_lines(market.chain, signature) == [f"Program log: nosgrid anchor seq=3 root={HASH}"]
    assert f"Program log: {market.authority.pubkey()}" in market.chain.logs(signature)


async def test_identical_sends_both_execute_but_a_prepared_tx_lands_once(market: Market) -> None:
    account = spl.ata(market.node_id, market.backend.mint)
    mint, authority = market.backend.mint, market.authority
    await market.chain.mint_to(mint, account, 5, authority)
    await market.chain.mint_to(mint, account, 5, authority)  # same bytes, same blockhash
    assert await market.chain.token_balance(account) == 10
    ix = spl.mint_to_instruction(mint, account, authority.pubkey(), 7)
    prepared = await market.chain.prepare([ix], [], authority)
    assert await market.chain.submit(prepared) == prepared.signature
    assert await market.chain.submit(prepared) == prepared.signature  # a retry, not a payment
    assert await market.chain.token_balance(account) == 17


async def test_read_only_backend_can_approve_but_not_settle(market: Market) -> None:
    reader = SolanaSettlement(
        market.chain,
        **{k: v for k, v in market.backend.accounts.__dict__.items() if k != "rewards_vault"},
    )
    await reader.approve(market.client, 2 * NOS)
    assert await market.backend.allowance(market.client_id) == 2 * NOS
    with pytest.raises(SettlementFailed, match="authority keypair"):
        await reader.settle("job-1", HASH, market.legs(), client=market.client_id)


class FreezeBeforeSecondSend(LiteSVMChain):
    """A race, played out: the node's account is frozen after the checks passed."""

    def __init__(self) -> None:
        super().__init__()
        self.sends = 0
        self.freeze_on_second: tuple[str, Pubkey, Keypair] | None = None

    async def send(
        self, instructions: Sequence[Instruction], signers: Sequence[Keypair], payer: Keypair
    ) -> str:
        self.sends += 1
        if self.sends == 2 and self.freeze_on_second is not None:
            account, mint, authority = self.freeze_on_second
            self.freeze_on_second = None
            await self.freeze(account, mint, authority)
        return await super().send(instructions, signers, payer)


async def test_a_failed_later_batch_reports_what_was_settled() -> None:
    chain = FreezeBeforeSecondSend()
    market = await open_market(chain)
    await market.backend.approve(market.client, 10 * NOS)
    requests = [
        SettlementRequest(f"job-{i}", HASH, tuple(market.legs(1_000, 1, 1)), market.client_id)
        for i in range(6)
    ]
    node_account = market.backend.token_account(market.node_id)
    chain.sends = 0
    chain.freeze_on_second = (node_account, market.backend.mint, market.authority)
    with pytest.raises(TokenAccountFrozen) as err:
        await market.backend.settle_batch(requests)
    settled = err.value.details["settled"]
    assert 0 < len(settled) < len(requests)  # the first transaction landed, the second did not
    assert len(set(settled.values())) == 1
    assert (await market.snapshot())[market.node_id] == 1_000 * len(settled)


# -- property: the chain agrees with a plain Python model -------------------------------------

CLIENTS, NODES = 2, 2
_amount = st.integers(min_value=0, max_value=3 * NOS)
_op = st.one_of(
    st.tuples(st.just("mint"), st.integers(0, CLIENTS - 1), _amount),
    st.tuples(st.just("approve"), st.integers(0, CLIENTS - 1), _amount),
    st.tuples(st.just("settle"), st.integers(0, CLIENTS - 1), st.integers(0, NODES - 1), _amount),
    st.tuples(st.just("stake"), st.integers(0, CLIENTS - 1), _amount),
    st.tuples(st.just("withdraw"), st.integers(0, NODES - 1), _amount),
)
_SHARED = LiteSVMChain()


async def _run_model(ops: list[tuple[object, ...]]) -> None:
    chain = _SHARED
    authority = Keypair()
    await chain.airdrop_sol(authority.pubkey(), 100 * 10**9)
    backend = await SolanaSettlement.bootstrap(chain, authority)
    clients = [Keypair() for _ in range(CLIENTS)]
    nodes = [str(Keypair().pubkey()) for _ in range(NODES)]
    for owner in [*(str(c.pubkey()) for c in clients), *nodes]:
        await backend.ensure_account(owner)
    treasury, rewards, vault = (
        str(backend.treasury),
        str(backend.rewards_vault),
        str(backend.stake_vault),
    )
    ids = [str(c.pubkey()) for c in clients]
    model = dict.fromkeys([*ids, *nodes, treasury, rewards, vault], 0)
    allowance = dict.fromkeys(ids, 0)
    supply = 0
    for n, op in enumerate(ops):
        kind = op[0]
        if kind == "mint" and isinstance(op[1], int) and isinstance(op[2], int) and op[2] > 0:
            await backend.faucet(ids[op[1]], op[2])
            model[ids[op[1]]] += op[2]
            supply += op[2]
        elif kind == "approve" and isinstance(op[1], int) and isinstance(op[2], int):
            await backend.approve(clients[op[1]], op[2], fee_payer=authority)
            allowance[ids[op[1]]] = op[2]
        elif kind == "settle" and isinstance(op[1], int) and isinstance(op[2], int):
            client, total = ids[op[1]], op[3]
            assert isinstance(total, int)
            fee, share = total // 20, total // 50
            pay = total - fee - share
            legs = [(nodes[op[2]], pay), (treasury, fee), (rewards, share)]
            if total == 0:
                continue
            if allowance[client] < total:
                with pytest.raises(AllowanceTooSmall):
                    await backend.settle(f"job-{n}", HASH, legs, client=client)
            elif model[client] < total:
                with pytest.raises(InsufficientTokenBalance):
                    await backend.settle(f"job-{n}", HASH, legs, client=client)
            else:
                await backend.settle(f"job-{n}", HASH, legs, client=client)
                model[client] -= total
                allowance[client] -= total
                model[nodes[op[2]]] += pay
                model[treasury] += fee
                model[rewards] += share
        elif kind == "stake" and isinstance(op[1], int) and isinstance(op[2], int) and op[2] > 0:
            if model[ids[op[1]]] < op[2]:
                with pytest.raises(InsufficientTokenBalance):
                    await backend.deposit_stake(clients[op[1]], op[2])
            else:
                await backend.deposit_stake(clients[op[1]], op[2])
                model[ids[op[1]]] -= op[2]
                model[vault] += op[2]
        elif kind == "withdraw" and isinstance(op[1], int) and isinstance(op[2], int) and op[2] > 0:
            if model[vault] < op[2]:
                with pytest.raises(InsufficientTokenBalance):
                    await backend.withdraw_from_vault(nodes[op[1]], op[2], "unstake")
            else:
                await backend.withdraw_from_vault(nodes[op[1]], op[2], "unstake")
                model[vault] -= op[2]
                model[nodes[op[1]]] += op[2]
        on_chain = await backend.balances(list(model))
        assert on_chain == model, f"after {op}"
        assert sum(on_chain.values()) == supply == await chain.mint_supply(backend.mint)
        for client in ids:
            assert await backend.allowance(client) == min(allowance[client], model[client])


@settings(max_examples=50, deadline=None)
@given(ops=st.lists(_op, min_size=1, max_size=12))
def test_random_operations_keep_chain_equal_to_the_model(ops: list[tuple[object, ...]]) -> None:
    asyncio.run(_run_model(ops))
