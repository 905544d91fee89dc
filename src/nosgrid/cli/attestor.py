"""`nosgrid attestor` commands: the key chain that signs result receipts."""

from __future__ import annotations

from typing import Annotated

import typer

from nosgrid.cli.common import JsonOpt, KeypairOpt, UrlOpt, client, table
from nosgrid.cli.output import console, print_json
from nosgrid.core.attestor import AttestorEpoch, verify_chain

app = typer.Typer(help="The attestor key chain that signs result receipts.",
                  no_args_is_help=True)


@app.command("show")
def show(first: Annotated[str | None, typer.Option(
             help="the market's first attestor key you trust (default: the chain's epoch 0)")
         ] = None,
         url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False) -> None:
    """Every epoch's key, checked from the market's first key."""
    with client(url, keypair, need_key=False) as c:
        chain = c.attestor_chain()
    records = [AttestorEpoch(e.epoch, e.key, e.signature) for e in chain.epochs]
    current = verify_chain(records, first or records[0].key) if records else None
    if json:
        print_json({**chain.model_dump(mode="json"), "verified": current is not None})
        return
    console.print(table("attestor epochs", ["epoch", "key", "signed by the previous key"],
                        [[r.epoch, r.key, "genesis" if r.epoch == 0 else "yes"]
                         for r in records]))
    console.print(f"current key: {current or 'none yet (no receipt issued)'}")


@app.command("rotate")
def rotate(url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False) -> None:
    """Admin: start a new epoch; the current key signs the new one."""
    with client(url, keypair) as c:
        record = c.rotate_attestor()
    if json:
        print_json(record)
        return
    console.print(f"attestor epoch {record.epoch}: {record.key}")
