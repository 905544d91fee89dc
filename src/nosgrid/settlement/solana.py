"""The service-facing Solana settlement backend: NOS as an SPL token, paid out by delegation.

A client keeps NOS in their own associated token account and approves the market's
settlement authority as delegate up to an allowance (``nosgrid wallet approve``). A job
settles in one transaction: ``transfer_checked`` legs from the client's account to the
node, the treasury and the stakers' rewards vault, plus a memo with the job id and the
journal entry hash. Stakes sit in a stake vault owned by the authority.

>>> import asyncio
>>> from solders.keypair import Keypair
>>> from nosgrid.settlement.litesvm_chain import LiteSVMChain
>>> async def demo() -> int:
...     chain, authority, client, node = LiteSVMChain(), Keypair(), Keypair(), Keypair()
...     for key in (authority, client):
...         await chain.airdrop_sol(key.pubkey(), 10**9)
...     backend = await SolanaSettlement.bootstrap(chain, authority)
...     await backend.faucet(str(client.pubkey()), 5_000_000)
...     await backend.ensure_account(str(node.pubkey()))
...     await backend.approve(client, 2_000_000)
...     await backend.settle("job-1", "ab" * 32, [(str(node.pubkey()), 900_000)],
...                          client=str(client.pubkey()))
...     return (await backend.balances([str(node.pubkey())]))[str(node.pubkey())]
>>> asyncio.run(demo())
900000
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from nosgrid.core.errors import InvalidInput, SettlementFailed
from nosgrid.core.money import DECIMALS, check_amount, format_nos
from nosgrid.settlement import spl, stakes
from nosgrid.settlement.chain import SolanaChain, TokenAccountInfo
from nosgrid.settlement.errors import (
    AllowanceTooSmall,
    InsufficientTokenBalance,
    TokenAccountFrozen,
    TokenAccountMissing,
    TransactionFailed,
    WrongMint,
)

log = logging.getLogger(__name__)

_RESOLVE_CACHE_SIZE: Final = 100_000

LegSpec = tuple[str, int]
"""``(owner public key or token account, amount in base units)``."""


@dataclass(frozen=True)
class SettlementRequest:
    """One job to settle: legs leave ``client``'s NOS account, with the entry hash in a memo."""

    job_id: str
    entry_hash: str
    legs: tuple[LegSpec, ...]
    client: str


@dataclass(frozen=True)
class SettlementAccounts:
    """The on-chain addresses a market's settlement uses (persist these in its config)."""

    mint: str
    authority: str
    treasury: str
    stake_vault: str
    rewards_vault: str
    audit_vault: str = ""  # "" in files written before audits settled on chain
    emissions_vault: str = ""  # "" in files written before emissions settled on chain
    request_vault: str = ""  # "" in files written before compute could be requested on chain


