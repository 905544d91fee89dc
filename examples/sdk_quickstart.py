"""Post a job with the nosgrid SDK and wait for it, as a program would.

Run a local marketplace first (`nosgrid up`), then:

    NOSGRID_URL=http://127.0.0.1:8700 python examples/sdk_quickstart.py

The keypair is ~/.config/nosgrid/id.json (or $NOSGRID_KEYPAIR); one is created if missing.
"""

from __future__ import annotations

from pathlib import Path

from nosgrid.core.errors import NosgridError
from nosgrid.sdk import Client, default_keypair_path, load_keypair, new_keypair, save_keypair

SPEC = Path(__file__).parent / "jobs" / "batch-hello.json"


def main() -> None:
    path = default_keypair_path()
    if not path.exists():
        save_keypair(new_keypair(), path)
    with Client(keypair=load_keypair(path)) as c:
        c.faucet("10")
        job = c.post_job(spec_text=SPEC.read_text(), market="cpu")
        print(f"posted {job.id}, escrowed {job.deposit_nos} NOS")
        for chunk in c.follow_logs(job.id):
            print(chunk.data, end="")
        done = c.wait(job.id)  # returns once done.state is in nosgrid.sdk.ENDED
        cost = done.settlement.cost_nos if done.settlement else "(held for an audit)"
        print(f"{done.state}: cost {cost} NOS")
        for out in done.result.get("outputs", []):
            print(out["path"], c.download_blob(out["sha256"]).decode().strip())


if __name__ == "__main__":
    try:
        main()
    except NosgridError as err:
        raise SystemExit(f"error [{err.code}]: {err.message}") from None
