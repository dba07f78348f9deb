"""CLI command: ``marketloop profile`` builds point-in-time customer profiles."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from marketloop.cli._app import WarehouseOption, app, console, err_console, warehouse_url


@app.command()
def profile(
    as_of: Annotated[
        str,
        typer.Option(
            "--as-of",
            help="Cut-off date or timestamp (ISO 8601, UTC), e.g. 2025-04-01; only data "
            "strictly before it is read.",
        ),
    ],
    warehouse: WarehouseOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object.")
    ] = False,
) -> None:
    """Build customer profiles at --as-of into the warehouse table `profiles`.

    Re-running the same --as-of replaces that cut-off's rows in one transaction.

    Example: marketloop profile --as-of 2025-04-01 --warehouse duckdb:///shop.duckdb --json
    """
    from marketloop.data.profiles import parse_as_of, write_profiles
    from marketloop.data.warehouse import connect

    moment = parse_as_of(as_of, where="--as-of")  # a bad date fails before connecting
    url = warehouse_url(warehouse)
    started = time.perf_counter()
    run = write_profiles(connect(url, must_exist=True), as_of=moment)
    summary = {
        **run.to_dict(),
        "warehouse": url,
        "seconds": round(time.perf_counter() - started, 3),
    }
    if not run.rows:
        err_console.print(f"WARNING: no customer is known before {moment.date()}: nothing to "
                          "profile (an --as-of before the shop's first customer, or an empty "
                          "warehouse).", markup=False, soft_wrap=True)
    if as_json:
        print(json.dumps(summary))  # noqa: T201 - the CLI's output
        return
    console.print(
        f"profiles at {summary['as_of']}: {run.rows:,} customers, {summary['features']} "
        f"features written to {run.table} ({run.replaced:,} rows replaced) "
        f"in {summary['seconds']:.1f} s",
        markup=False,
    )
