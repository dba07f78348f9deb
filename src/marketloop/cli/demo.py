"""CLI command: ``marketloop demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from marketloop.cli._app import app, console, err_console
from marketloop.cli._files import output_folder


@app.command()
def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the export, warehouse and report.")
    ] = Path("demo-out"),
    customers: Annotated[
        int, typer.Option("--customers", min=1000, help="Customers to simulate (at least 1,000: "
                          "the uplift stage needs buyers in every arm).")
    ] = 20_000,
    days: Annotated[int, typer.Option(
        "--days", min=120, help="Days of history to simulate (at least 120: the CLV "
        "check holds out the last 13 weeks).")] = 365,
    seed: Annotated[int, typer.Option("--seed", min=0, max=2**32 - 1, help="Simulator seed.")] = 7,
    dirty_rate: Annotated[
        float, typer.Option("--dirty-rate", min=0.0, max=0.5, help="Share of broken export rows.")
    ] = 0.01,
) -> None:
    """Run the loop on a simulated shop and write OUT/report.html (no server, no data needed).

    Example: marketloop demo --out demo-out --customers 20000
    """
    from marketloop.demo import run_demo

    output_folder(out)
    result = run_demo(
        out,
        n_customers=customers,
        n_days=days,
        dirty_rate=dirty_rate,
        random_state=seed,
        say=lambda msg: err_console.print(f"• {msg}", markup=False),
    )
    r = result.ingest
    console.print(
        f"ingest: read {r.read:,} = accepted {r.accepted:,} + duplicates {r.duplicates:,} "
        f"+ quarantined {r.quarantined:,}; "
        f"broken rows caught {result.broken_caught:,}/{result.broken_total:,}",
        markup=False,
    )
    console.print(
        f"segments: {len(result.segments)} RFM segments over "
        f"{int(result.segments.customers.sum()):,} customers",
        markup=False,
    )
    if result.season is not None:
        final = result.season.final()
        ab = final.loc["A/B/n test", "cum_profit"]
        for name in final.index.drop(["A/B/n test", "oracle"]):
            console.print(
                f"season: {name} profit {final.loc[name, 'cum_profit']:,.0f} vs A/B/n test "
                f"{ab:,.0f} ({final.loc[name, 'cum_profit'] / ab - 1:+.1%}); regret vs oracle "
                f"{final.loc[name, 'cum_regret']:,.0f}",
                markup=False,
            )
    if result.campaign is not None:
        t = result.campaign.comparison.table
        diff, low, high = result.campaign.uplift_vs_rfm
        console.print(
            f"campaign: uplift plan {t.loc['uplift', 'share']:.0%} of the oracle's true "
            f"incremental profit, RFM rule {t.loc['rfm', 'share']:.0%}, random "
            f"{t.loc['random', 'share']:.0%} (uplift - RFM {diff:+.0%} [{low:+.0%}, {high:+.0%}])",
            markup=False,
        )
    timing = ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
    console.print(f"report: {result.report_path} ({timing})", markup=False)
