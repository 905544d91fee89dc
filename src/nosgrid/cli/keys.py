"""`nosgrid keys` — API keys for the OpenAI-compatible gateway (create, list, revoke).

A key is signed locally by your keypair (it never leaves your machine unsigned) and then
registered with the coordinator so that `keys list` and `usage` can name it.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from solders.keypair import Keypair

from nosgrid.cli.common import JsonOpt, KeypairOpt, UrlOpt, client, table
from nosgrid.cli.output import console, print_json
from nosgrid.core.apikeys import issue_key, parse_duration
from nosgrid.core.errors import InvalidInput
from nosgrid.core.money import format_nos, parse_nos
from nosgrid.sdk.client import Client, default_url
from nosgrid.sdk.wallet import load_keypair

app = typer.Typer(help="API keys for the OpenAI-compatible gateway.", no_args_is_help=True)


def create_key(url: str | None, kp: Keypair, cap: str, expires: str,
               models: list[str], label: str = "") -> dict[str, Any]:
    """Sign a key with ``kp`` and register it; returns the registration plus the key."""
    try:
        seconds = parse_duration(expires)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    now = int(time.time())
    key = issue_key(kp, cap=parse_nos(cap), expires_at=now + seconds, issued_at=now,
                    models=models)
    with Client(url or default_url(), kp) as c:
        reg = c.register_key(key, label)
    return {**reg.model_dump(mode="json"), "key": key}


@app.command("create")
def create(
    cap: Annotated[str, typer.Option("--cap", help="spend cap in NOS, e.g. 5")] = "5",
    expires: Annotated[str, typer.Option("--expires", help="lifetime: 30d, 12h, 15m")] = "30d",
    model: Annotated[list[str] | None, typer.Option("--model", help="allowed model "
                                                    "(repeatable; default: any)")] = None,
    label: Annotated[str, typer.Option("--label", help="a note for `keys list`")] = "",
    url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False,
) -> None:
    """Create a key: your keypair signs a spend cap, an expiry and the allowed models."""
    out = create_key(url, load_keypair(keypair), cap, expires, list(model or []), label)
    if json:
        print_json(out)
        return
    console.print(f"key [bold]{out['kid']}[/] (cap {out['cap_nos']} NOS, models "
                  f"{', '.join(out['models']) or 'any'}):")
    console.print(str(out["key"]), highlight=False, soft_wrap=True)


@app.command("list")
def list_(url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False) -> None:
    """Your keys with their cap, spend, hold and state."""
    with client(url, keypair) as c:
        rows = c.keys().keys
    if json:
        print_json(rows)
        return
    now = time.time()
    console.print(table("API keys", ["kid", "label", "models", "cap", "spent", "held",
                                     "expires", "state"], [
        [k.kid, k.label, ", ".join(k.models) or "any", format_nos(k.cap),
         format_nos(k.spent), format_nos(k.hold),
         time.strftime("%Y-%m-%d %H:%M", time.gmtime(k.expires_at)),
         "revoked" if k.revoked_at else ("expired" if k.expires_at <= now else "active")]
        for k in rows]))


@app.command("revoke")
def revoke(kid: str, url: UrlOpt = None, keypair: KeypairOpt = None,
           json: JsonOpt = False) -> None:
    """Revoke a key at once; what it holds returns to your wallet."""
    with client(url, keypair) as c:
        out = c.revoke_key(kid)
    if json:
        print_json(out)
        return
    console.print(f"key [bold]{kid}[/] revoked")
