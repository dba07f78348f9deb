"""CLI command ``marketloop simulate``: write a synthetic shop export with its truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from marketloop.cli._app import app, console
from marketloop.cli._files import output_folder
from marketloop.exceptions import ConfigError, describe


def _check(
    customers: int, days: int, dirty_rate: float, fmt: str, start: str, scenario: list[str]
) -> None:
    from marketloop.simulate import SCENARIOS

    if customers < 1:
        raise ConfigError(describe("--customers", "an integer >= 1", str(customers)))
    if days < 1:
        raise ConfigError(describe("--days", "an integer >= 1", str(days)))
    if not 0.0 <= dirty_rate <= 0.5:
        raise ConfigError(describe("--dirty-rate", "a share in [0, 0.5]", str(dirty_rate)))
    if fmt not in ("csv", "parquet"):
        raise ConfigError(describe("--format", "csv or parquet", repr(fmt)))
    bad = [s for s in scenario if s not in SCENARIOS]
    if bad:
        raise ConfigError(describe("--scenario", f"one of {', '.join(SCENARIOS)}", ", ".join(bad)))
    try:
        import pandas as pd

        pd.Timestamp(start)
    except ValueError:
        raise ConfigError(describe("--start", "a date like 2025-01-01", repr(start))) from None


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="Folder to write the export into.")],
    customers: Annotated[int, typer.Option(help="Customers ever acquired.")] = 20_000,
    days: Annotated[int, typer.Option(help="Days in the observed period.")] = 365,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1,
                                        help="Random seed; same seed, same files.")] = 0,
    dirty_rate: Annotated[float, typer.Option(help="Share of rows to break, 0 to 0.5.")] = 0.0,
    format: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    start: Annotated[str, typer.Option(help="First day of the period (UTC).")] = "2025-01-01",
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            help="Scenario switch, repeatable: historical_bias, channel_degradation, "
            "content_backlash, small_shop."
        ),
    ] = None,
) -> None:
    """Simulate a shop and write its export, manifest.json and truth/.

    Example: marketloop simulate --customers 2000 --days 180 --seed 1 --out shop/
    """
    scenarios = list(scenario or [])
    _check(customers, days, dirty_rate, format, start, scenarios)
    output_folder(out)
    from marketloop.simulate import Market, write_export

    market = Market(
        n_customers=customers,
        n_days=days,
        random_state=seed,
        start=start,
        scenarios=tuple(scenarios),
    )
    shop = market.simulate()
    result = write_export(
        shop,
        out,
        format=format,
        dirty_rate=dirty_rate,  # type: ignore[arg-type]
        random_state=seed,
    )
    table = Table(title=f"marketloop simulate → {out}")
    table.add_column("table")
    table.add_column("file")
    table.add_column("rows", justify="right")
    for name, path in result.files.items():
        table.add_row(name, path.name, f"{result.rows[name]:,}")
    table.add_row("dirty rows", "truth/dirty_rows.csv", f"{len(result.dirty_rows):,}")
    console.print(table)
