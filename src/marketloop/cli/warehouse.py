"""CLI commands: ``marketloop init`` and ``marketloop ingest``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from marketloop.cli._app import WarehouseOption, app, console, err_console, warehouse_url


@app.command()
def init(warehouse: WarehouseOption = None) -> None:
    """Create the canonical warehouse tables (those that exist are checked, not touched).

    Example: marketloop init --warehouse duckdb:///shop.duckdb
    """
    from marketloop.data.warehouse import connect, init_warehouse

    url = warehouse_url(warehouse)
    created = init_warehouse(connect(url))
    console.print(
        f"warehouse {url}: {len(created)} tables created"
        + (f" ({', '.join(created)})" if created else "")
    )


@app.command()
def ingest(
    paths: Annotated[
        list[Path], typer.Argument(help="Files (CSV, CSV.gz, Parquet, JSONL) or folders.")
    ],
    format: Annotated[
        str,
        typer.Option("--format", help="auto (recognise by header), canonical or online-retail."),
    ] = "auto",
    warehouse: WarehouseOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the counts as one JSON object.")
    ] = False,
) -> None:
    """Load shop files into the warehouse; every row is added, a duplicate, or quarantined.

    Example: marketloop ingest shop/ --warehouse duckdb:///shop.duckdb --json
    """
    from marketloop.data.ingest import ingest as run_ingest
    from marketloop.data.warehouse import discarded_if_failed

    with discarded_if_failed(warehouse_url(warehouse)) as con, Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    ) as bar:
        task = bar.add_task("ingest", total=None)
        report = run_ingest(
            paths, con=con, format=format, progress=lambda msg: bar.update(task, description=msg)
        )
    if as_json:
        print(json.dumps(report.to_dict(), default=str))  # noqa: T201 - the CLI's output
        return
    table = Table(title=f"ingest run {report.run_id[:12]}")
    for col in ("file", "table", "read", "accepted", "duplicates", "quarantined", "replaced"):
        table.add_column(col, justify="left" if col in ("file", "table") else "right")
    for f in report.files:
        table.add_row(
            Path(f.path).name,
            f.table,
            *(
                f"{getattr(f, c):,}"
                for c in ("read", "accepted", "duplicates", "quarantined", "replaced")
            ),
        )
    table.add_row(
        "total",
        "",
        *(
            f"{getattr(report, c):,}"
            for c in ("read", "accepted", "duplicates", "quarantined", "replaced")
        ),
        style="bold",
    )
    console.print(table)
    if report.quarantined:
        reasons = ", ".join(f"{r} {n:,}" for r, n in report.reasons.items())
        console.print(f"{report.quarantined:,} rows quarantined: {reasons}", markup=False)
