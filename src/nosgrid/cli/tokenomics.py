"""`nosgrid tokenomics` commands: the genesis allocation and the emission curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from nosgrid.cli.output import console, fail, print_json
from nosgrid.core import tokenomics as tk
from nosgrid.core.money import format_nos

app = typer.Typer(help="Token supply, allocation, vesting and emissions.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Token supply, allocation, vesting and emissions."""


def _report(epochs: int, params: tk.EconomicParams) -> dict[str, Any]:
    reserve = tk.reserve_amount(params)
    sched = tk.emission_schedule(epochs, params)
    cumulative = 0
    rows = []
    for k, amount in enumerate(sched):
        cumulative += amount
        rows.append({"epoch": k, "release_nos": format_nos(amount),
                     "cumulative_nos": format_nos(cumulative),
                     "reserve_left_nos": format_nos(reserve - cumulative),
                     "emitted_pct": round(100 * cumulative / reserve, 4) if reserve else 0.0})
    return {
        "total_supply_nos": format_nos(sum(tk.allocations(params).values())),
        "allocation": tk.allocation_table(params),
        "epoch_seconds": params.epoch_seconds,
        "emission_decay_bps": params.emission_decay_bps,
        "max_reward_per_gpu_second_nos": format_nos(params.max_reward_per_gpu_second),
        "emission": rows,
    }


@app.command("show")
def show(
    epochs: int = typer.Option(52, "--epochs", min=1, max=5_000,
                               help="How many epochs of the emission curve to show."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    plot: Path | None = typer.Option(None, "--plot", help="Write the emission curve as PNG."),
) -> None:
    """Print the allocation table and the emission by epoch (amounts in NOS)."""
    params = tk.DEFAULT_PARAMS
    report = _report(epochs, params)
    if plot is not None:
        _plot(report, plot)
    if as_json:
        print_json(report)
        return
    alloc = Table("account", "share", "NOS", "cliff (months)", "vesting (months)",
                  title=f"Genesis allocation — {report['total_supply_nos']} NOS")
    for row in report["allocation"]:
        alloc.add_row(str(row["account"]), f"{int(row['bps']) / 100:.2f}%",
                      str(row["amount_nos"]), str(row["cliff_months"]),
                      str(row["vesting_months"]))
    console.print(alloc)
    days = params.epoch_seconds / 86_400
    em = Table("epoch", "release NOS", "cumulative NOS", "reserve left NOS", "emitted",
               title=f"Emission: {params.emission_decay_bps / 100:g}% of the reserve left "
                     f"per {days:g}-day epoch")
    for r in report["emission"]:
        em.add_row(str(r["epoch"]), r["release_nos"], r["cumulative_nos"],
                   r["reserve_left_nos"], f"{r['emitted_pct']:.2f}%")
    console.print(em)
    if plot is not None:
        console.print(f"wrote {plot}", highlight=False)


def _plot(report: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise fail("--plot needs matplotlib: pip install 'nosgrid[plot]'") from exc
    rows = report["emission"]
    xs = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(xs, [float(r["release_nos"]) for r in rows], label="release per epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel("NOS per epoch")
    ax2 = ax.twinx()
    ax2.plot(xs, [r["emitted_pct"] for r in rows], color="tab:orange",
             label="reserve emitted (%)")
    ax2.set_ylabel("% of reserve emitted")
    ax.set_title("nosgrid provider emission")
    fig.legend(loc="upper center")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        plt.close(fig)
