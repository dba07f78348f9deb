"""CLI command ``marketloop recommend evaluate``: every recommender on a file, split by time."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from marketloop.cli._app import app, console, err_console
from marketloop.exceptions import ConfigError, describe

#: Fewer test customers than this and the metric table is noise: said, not refused.
MIN_TEST_CUSTOMERS = 30

recommend_app = typer.Typer(
    help="Recommenders: evaluate popularity, item-item, ALS, BPR and LightGCN on your data.",
    no_args_is_help=True,
)
app.add_typer(recommend_app, name="recommend")


@recommend_app.command("evaluate")
def evaluate_command(
    file: Annotated[
        Path, typer.Argument(help="Interactions: CSV (plain or .gz) or Parquet, one row each.")
    ],
    user_col: Annotated[str, typer.Option(help="Column of customer ids (read as text).")],
    item_col: Annotated[str, typer.Option(help="Column of item ids (read as text).")],
    time_col: Annotated[
        str, typer.Option(help="Column of times: date-times, or Unix seconds if numeric.")
    ],
    k: Annotated[int, typer.Option(help="Length of each recommendation list.")] = 20,
    models: Annotated[
        str, typer.Option(help="Comma-separated: popularity, item-item, als, bpr, lightgcn, "
                          "and the fusions als+bpr, bpr+popularity.")
    ] = "popularity,item-item,als,bpr,lightgcn",
    cut: Annotated[
        str | None,
        typer.Option(help="First test moment, e.g. 2011-09-01 (default: last 20% of rows)."),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1,
                                          help="Seed of the models and the bootstrap.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Split FILE by time, train every model and print the metric table.

    Recall, NDCG, MAP, coverage, long-tail share and novelty at --k, overall and by customer
    activity (1, 2-4, 5+ past purchases), and the model to serve: the best one only if it
    beats popularity reliably (paired bootstrap over customers).

    Example: marketloop recommend evaluate ratings.csv.gz --user-col userId
    --item-col movieId --time-col timestamp --k 20 --models popularity,als --json
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit warns and slows otherwise
    from marketloop.strategy.recommend import read_interactions
    from marketloop.strategy.recommend._base import check_k
    from marketloop.strategy.recommend.evaluate import default_models, evaluate, time_split

    k = check_k(k, "--k")
    names = [m.strip() for m in models.split(",") if m.strip()]
    repeated = sorted({m for m in names if names.count(m) > 1})
    if repeated:
        raise ConfigError(describe("--models", "each model once", f"{', '.join(repeated)} "
                                   "more than once"))
    chosen = default_models(names, random_state=seed, n_threads=min(2, os.cpu_count() or 1))
    data = read_interactions(file, user_col=user_col, item_col=item_col, time_col=time_col)
    split = time_split(data, cut=cut)
    n_items = split.train["product_id"].nunique()
    if k >= n_items:
        raise ConfigError(describe("--k", f"fewer than the {n_items:,} items seen in training "
                                   "(a list of every item recommends nothing)", str(k)))
    n_test = split.test["customer_id"].nunique()
    if n_test < MIN_TEST_CUSTOMERS:
        err_console.print(f"WARNING: only {n_test} customers in the test period: the metrics "
                          "below are noise; give more history or an earlier --cut.",
                          markup=False, soft_wrap=True)
    result = evaluate(chosen, split, k=k, random_state=seed)
    if as_json:
        console.print(json.dumps(result.to_dict()), markup=False, soft_wrap=True)
        return
    table = Table(title=f"{file.name}: trained before {split.cut}, tested from it (k={k})")
    columns = ["customers", *[c for c in result.table.columns if c != "customers"]]
    for col in ["model", "activity", *columns]:
        table.add_column(col, justify="left" if col in ("model", "activity") else "right")
    for (name, level), row in result.table.iterrows():
        table.add_row(str(name), str(level), f"{int(row['customers']):,}",
                      *[f"{row[c]:.4f}" for c in columns[1:]])
    console.print(table)
    console.print(result.choice.reason, markup=False, soft_wrap=True)
