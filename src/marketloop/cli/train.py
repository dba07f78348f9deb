"""CLI commands: ``marketloop train`` fits a model; ``marketloop predict`` scores customers."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from marketloop.cli._app import WarehouseOption, app, console, err_console, warehouse_url

_MODELS_HELP = "Folder of saved models (<kind>-<as_of>-<version>.pkl and .json)."


@app.command()
def train(
    kind: Annotated[
        str, typer.Argument(help="The model: clv, churn or next-purchase.", show_default=False)
    ],
    as_of: Annotated[
        str,
        typer.Option(
            "--as-of",
            help="Training cut-off (ISO 8601, UTC), e.g. 2025-08-01; nothing at or after it "
            "is read. churn and next-purchase learn from profiles at --as-of minus "
            "--horizon-days and labels from the window up to --as-of.",
        ),
    ],
    horizon_days: Annotated[
        int,
        typer.Option("--horizon-days", help="Label window of churn and next-purchase, days."),
    ] = 90,
    warehouse: WarehouseOption = None,
    models_dir: Annotated[Path, typer.Option("--models-dir", help=_MODELS_HELP)] = Path(
        "marketloop-models"
    ),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object.")
    ] = False,
) -> None:
    """Fit a model on the warehouse's data before --as-of and save it in --models-dir.

    Example: marketloop train churn --as-of 2025-08-01 --warehouse duckdb:///shop.duckdb
    """
    from marketloop.data.profiles import parse_as_of
    from marketloop.data.warehouse import connect
    from marketloop.predict._training import _check_horizon, _check_kind, save_model, train_model

    _check_kind(kind)  # bad arguments fail before connecting
    _check_horizon(horizon_days)
    moment = parse_as_of(as_of, where="--as-of")
    url = warehouse_url(warehouse)
    started = time.perf_counter()
    con = connect(url, must_exist=True)
    trained = train_model(con, kind, as_of=moment, horizon_days=horizon_days)
    path = save_model(trained, models_dir)
    summary = {
        "model": kind,
        "as_of": moment.isoformat(),
        "model_version": trained.version,
        "path": str(path),
        "customers": trained.metadata.get("customers"),
        "horizon_days": horizon_days,
        "warehouse": url,
        "seconds": round(time.perf_counter() - started, 3),
    }
    if as_json:
        print(json.dumps(summary))  # noqa: T201 - the CLI's output
        return
    console.print(
        f"trained {kind} at {summary['as_of']} on {summary['customers']:,} customers: "
        f"version {trained.version}, saved to {path} in {summary['seconds']:.1f} s",
        markup=False,
    )


@app.command()
def predict(
    as_of: Annotated[
        str,
        typer.Option(
            "--as-of",
            help="Scoring cut-off (ISO 8601, UTC), e.g. 2025-08-01; customers are described "
            "by data strictly before it.",
        ),
    ],
    warehouse: WarehouseOption = None,
    models_dir: Annotated[Path, typer.Option("--models-dir", help=_MODELS_HELP)] = Path(
        "marketloop-models"
    ),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object.")
    ] = False,
) -> None:
    """Score customers at --as-of with the latest saved model of each kind.

    Writes the warehouse table `predictions` (customer_id, as_of, model, quantity, value,
    model_version, created_at); re-running an --as-of replaces each model's rows in one
    transaction.

    Example: marketloop predict --as-of 2025-08-01 --warehouse duckdb:///shop.duckdb
    """
    from marketloop.data.profiles import parse_as_of
    from marketloop.data.warehouse import connect
    from marketloop.exceptions import ConfigError, describe
    from marketloop.predict._store import write_predictions
    from marketloop.predict._training import KINDS, latest_model, predict_model

    moment = parse_as_of(as_of, where="--as-of")
    models = [m for m in (latest_model(models_dir, k, as_of=moment) for k in KINDS) if m]
    if not models:
        raise ConfigError(
            describe(
                f"--models-dir {models_dir}",
                f"a model trained at or before {moment:%Y-%m-%d}",
                "none",
                f"Run `marketloop train clv|churn|next-purchase --as-of DATE --models-dir "
                f"{models_dir}` first.",
            )
        )
    url = warehouse_url(warehouse)
    con = connect(url, must_exist=True)
    _say_if_past_the_data(con, moment)
    started = time.perf_counter()
    runs = []
    for trained in models:
        scores = predict_model(con, trained, as_of=moment)
        runs.append(
            write_predictions(
                con, scores, as_of=moment, model=trained.kind, model_version=trained.version
            )
        )
    summary = {
        "as_of": moment.isoformat(),
        "warehouse": url,
        "models": [r.to_dict() for r in runs],
        "seconds": round(time.perf_counter() - started, 3),
    }
    if as_json:
        print(json.dumps(summary))  # noqa: T201 - the CLI's output
        return
    for r in runs:
        console.print(
            f"{r.model} {r.model_version}: {r.customers:,} customers x "
            f"{len(r.quantities)} quantities ({', '.join(r.quantities)}) written to {r.table} "
            f"({r.replaced:,} rows replaced)",
            markup=False,
        )


#: Past this many days after the last order, an --as-of scores a future the data never saw.
STALE_DAYS = 365


def _say_if_past_the_data(con: object, moment: object) -> None:
    """A warning when --as-of lies over a year after the warehouse's last order."""
    if "orders" not in set(con.list_tables()):  # type: ignore[attr-defined]
        return
    orders = con.table("orders")  # type: ignore[attr-defined]
    last = orders.ordered_at.max().to_pyarrow().as_py()
    if last is None:
        return
    gap = (moment - last.replace(tzinfo=None)).days  # type: ignore[operator]
    if gap > STALE_DAYS:
        err_console.print(f"WARNING: --as-of is {gap:,} days after the last order "
                          f"({last:%Y-%m-%d}): the scores extrapolate past the data.",
                          markup=False, soft_wrap=True)
