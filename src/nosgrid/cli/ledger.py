"""`nosgrid ledger verify` — recompute the hash chain and the invariants."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nosgrid.cli.common import JsonOpt, UrlOpt, client
from nosgrid.cli.output import console, print_json
from nosgrid.sdk import solana as solana_client
from nosgrid.sdk.models import LedgerVerifyReport, OnchainVerifyReport

app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)


@app.command("verify")
def verify(
    db: Annotated[Path | None, typer.Option(help="check a database file offline")] = None,
    url: UrlOpt = None,
    onchain: Annotated[bool, typer.Option(
        "--onchain", help="also check the anchors and reconcile balances on Solana")] = False,
    json: JsonOpt = False,
) -> None:
    """Check the chain, supply, non-negativity and replay; exits 1 when anything is off."""
    report: LedgerVerifyReport
    if onchain:
        if db is not None:
            raise typer.BadParameter("--onchain asks the coordinator (it holds the chain "
                                     "connection); drop --db", param_hint="--onchain")
        with client(url, None, need_key=False) as c:
            report = c.run(solana_client.verify_onchain(c.aio))
    elif db is not None:
        from nosgrid.coordinator.services.accounts import verify_ledger
        from nosgrid.store.readonly import open_readonly

        if not db.exists():
            raise typer.BadParameter(f"{db} does not exist", param_hint="--db")
        store = open_readonly(db)  # never migrates or writes the file it checks
        try:
            with store.uow(write=False) as uow:
                report = LedgerVerifyReport(**verify_ledger(uow).as_dict())
            store.check_unchanged()
        finally:
            store.close()
    else:
        with client(url, None, need_key=False) as c:
            report = c.ledger_verify()
    if json:
        print_json(report)
    elif report.ok:
        console.print(f"[green]ledger ok[/]: {report.entries} entries, "
                      f"{report.accounts} accounts, supply {report.supply} NOS, "
                      f"head {report.head_hash[:16]}…")
        if isinstance(report, OnchainVerifyReport):
            console.print(f"[green]on chain ok[/]: {len(report.accounts_checked)} accounts "
                          f"reconciled, {report.anchors_checked} anchors verified "
                          f"(mint {report.mint}); outbox {report.outbox or 'empty'}")
            for note in report.notes[:20]:
                console.print(f"  note: {note}")
    else:
        console.print(f"[red]ledger FAILED[/] ({len(report.problems)} problems):")
        for p in report.problems[:50]:
            console.print(f"  - {p}")
    if not report.ok:
        raise typer.Exit(1)
