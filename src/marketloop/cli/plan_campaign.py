"""CLI command ``marketloop plan campaign``: who gets which offer, within a budget."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from marketloop.cli._app import console, err_console
from marketloop.cli._files import output_file, read_frame
from marketloop.cli.plan import plan_app
from marketloop.exceptions import ConfigError, describe

if TYPE_CHECKING:
    import pandas as pd

    from marketloop.strategy.allocate import Allocation


@plan_app.command("campaign")
def campaign(
    offers: Annotated[Path, typer.Option(help="Offers file (TOML): margin, offers, limits.")],
    budget: Annotated[str, typer.Option(help="Most expected spend, in the shop's currency.")],
    out: Annotated[Path, typer.Option(help="Where to write the plan (CSV).")],
    scores: Annotated[
        Path | None,
        typer.Option(help="Per-customer scores: customer_id, uplift_<offer>, p_control or "
                     "p_treated_<offer>, optional order_value and segment (CSV, .gz, Parquet)."),
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="A saved uplift model (marketloop.strategy.uplift).")
    ] = None,
    customers: Annotated[
        Path | None,
        typer.Option(help="With --model: customer_id, the model's features, optional "
                     "p_control, order_value, segment (CSV, .gz, Parquet)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the totals as JSON.")] = False,
) -> None:
    """Choose for each customer the offer, or nothing, of most expected incremental profit.

    Expected incremental profit = uplift x margin x order value - contact cost - P(convert |
    treated) x redemption cost (docs/uplift.md §3). The budget bounds the expected spend
    (contacts and redemptions); it is never exceeded. Scores come from --scores, or from
    --model applied to --customers. The plan (customer_id, offer, expected_incremental_profit,
    expected_cost, reason) is written atomically to --out.

    Example: marketloop plan campaign --offers offers.toml --budget 5000 --scores scores.csv
    --out plan.csv
    """
    from marketloop.strategy.allocate import (
        check_plan_name,
        finite_positive,
        load_offers,
        plan_campaign,
    )

    output_file(out)
    check_plan_name(out)
    amount = finite_positive(_amount(budget), where="--budget")
    book = load_offers(offers)
    frame = _scores(scores, model, customers, book)
    result = plan_campaign(frame, book, budget=amount)
    result.to_csv(out)
    totals = _totals(result, book.currency, out)
    if as_json:
        console.print(json.dumps(totals), markup=False, soft_wrap=True)
    else:
        _table(result, totals)
    if result.profit <= 0:
        err_console.print(f"WARNING: {_why_nothing(result, book.currency)}", markup=False,
                          soft_wrap=True)


def _why_nothing(result: Allocation, currency: str) -> str:
    """Why a plan sends nothing: no offer pays, or paying offers do not fit the limits."""
    reasons = result.plan["reason"].astype(str)
    budget = int(reasons.str.startswith("budget exhausted").sum())
    limited = int(reasons.str.startswith("segment limit").sum())
    if not budget and not limited:
        return "no offer is expected to pay for any customer; the plan sends nothing."
    money = f"the budget of {result.budget:,.2f} {currency}"
    why = (f"none fits {money}" if not limited else "none fits the segment limits"
           if not budget else f"none fits ({budget:,} for {money}, {limited:,} for a "
           "segment limit)")
    return (f"the plan sends nothing: {budget + limited:,} customers have an offer expected "
            f"to pay, but {why}. The plan's reasons name each customer's best offer and its "
            "cost; raise --budget or the limits.")


def _amount(text: str) -> object:
    """The budget as given: a number if it parses, else the text (refused with its value)."""
    try:
        return float(text)
    except ValueError:
        return text


def _scores(scores: Path | None, model: Path | None, customers: Path | None,
            book: object) -> pd.DataFrame:
    """The scores frame from --scores, or from --model on --customers."""
    if scores is not None:
        if model is not None or customers is not None:
            raise ConfigError(describe("plan campaign", "either --scores or --model with "
                                       "--customers", "both"))
        return read_frame(scores)
    if model is None or customers is None:
        raise ConfigError(describe("plan campaign", "--scores FILE, or --model MODEL with "
                                   "--customers FILE", "neither" if model is customers
                                   else "only one of --model and --customers"))
    from marketloop.strategy.allocate import scores_from_model
    from marketloop.strategy.uplift import load_model

    fitted = load_model(model)
    frame = _typed(read_frame(customers))
    return scores_from_model(fitted, frame, book)  # type: ignore[arg-type]


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns that are all numbers (blanks allowed) become floats; ids and labels stay text."""
    import pandas as pd

    out = frame.copy()
    for col in out.columns:
        if col in ("customer_id", "segment"):
            continue
        text = out[col].astype("string").str.strip()
        values = pd.to_numeric(text.replace("", pd.NA), errors="coerce")
        if (values.notna() | text.fillna("").eq("")).all():
            out[col] = values.astype("float64")
    return out


def _totals(result: Allocation, currency: str, out: Path) -> dict[str, object]:
    summary = result.summary()
    return {
        "customers": int(len(result.plan)),
        "targeted": int(result.plan["offer"].notna().sum()),
        "budget": result.budget,
        "expected_spend": round(result.spend, 4),
        "expected_incremental_profit": round(result.profit, 4),
        "upper_bound": None if result.upper_bound is None else round(result.upper_bound, 4),
        "currency": currency,
        "offers": {
            str(name): {"customers": int(row.customers),
                        "expected_cost": round(float(row.expected_cost), 4),
                        "expected_incremental_profit":
                            round(float(row.expected_incremental_profit), 4)}
            for name, row in summary.iterrows()
        },
        "out": str(out),
    }


def _table(result: Allocation, totals: dict[str, object]) -> None:
    cur = totals["currency"]
    table = Table(title=f"campaign plan: budget {result.budget:,.2f} {cur}")
    for column in ("offer", "customers", "expected cost", "expected incremental profit"):
        table.add_column(column, justify="left" if column == "offer" else "right")
    for name, row in result.summary().iterrows():
        table.add_row(str(name), f"{int(row.customers):,}", f"{row.expected_cost:,.2f}",
                      f"{row.expected_incremental_profit:+,.2f}")
    console.print(table)
    gap = result.gap
    bound = "" if gap is None else f"; within {gap:.2%} of the best possible plan (LP bound)"
    console.print(
        f"{totals['targeted']:,} of {totals['customers']:,} customers get an offer: expected "
        f"spend {result.spend:,.2f} {cur}, expected incremental profit {result.profit:+,.2f} "
        f"{cur}{bound}. Plan written to {totals['out']}.", markup=False, soft_wrap=True)
