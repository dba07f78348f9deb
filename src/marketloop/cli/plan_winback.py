"""CLI command ``marketloop plan winback``: dormant customers, a bundle each, channel and offer."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from marketloop.cli._app import WarehouseOption, console, warehouse_url
from marketloop.cli._files import output_file
from marketloop.cli.plan import plan_app
from marketloop.exceptions import ConfigError, SchemaError, describe

if TYPE_CHECKING:
    import pandas as pd


@plan_app.command("winback")
def winback(
    as_of: Annotated[str, typer.Option(help="Day the campaign goes out, e.g. 2025-12-31.")],
    out: Annotated[Path, typer.Option(help="Where to write the plan (CSV).")],
    warehouse: WarehouseOption = None,
    size: Annotated[int, typer.Option(help="Products per bundle.")] = 5,
    threshold: Annotated[
        float, typer.Option(help="Repeat buyers below this probability alive are dormant.")
    ] = 0.3,
    idle_days: Annotated[
        float, typer.Option(help="One-time buyers idle this many days are dormant.")
    ] = 180.0,
    uplift_model: Annotated[
        Path | None,
        typer.Option(help="A saved uplift model with offer@channel treatments "
                     "(default: pct10 by email for everyone)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Win back dormant customers: a bundle each, with channel and offer.

    Dormant: BG/NBD probability alive below --threshold, or one order and idle
    --idle-days. The bundle comes from the categories of the customer's history and the
    season; channel and offer from --uplift-model where given. One row per customer in --out.

    Example: marketloop plan winback --as-of 2025-12-31 --out winback.csv
    """
    output_file(out)
    from datetime import datetime

    try:  # checked before the heavy imports, so a typo fails fast
        datetime.fromisoformat(as_of)
    except ValueError:
        raise ConfigError(describe("--as-of", "a date such as 2025-12-31", repr(as_of))) from None
    import math

    if not (math.isfinite(idle_days) and idle_days >= 0):
        raise ConfigError(describe("--idle-days", "a number of days, 0 or more", repr(idle_days)))
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(describe("--threshold", "a probability in [0, 1]", repr(threshold)))
    if size < 1:
        raise ConfigError(describe("--size", "at least 1 product per bundle", repr(size)))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import pandas as pd

    from marketloop.data.warehouse import connect
    from marketloop.strategy.recommend import load_interactions
    from marketloop.strategy.winback import plan_winback

    day = pd.Timestamp(as_of)
    con = connect(warehouse_url(warehouse), must_exist=True)
    tables = set(con.list_tables())
    missing = [t for t in ("customers", "products", "orders", "order_lines") if t not in tables]
    if missing:
        raise SchemaError(describe("warehouse", "tables customers, products, orders, order_lines",
                                   f"{', '.join(missing)} missing",
                                   "Load the shop's data with `marketloop ingest` first."))
    orders = con.table("orders")
    paid = orders.filter((orders.status == "paid") & orders.customer_id.notnull()).select(
        "customer_id", "ordered_at", "amount").to_pandas()
    paid["amount"] = paid["amount"].astype(float)
    _check_day(day, pd.to_datetime(paid["ordered_at"]))
    products = con.table("products").select("product_id", "category").to_pandas()
    customers = con.table("customers").to_pandas()
    interactions = load_interactions(con, as_of=day)
    model = None
    if uplift_model is not None:
        from marketloop.strategy.uplift import load_model

        model = load_model(uplift_model)
    plan = plan_winback(paid, interactions, products, customers, as_of=day, size=size,
                        threshold=threshold, idle_days=idle_days, uplift_model=model)
    plan.to_csv(out, index=False)
    summary = {"as_of": str(day.date()), "dormant": len(plan), "out": str(out),
               "why": plan["why"].value_counts().to_dict(),
               "channels": plan["channel"].value_counts().to_dict(),
               "offers": plan["offer"].value_counts().to_dict()}
    if as_json:
        console.print(json.dumps(summary), markup=False, soft_wrap=True)
    else:
        console.print(f"{len(plan):,} dormant customers planned as of {day:%Y-%m-%d}; "
                      f"written to {out}", markup=False)


def _check_day(day: pd.Timestamp, ordered: pd.Series) -> None:
    """--as-of within the paid orders' days: the models see the history before it."""
    import pandas as pd

    if ordered.empty:
        raise SchemaError(describe("warehouse orders", "paid orders with a customer", "none",
                                   "Load the shop's data with `marketloop ingest` first."))
    first = ordered.min().tz_localize(None).floor("D") + pd.Timedelta(days=1)
    last = ordered.max().tz_localize(None).floor("D") + pd.Timedelta(days=1)
    if not first < day <= last:
        raise ConfigError(describe("--as-of", f"a day after the first paid order's and at most "
                                   f"a day after the last's ({first.date()} to {last.date()})",
                                   str(day.date()) if day == day.floor("D") else str(day)))
