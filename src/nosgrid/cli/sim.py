"""`nosgrid sim`: the verification market simulator (figures as JSON, chart as PNG)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer
from rich.table import Table

from nosgrid.cli.output import console, fail, print_json


def sim(
    seed: int = typer.Option(2024, "--seed", help="Seed of every random draw."),
    runs: int = typer.Option(1_000, "--runs", min=10, max=100_000,
                             help="Seeded runs per detection figure."),
    nodes: int = typer.Option(1_000, "--nodes", min=20, max=1_000_000,
                              help="Nodes in the simulated markets."),
    jobs: int = typer.Option(100_000, "--jobs", min=100, max=100_000_000,
                             help="Jobs per simulated market."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole report as JSON."),
    plot: Path | None = typer.Option(None, "--plot", help="Write the charts as PNG."),
) -> None:
    """Simulate audits, disputes and slashing; print detection, overhead and profits; and
    a coordinated manipulation of the price oracle by 10%, 30% and 49% of reporters."""
    from nosgrid.sim.report import SimConfig, run_all
    from nosgrid.sim.report import plot as write_plot

    base = SimConfig()
    cfg = replace(base, seed=seed, runs=runs,
                  market=replace(base.market, nodes=nodes, jobs=jobs),
                  ring_sizes=tuple(k for k in base.ring_sizes if k <= max(nodes // 10, 2)))
    report = run_all(cfg)
    if plot is not None:
        try:
            write_plot(report, plot, cfg.verification)
        except ImportError as exc:
            raise fail("--plot needs matplotlib: pip install 'nosgrid[plot]'") from exc
        except OSError as exc:
            raise fail(f"cannot write {plot}: {exc.strerror or exc}") from exc
    if as_json:
        print_json(report)
        return
    t = Table("figure", "value", title=f"nosgrid verification sim (seed {seed}, {runs} runs)")
    for key in ("caught_5pct_within_1000", "caught_5pct_newcomer_within_200",
                "audit_overhead", "audit_overhead_adversarial", "max_cheater_profit_nos",
                "max_ring_profit_nos", "max_model_swap_profit_nos",
                "honest_false_slashes", "honest_earnings_per_job_nos"):
        t.add_row(key, str(report[key]))
    console.print(t)
    o = report["oracle_manipulation"]
    t = Table("attackers", "worst strategy", "max deviation from honest median",
              "share of honest half-range", "epochs outside honest range",
              title=f"price oracle: coordinated manipulation over {o['epochs']} epochs, "
              f"{o['reporters']} reporters (honest noise {o['noise_bps'] / 100:g}%, "
              f"honest-only max deviation {o['baseline_max_deviation_bps'] / 100:g}%)")
    for f, a in o["attack"].items():
        t.add_row(f"{float(f):.0%} ({a['attackers']})", a["worst_strategy"],
                  f"{a['max_deviation_bps'] / 100:g}%", f"{a['max_share_of_honest_half_range']:g}",
                  str(a["epochs_outside_honest_range"]))
    console.print(t)
    if plot is not None:
        console.print(f"wrote {plot}", highlight=False)
