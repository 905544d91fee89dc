"""`nosgrid wallet` — keypairs and balances, and `nosgrid faucet` for dev markets."""

from __future__ import annotations

from typing import Annotated

import typer

from nosgrid.cli.common import JsonOpt, KeypairOpt, UrlOpt, client, table
from nosgrid.cli.output import console, print_json
from nosgrid.core.money import format_nos, parse_nos
from nosgrid.sdk import solana as solana_wallet
from nosgrid.sdk.wallet import default_keypair_path, load_keypair, new_keypair, save_keypair

app = typer.Typer(help="Your keypair and NOS balance.", no_args_is_help=True)


@app.command("new")
def new(keypair: KeypairOpt = None,
        force: Annotated[bool, typer.Option("--force", help="replace an existing file")] = False,
        json: JsonOpt = False) -> None:
    """Create a keypair (solana-keygen id.json format)."""
    path = save_keypair(new_keypair(), keypair or default_keypair_path(), overwrite=force)
    kp = load_keypair(path)
    if json:
        print_json({"pubkey": str(kp.pubkey()), "path": str(path)})
    else:
        console.print(f"new keypair [bold]{kp.pubkey()}[/] written to {path}")


@app.command("show")
def show(keypair: KeypairOpt = None, json: JsonOpt = False) -> None:
    """Show the public key of your keypair."""
    path = keypair or default_keypair_path()
    kp = load_keypair(path)
    if json:
        print_json({"pubkey": str(kp.pubkey()), "path": str(path)})
    else:
        console.print(f"{kp.pubkey()}  ({path})")


@app.command("balance")
def balance(url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False) -> None:
    """Your NOS balance (and stake) on the coordinator, and on chain when it settles there."""
    with client(url, keypair) as c:
        acct = c.balance()
        chain = (c.run(solana_wallet.onchain_account(c.aio))
                 if c.health().settlement != "local" else None)
    if json:
        print_json({**acct.model_dump(mode="json"),
                    **({"onchain": chain.model_dump(mode="json")} if chain else {})})
        return
    console.print(f"{acct.pubkey}: [bold]{acct.balance_nos} NOS[/]"
                  f" (staked {acct.stake_nos} NOS)")
    if chain is not None:
        console.print(f"on chain: [bold]{chain.onchain_balance_nos} NOS[/] in "
                      f"{chain.token_account}; approved {chain.allowance_nos} NOS "
                      f"({chain.reserved_nos} reserved by open jobs and payouts)")


@app.command("approve")
def approve(amount: Annotated[str, typer.Argument(help="NOS the market may settle, e.g. 50")],
            url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False) -> None:
    """Let the market settle up to AMOUNT NOS from your token account (Solana settlement).

    The approval is built and signed here; the coordinator only relays it. It replaces any
    earlier approval.
    """
    with client(url, keypair) as c:
        acct = c.run(solana_wallet.approve(c.aio, parse_nos(amount)))
    if json:
        print_json(acct)
    else:
        console.print(f"approved [bold]{acct.allowance_nos} NOS[/] for the market "
                      f"(free {acct.free_nos} NOS, on chain {acct.onchain_balance_nos} NOS)"
                      f"; signature {acct.signature}")


@app.command("journal")
def journal(url: UrlOpt = None, keypair: KeypairOpt = None, limit: int = 20,
            json: JsonOpt = False) -> None:
    """Recent ledger postings touching your wallet."""
    with client(url, keypair) as c:
        rows = c.journal(limit=limit).entries
    if json:
        print_json(rows)
        return
    console.print(table("journal", ["seq", "kind", "ref", "change (NOS)"], [
        [r.seq, r.kind, r.ref, ("+" if r.delta > 0 else "") + format_nos(r.delta)]
        for r in rows]))


def faucet(amount: Annotated[str, typer.Argument(help="NOS to request, e.g. 100")],
           url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False) -> None:
    """Get dev NOS from a local coordinator's faucet (minted on chain with litesvm)."""
    with client(url, keypair) as c:
        if c.health().settlement == "litesvm":
            minted = c.run(solana_wallet.faucet(c.aio, amount))
            shown, balance_nos = ({**minted.model_dump(mode="json"),
                                   "balance_nos": minted.onchain_balance_nos},
                                  minted.onchain_balance_nos)
        else:
            acct = c.faucet(amount)
            shown, balance_nos = acct.model_dump(mode="json"), acct.balance_nos
    if json:
        print_json(shown)
    else:
        console.print(f"balance is now [bold]{balance_nos} NOS[/]")