class SolanaSettlement:
    """Settle jobs, hold stakes and anchor the ledger on Solana; public keys are base58 str.

    ``authority`` is the delegate clients approve and the owner of the vaults; pass only its
    public key to get a backend that can approve and read (the CLI) but not settle.
    """

    def __init__(
        self,
        chain: SolanaChain,
        *,
        mint: str | Pubkey,
        authority: Keypair | Pubkey | str,
        treasury: str | Pubkey,
        stake_vault: str | Pubkey,
        rewards_vault: str | Pubkey | None = None,
        audit_vault: str | Pubkey | None = None,
        emissions_vault: str | Pubkey | None = None,
        request_vault: str | Pubkey | None = None,
        decimals: int = DECIMALS,
    ) -> None:
        self.chain = chain
        self.mint = spl.to_pubkey(mint)
        self._authority_key = authority if isinstance(authority, Keypair) else None
        self.authority = (
            authority.pubkey() if isinstance(authority, Keypair) else spl.to_pubkey(authority)
        )
        self.treasury = spl.to_pubkey(treasury)
        self.stake_vault = spl.to_pubkey(stake_vault)
        self.rewards_vault = spl.to_pubkey(rewards_vault or stake_vault)
        #: holds the audit fees carved from payouts and pays audit runners (None: audit
        #: money stays on the ledger, as before the vault existed)
        self.audit_vault = spl.to_pubkey(audit_vault) if audit_vault else None
        #: the on-chain home of the protocol reserve: pays epochs' provider rewards
        self.emissions_vault = spl.to_pubkey(emissions_vault) if emissions_vault else None
        #: where programs and users pay for jobs requested from chain; also the "client"
        #: of those jobs (their payouts leave it, signed by the authority as its owner)
        self.request_vault = spl.to_pubkey(request_vault) if request_vault else None
        self.decimals = decimals
        self._token_accounts: dict[str, Pubkey] = {
            str(key): key for key in self.vaults
        }

    @classmethod
    async def bootstrap(
        cls, chain: SolanaChain, authority: Keypair, treasury_owner: str | None = None
    ) -> SolanaSettlement:
        """Create a NOS mint (``authority`` mints and freezes), the treasury account and the
        vaults. For LiteSVM and local validators; production passes existing addresses.
        """
        mint = await chain.create_mint(authority, DECIMALS)
        treasury = await chain.create_ata(treasury_owner or authority.pubkey(), mint, authority)
        stake_vault = await chain.create_token_account(authority.pubkey(), mint, authority)
        rewards_vault = await chain.create_token_account(authority.pubkey(), mint, authority)
        audit_vault = await chain.create_token_account(authority.pubkey(), mint, authority)
        emissions_vault = await chain.create_token_account(authority.pubkey(), mint, authority)
        request_vault = await chain.create_token_account(authority.pubkey(), mint, authority)
        log.info("bootstrapped solana settlement", extra={"mint": str(mint)})
        return cls(
            chain,
            mint=mint,
            authority=authority,
            treasury=treasury,
            stake_vault=stake_vault,
            rewards_vault=rewards_vault,
            audit_vault=audit_vault,
            emissions_vault=emissions_vault,
            request_vault=request_vault,
        )

    @property
    def vaults(self) -> tuple[Pubkey, ...]:
        """The token accounts the market itself holds (treasury and vaults)."""
        keys = (self.treasury, self.stake_vault, self.rewards_vault, self.audit_vault,
                self.emissions_vault, self.request_vault)
        return tuple(k for k in keys if k is not None)

    @property
    def accounts(self) -> SettlementAccounts:
        """The addresses to store in the market's configuration."""
        return SettlementAccounts(
            mint=str(self.mint),
            authority=str(self.authority),
            treasury=str(self.treasury),
            stake_vault=str(self.stake_vault),
            rewards_vault=str(self.rewards_vault),
            audit_vault=str(self.audit_vault or ""),
            emissions_vault=str(self.emissions_vault or ""),
            request_vault=str(self.request_vault or ""),
        )

    def token_account(self, owner: str | Pubkey) -> str:
        """``owner``'s NOS associated token account."""
        return str(spl.ata(owner, self.mint))

    # -- accounts and allowances ------------------------------------------------------------

    async def ensure_account(self, owner: str) -> str:
        """Create ``owner``'s NOS account if missing (the authority pays rent); its address."""
        return str(await self.chain.create_ata(owner, self.mint, self._signer()))

    async def faucet(self, owner: str, amount: int) -> str:
        """Mint ``amount`` to ``owner`` (dev markets, where the authority is mint authority)."""
        account = await self.ensure_account(owner)
        return await self.chain.mint_to(self.mint, account, amount, self._signer())

    async def fund_emissions(self, amount: int) -> str:
        """Mint ``amount`` into the emissions vault: the protocol reserve's on-chain home
        (dev markets, where the authority is mint authority; a real market transfers it)."""
        if self.emissions_vault is None:
            raise SettlementFailed("this market has no emissions vault")
        return await self.chain.mint_to(self.mint, self.emissions_vault, amount, self._signer())

    async def approve(self, client: Keypair, amount: int, fee_payer: Keypair | None = None) -> str:
        """Let the market settle up to ``amount`` from ``client``'s account (replaces any
        earlier allowance). Used by ``nosgrid wallet approve``; the client pays the fee."""
        source = spl.ata(client.pubkey(), self.mint)
        info = await self.chain.token_account_info(source)
        self._check_usable(info, source, f"client {client.pubkey()}")
        ixs = spl.approve_instructions(
            spl.Approve(source, self.mint, self.authority, client.pubkey(), amount, self.decimals)
        )
        signature = await self.chain.send(ixs, [client], fee_payer or client)
        log.info("approved", extra={"client": str(client.pubkey()), "amount": amount})
        return signature

    async def allowance(self, client: str) -> int:
        """What the market may still take from ``client`` (0 without an approval to it)."""
        info = await self.chain.token_account_info(spl.ata(client, self.mint))
        if info is None or info.delegate != str(self.authority):
            return 0
        return min(info.delegated_amount, info.amount)

    async def balances(self, owners: Iterable[str]) -> dict[str, int]:
        """NOS balance per owner (or token account) given; 0 where no account exists."""
        keys = list(owners)
        accounts = [await self._resolve(key) for key in keys]
        infos = await self.chain.token_account_infos(accounts)
        return {
            key: 0 if info is None else info.amount for key, info in zip(keys, infos, strict=True)
        }

    # -- settlement -------------------------------------------------------------------------

    async def settle(
        self, job_id: str, entry_hash: str, legs: Sequence[LegSpec], client: str
    ) -> str:
        """Pay every leg from ``client``'s account in one transaction; its signature.

        ``legs`` are ``(owner or token account, base units)``: the node's pay, the treasury
        fee, the stakers' share. Raises :class:`AllowanceTooSmall`, ``TokenAccountMissing``,
        ``TokenAccountFrozen``, ``WrongMint`` (nothing sent) or ``TransactionFailed``.
        """
        request = SettlementRequest(job_id, entry_hash, tuple(legs), client)
        return (await self.settle_batch([request]))[job_id]

    async def settle_batch(self, requests: Sequence[SettlementRequest]) -> dict[str, str]:
        """Settle several jobs in as few transactions as fit (each job stays atomic).

        Returns the signature per job id. Everything is checked before anything is sent; if
        a later transaction still fails, the error's ``details["settled"]`` lists the jobs
        already paid.
        """
        if len({r.job_id for r in requests}) != len(requests):
            raise InvalidInput("a batch names the same job twice")
        jobs = [await self._build_job(r) for r in requests]
        await self._check_jobs(jobs, requests)
        payer = self._signer()
        settled: dict[str, str] = {}
        for batch_jobs, ixs in spl.batch_payout_instructions(jobs, payer.pubkey()):
            try:
                signature = await self.chain.send(ixs, [payer], payer)
            except TransactionFailed as err:
                err.details["settled"] = dict(settled)
                raise
            for job in batch_jobs:
                settled[job.job_id] = signature
            log.info(
                "settled on solana",
                extra={"jobs": [j.job_id for j in batch_jobs], "signature": signature},
            )
        return settled

    async def payout_batches(
        self, requests: Sequence[SettlementRequest]
    ) -> list[tuple[list[str], list[Instruction]]]:
        """Check every job (pre-flight, nothing sent) and pack them into transactions.

        Returns ``(job ids, instructions)`` per transaction, to ``prepare`` and send with
        :attr:`signer` as the only signer and fee payer (the outbox sender does this, so it
        can store each signature before submitting). Raises like :meth:`settle`.
        """
        if len({r.job_id for r in requests}) != len(requests):
            raise InvalidInput("a batch names the same job twice")
        jobs = [await self._build_job(r) for r in requests]
        await self._check_jobs(jobs, requests)
        return [
            ([j.job_id for j in batch_jobs], ixs)
            for batch_jobs, ixs in spl.batch_payout_instructions(jobs, self.signer.pubkey())
        ]

    @property
    def signer(self) -> Keypair:
        """The authority keypair (delegate, vault owner and fee payer)."""
        return self._signer()

    async def _build_job(self, request: SettlementRequest) -> spl.SettleJob:
        legs = [
            spl.Leg(await self._resolve(dest), check_amount(amount))
            for dest, amount in request.legs
        ]
        return spl.SettleJob(
            job_id=request.job_id,
            entry_hash=request.entry_hash,
            source=self._source_of(request.client),
            mint=self.mint,
            authority=self.authority,
            legs=tuple(legs),
            decimals=self.decimals,
        )

    def _source_of(self, client: str) -> Pubkey:
        """Where a client's job is paid from: its NOS account by delegation, or the request
        vault itself for a job requested from chain."""
        if self.request_vault is not None and client == str(self.request_vault):
            return self.request_vault
        return spl.ata(client, self.mint)

    async def _check_jobs(
        self, jobs: Sequence[spl.SettleJob], requests: Sequence[SettlementRequest]
    ) -> None:
        addresses = list(
            dict.fromkeys(
                [j.source for j in jobs] + [leg.destination for j in jobs for leg in j.legs]
            )
        )
        infos = dict(zip(addresses, await self.chain.token_account_infos(addresses), strict=True))
        needed: dict[Pubkey, int] = {}
        for job, request in zip(jobs, requests, strict=True):
            needed[job.source] = needed.get(job.source, 0) + job.total
            for leg in job.legs:
                self._check_usable(infos[leg.destination], leg.destination, "destination")
            self._check_payer(infos[job.source], job.source, request.client, needed[job.source])

    def _check_payer(
        self, info: TokenAccountInfo | None, account: Pubkey, client: str, total: int,
        what: str = "settling",
    ) -> None:
        info = self._check_usable(info, account, f"client {client}")
        owned = info.owner == str(self.authority)  # the request vault: no allowance needed
        allowance = (total if owned else
                     info.delegated_amount if info.delegate == str(self.authority) else 0)
        if allowance < total:
            raise AllowanceTooSmall(
                f"{client} allows the market {format_nos(allowance)} NOS but {what} "
                f"needs {format_nos(total)} NOS; run `nosgrid wallet approve "
                f"{format_nos(total)}` (or more) and retry",
                allowance=allowance,
                needed=total,
            )
        if info.amount < total:
            raise InsufficientTokenBalance(
                f"{client} holds {format_nos(info.amount)} NOS but {what} needs "
                f"{format_nos(total)} NOS; deposit NOS to {account}",
                balance=info.amount,
                needed=total,
            )

    def _check_usable(
        self, info: TokenAccountInfo | None, account: Pubkey, who: str
    ) -> TokenAccountInfo:
        if info is None:
            raise TokenAccountMissing(
                f"{who}: NOS token account {account} does not exist (closed or never "
                "created); create it with `nosgrid wallet init` and retry",
                account=str(account),
            )
        if info.mint != str(self.mint):
            raise WrongMint(
                f"{who}: token account {account} holds mint {info.mint}, not NOS "
                f"({self.mint}); use the NOS associated token account",
                account=str(account),
            )
        if info.frozen:
            raise TokenAccountFrozen(
                f"{who}: token account {account} is frozen; ask the market operator to thaw it",
                account=str(account),
            )
        return info

    # -- stakes and vaults ------------------------------------------------------------------

    async def deposit_stake(self, staker: Keypair, amount: int) -> str:
        """Move ``amount`` from the staker's NOS account into the stake vault."""
        source = spl.ata(staker.pubkey(), self.mint)
        infos = await self.chain.token_account_infos([source, self.stake_vault])
        held = self._check_usable(infos[0], source, f"staker {staker.pubkey()}").amount
        self._check_usable(infos[1], self.stake_vault, "stake vault")
        if held < amount:
            raise InsufficientTokenBalance(
                f"staker {staker.pubkey()} holds {format_nos(held)} NOS, "
                f"less than the {format_nos(amount)} NOS stake"
            )
        deposit = spl.StakeDeposit(
            source,
            self.stake_vault,
            self.mint,
            staker.pubkey(),
            amount,
            memo=f"nosgrid stake owner={staker.pubkey()}",
            decimals=self.decimals,
        )
        payer = self._authority_key or staker
        return await self.chain.send(spl.stake_deposit_instructions(deposit), [staker], payer)

    async def withdraw_from_vault(
        self,
        destination: str,
        amount: int,
        reason: str = "unstake",
        reference: str = "-",
        vault: str | None = None,
    ) -> str:
        """Move ``amount`` out of the stake vault (or ``vault``): an unstake back to the
        staker, or a slash (``reason="slash"``) to the treasury; signed by the authority."""
        vault_key = spl.to_pubkey(vault) if vault else self.stake_vault
        dest = await self._resolve(destination)
        infos = await self.chain.token_account_infos([vault_key, dest])
        held = self._check_usable(infos[0], vault_key, "vault").amount
        self._check_usable(infos[1], dest, "destination")
        if held < amount:
            raise InsufficientTokenBalance(
                f"vault {vault_key} holds {format_nos(held)} NOS, "
                f"less than the {format_nos(amount)} NOS to {reason}"
            )
        withdraw = spl.VaultWithdraw(
            vault_key, dest, self.mint, self.authority, amount, reason, reference, self.decimals
        )
        payer = self._signer()
        return await self.chain.send(spl.vault_withdraw_instructions(withdraw), [payer], payer)

    async def stake_move_instructions(
        self, action: str, owner: str, entry_hash: str, legs: Sequence[LegSpec],
        job_id: str = "",
    ) -> list[Instruction]:
        """Check (nothing is sent) and build one stake move for the outbox sender.

        ``action`` ``stake``: ``legs`` leave ``owner``'s NOS account (the authority as its
        approved delegate) for the stake vault; ``unstake``/``slash``: they leave the stake
        vault; ``claim``: the rewards vault; ``audit``: the audit vault (``owner`` is then
        the audited job); ``emission``: the emissions vault (``owner``: ``epoch:<n>``).
        Signed by :attr:`signer` alone. Raises
        :class:`AllowanceTooSmall`, ``InsufficientTokenBalance``, ``TokenAccountMissing``…
        """
        resolved = tuple([
            spl.Leg(await self._resolve(dest), check_amount(amount)) for dest, amount in legs
        ])
        source = (spl.ata(owner, self.mint) if action == "stake" else
                  {"claim": self.rewards_vault, "audit": self.audit_vault,
                   "emission": self.emissions_vault}.get(action, self.stake_vault))
        if source is None:
            raise SettlementFailed(f"this market has no vault for {action} moves; they stay "
                                   "on the ledger")
        memo = stakes.stake_memo_text(action, owner, entry_hash, job_id)
        move = stakes.StakeMove(source, self.mint, self.authority, resolved, memo, self.decimals)
        addresses = list(dict.fromkeys([source, *(leg.destination for leg in resolved)]))
        infos = dict(zip(addresses, await self.chain.token_account_infos(addresses), strict=True))
        for leg in resolved:
            self._check_usable(infos[leg.destination], leg.destination, "destination")
        if action == "stake":
            self._check_payer(infos[source], source, owner, move.total, "staking")
        else:
            held = self._check_usable(infos[source], source, "vault").amount
            if held < move.total:
                raise InsufficientTokenBalance(
                    f"vault {source} holds {format_nos(held)} NOS, less than the "
                    f"{format_nos(move.total)} NOS to {action} (entry {entry_hash[:16]}…)",
                    balance=held, needed=move.total,
                )
        return stakes.stake_move_instructions(move)

    async def anchor(self, ledger_hash: str, seq: int) -> str:
        """Write ``nosgrid anchor seq=<seq> root=<ledger_hash>`` on chain, signed by the
        authority; the signature proves the ledger's state at that time."""
        payer = self._signer()
        ix = spl.anchor_memo_instruction(ledger_hash, seq, payer.pubkey())
        signature = await self.chain.send([ix], [payer], payer)
        log.info("anchored ledger", extra={"seq": seq, "signature": signature})
        return signature

    # -- helpers ----------------------------------------------------------------------------

    def _signer(self) -> Keypair:
        if self._authority_key is None:
            raise SettlementFailed(
                "this settlement backend holds only the authority's public key; "
                "settling needs the coordinator's authority keypair"
            )
        return self._authority_key

    async def _resolve(self, destination: str | Pubkey) -> Pubkey:
        """A token account as is; any other address (a wallet) → its NOS ATA."""
        text = str(destination)
        cached = self._token_accounts.get(text)
        if cached is not None:
            return cached
        key = spl.to_pubkey(destination)
        if await self.chain.account_program(key) != str(spl.TOKEN_PROGRAM_ID):
            key = spl.ata(key, self.mint)
        if len(self._token_accounts) > _RESOLVE_CACHE_SIZE:
            self._token_accounts.clear()
            for fixed in self.vaults:
                self._token_accounts[str(fixed)] = fixed
        self._token_accounts[text] = key
        return key
