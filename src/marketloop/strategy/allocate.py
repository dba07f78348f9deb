"""Budgeted offer allocation: for each customer the offer, or nothing, of best incremental profit.

The expected incremental profit of offer ``o`` for customer ``i`` counts the margin on the
extra orders *and* the discount paid on orders that would have happened anyway:

.. math::

    \\Delta\\pi_{io} = m V_i u_{io} + p_{io} (m V_i \\lambda_o - R_{io}) - c_o,
    \\qquad R_{io} = s_o V_i (1 + \\lambda_o) + a_o

with ``m`` the margin rate, ``V_i`` the customer's expected order value without the offer,
``u_io`` the uplift in conversion probability, ``p_io`` the conversion probability when
treated, ``λ_o`` the offer's order-value lift, ``R_io`` its cost per redemption (share
``s_o`` of the treated order value plus amount ``a_o``) and ``c_o`` the cost of a contact.
Its expected cost against the budget is ``c_o + p_io R_io``. With ``λ = 0`` the profit is
``uplift × margin × order value − contact cost − P(convert | treated) × redemption cost``.

:func:`allocate` solves the multiple-choice knapsack (at most one offer per customer, total
expected cost within the budget and optional per-segment limits) greedily over each
customer's convex hull of options; :func:`plan_campaign` does both steps from a scores
frame and an offers file. See docs/uplift.md §3.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from marketloop.exceptions import ConfigError, MarketloopWarning, SchemaError, describe
from marketloop.strategy import _mckp
from marketloop.strategy._offers import (
    Offer,
    OfferBook,
    SegmentLimit,
    finite_positive,
    load_offers,
    parse_offers,
)
from marketloop.strategy._plan_reasons import reasons

#: Columns of the plan file, in order.
PLAN_COLUMNS = ("customer_id", "offer", "expected_incremental_profit", "expected_cost",
                "reason")


class UpliftModel(Protocol):
    """What :func:`scores_from_model` needs: effects vs control, one column per treatment."""

    def predict(self, X: pd.DataFrame) -> pd.DataFrame: ...


@dataclass(frozen=True)
class OfferValues:
    """Expected incremental profit and expected cost of every offer for every customer.

    Attributes
    ----------
    profit, cost : pandas.DataFrame
        Indexed by ``customer_id``, one column per offer; NaN profit: not eligible.
    segment : pandas.Series or None
        Each customer's segment, when the scores gave one.
    """

    profit: pd.DataFrame
    cost: pd.DataFrame
    segment: pd.Series | None = None


@dataclass(frozen=True)
class Allocation:
    """A campaign plan and its totals.

    Attributes
    ----------
    plan : pandas.DataFrame
        Indexed by ``customer_id``: ``offer`` (``<NA>`` for none),
        ``expected_incremental_profit`` and ``expected_cost`` of what is sent (0 for
        none), ``rank`` (place in the priority order, 0 for customers no offer pays for)
        and ``reason``.
    budget : float
        The budget the plan respects.
    spend, profit : float
        Expected spend (never above ``budget``) and expected incremental profit.
    upper_bound : float or None
        The LP relaxation's optimum under the budget: no plan can expect more. None for
        plans not made by :func:`allocate`.
    """

    plan: pd.DataFrame
    budget: float
    spend: float
    profit: float
    upper_bound: float | None = None

    @property
    def gap(self) -> float | None:
        """Share of :attr:`upper_bound` the plan leaves (0: provably optimal)."""
        if self.upper_bound is None or self.upper_bound <= 0:
            return None
        return max(0.0, 1.0 - self.profit / self.upper_bound)

    def summary(self) -> pd.DataFrame:
        """Per offer (and none): customers, expected cost and expected incremental profit."""
        plan = self.plan.assign(offer=self.plan["offer"].fillna("(none)"))
        out = plan.groupby("offer", sort=True).agg(
            customers=("offer", "size"), expected_cost=("expected_cost", "sum"),
            expected_incremental_profit=("expected_incremental_profit", "sum"))
        return out.sort_values("customers", ascending=False)

    def to_csv(self, path: str | Path) -> Path:
        """Write the plan (``PLAN_COLUMNS``) atomically: a reader never sees half a file.

        A name ending in ``.gz`` is written gzip-compressed; other names than ``.csv`` and
        ``.csv.gz`` are refused (the plan is a CSV file).

        Raises
        ------
        ConfigError
            If the name is not a CSV's or the folder cannot be written.
        """
        path = check_plan_name(path)
        gz = path.name.lower().endswith(".gz")
        frame = self.plan.reset_index()[list(PLAN_COLUMNS)]
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
        except OSError as exc:
            raise ConfigError(describe(f"plan file {path}", "a folder that can be written",
                                       exc.strerror or str(exc))) from None
        try:
            with os.fdopen(fd, "wb") as handle:
                frame.to_csv(handle, index=False, float_format="%.4f", lineterminator="\n",
                             encoding="utf-8", compression="gzip" if gz else None)
            os.replace(tmp, path)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise ConfigError(describe(f"plan file {path}", "a file that can be written",
                                       exc.strerror or str(exc))) from None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


#: How far p_control + uplift may rise above 1 before the scores are refused.
P_SLACK = 0.05


def check_plan_name(path: str | Path) -> Path:
    """``path`` if it names a CSV file (``.csv`` or ``.csv.gz``), else a ConfigError."""
    path = Path(path)
    if not path.name.lower().endswith((".csv", ".csv.gz")):
        raise ConfigError(describe("plan file", "a name ending in .csv or .csv.gz (the plan "
                                   "is a CSV file)", path.name))
    return path


def offer_values(scores: pd.DataFrame, offers: OfferBook) -> OfferValues:
    """Expected incremental profit and cost of each offer per customer (module formula).

    Parameters
    ----------
    scores : pandas.DataFrame
        One row per customer, indexed by ``customer_id`` (or with that column), with
        ``uplift_<offer>`` for every offer (NaN: no estimate, the offer is not considered)
        and either ``p_treated_<offer>`` or ``p_control`` (then ``p_treated = p_control +
        uplift``); optional ``order_value`` (else ``offers.order_value``) and ``segment``.
    offers : OfferBook
        The offers, their cost model and the margin (see :func:`load_offers`).

    Returns
    -------
    OfferValues

    Raises
    ------
    SchemaError
        If a column is missing, or a probability or order value is out of range.

    Examples
    --------
    >>> book = parse_offers({"margin": 0.4, "offers": [
    ...     {"name": "pct10", "type": "pct", "depth": 0.1, "contact_cost": 0.01}]})
    >>> scores = pd.DataFrame({"customer_id": ["a"], "uplift_pct10": [0.05],
    ...                        "p_treated_pct10": [0.25], "order_value": [60.0]})
    >>> v = offer_values(scores, book)
    >>> round(float(v.profit.loc["a", "pct10"]), 4), round(float(v.cost.loc["a", "pct10"]), 4)
    (-0.31, 1.51)
    """
    frame = _indexed(scores, where="scores")
    value = _order_value(frame, offers)
    profit, cost = {}, {}
    for offer in offers.offers:
        u = _column(frame, f"uplift_{offer.name}", low=-1.0, high=1.0)
        p1 = _p_treated(frame, offer, u)
        v1 = value * (1.0 + offer.value_lift)
        redeem = offer.share * v1 + offer.amount
        gain = offers.margin * value * u + p1 * (offers.margin * value * offer.value_lift - redeem)
        profit[offer.name] = gain - offer.contact_cost
        cost[offer.name] = offer.contact_cost + p1.fillna(0.0) * redeem
    segment = frame["segment"].astype("string") if "segment" in frame.columns else None
    profit_frame = pd.DataFrame(profit, index=frame.index)
    if segment is not None:
        for offer in offers.offers:
            if offer.segments is not None:
                eligible = segment.isin(offer.segments).to_numpy(dtype=bool)
                profit_frame.loc[~eligible, offer.name] = np.nan
    elif any(o.segments is not None for o in offers.offers):
        limited = [o.name for o in offers.offers if o.segments is not None]
        raise SchemaError(describe("scores", "a 'segment' column",
                                   "none", f"Offers {limited} are limited to segments."))
    return OfferValues(profit_frame, pd.DataFrame(cost, index=frame.index), segment)


def allocate(
    profit: pd.DataFrame,
    cost: pd.DataFrame,
    *,
    budget: float,
    segment: pd.Series | None = None,
    limits: Iterable[SegmentLimit] = (),
) -> Allocation:
    """Choose for each customer at most one offer: most expected profit within the budget.

    Greedy over each customer's convex hull of (cost, profit), by profit per budget unit;
    options with non-positive profit are never sent. O(S log S) in the S hull steps (at
    most customers × offers). The plan never spends more than ``budget``; its
    ``upper_bound`` (the LP optimum) bounds the best possible plan, so
    ``Allocation.gap`` certifies how close it is.

    Parameters
    ----------
    profit, cost : pandas.DataFrame
        Indexed by ``customer_id``, one column per offer: expected incremental profit (NaN:
        not eligible) and expected cost (>= 0) against the budget.
    budget : float
        Most expected spend, > 0.
    segment : pandas.Series or None, default=None
        Each customer's segment (needed for ``limits``).
    limits : iterable of SegmentLimit, default=()
        Most customers (``max_count``) and expected spend (``max_spend``) per segment.

    Returns
    -------
    Allocation

    Raises
    ------
    ConfigError
        If ``budget`` is not a positive amount.
    SchemaError
        If the frames disagree, a cost is negative or a limit lacks segments.

    Examples
    --------
    >>> profit = pd.DataFrame({"a": [3.0, 1.0, -1.0], "b": [4.0, 2.0, 0.5]},
    ...                       index=pd.Index(["c1", "c2", "c3"], name="customer_id"))
    >>> cost = pd.DataFrame({"a": [1.0, 1.0, 1.0], "b": [3.0, 1.0, 1.0]}, index=profit.index)
    >>> result = allocate(profit, cost, budget=2.0)
    >>> result.plan["offer"].tolist(), result.spend, result.profit
    (['a', 'b', <NA>], 2.0, 5.0)
    """
    budget = finite_positive(budget, where="budget")
    p, c = _aligned(profit, cost)
    group, max_count, max_spend, names = _limits(profit.index, segment, limits)
    sol = _mckp.solve(p, c, budget, group=group, max_count=max_count, max_spend=max_spend)
    offers = np.asarray(profit.columns, dtype=object)
    taken = sol.choice >= 0
    idx = np.where(taken, sol.choice, 0)
    rows = np.arange(len(p))
    chosen = pd.array(np.where(taken, offers[idx], None), dtype="string")
    plan = pd.DataFrame({
        "offer": chosen,
        "expected_incremental_profit": np.where(taken, p[rows, idx], 0.0),
        "expected_cost": np.where(taken, c[rows, idx], 0.0),
        "rank": np.where(taken, sol.rank, 0),
    }, index=profit.index)
    plan["reason"] = reasons(sol, p, c, offers, group, names, max_count, max_spend)
    return Allocation(plan, budget, sol.spend, sol.profit, sol.upper_bound)


def plan_campaign(scores: pd.DataFrame, offers: OfferBook, *, budget: float) -> Allocation:
    """Values of every offer from ``scores`` (:func:`offer_values`), then :func:`allocate`.

    The offers' segment eligibility and ``offers.limits`` apply.

    Examples
    --------
    >>> book = parse_offers({"margin": 0.4, "order_value": 50.0, "offers": [
    ...     {"name": "mail", "type": "message", "contact_cost": 0.1}]})
    >>> scores = pd.DataFrame({"uplift_mail": [0.02, 0.10, 0.0], "p_control": 0.1},
    ...                       index=pd.Index(["a", "b", "c"], name="customer_id"))
    >>> plan_campaign(scores, book, budget=0.15).plan["offer"].tolist()
    [<NA>, 'mail', <NA>]
    """
    values = offer_values(scores, offers)
    if offers.limits and values.segment is None:
        raise SchemaError(describe("scores", "a 'segment' column", "none",
                                   "The offers file sets per-segment limits."))
    return allocate(values.profit, values.cost, budget=budget, segment=values.segment,
                    limits=offers.limits)


def scores_from_model(model: UpliftModel, customers: pd.DataFrame,
                      offers: OfferBook) -> pd.DataFrame:
    """A scores frame from a fitted uplift model's effects (see :func:`offer_values`).

    ``model.predict(customers)`` gives one column per treatment label (the effect vs
    control, e.g. :class:`marketloop.strategy.uplift.TLearner`); each offer takes the column
    of its ``treatment`` label (default its name). ``customers`` carries the model's
    features and ``p_control`` (the conversion probability without contact, e.g. from a
    response model) unless it has ``p_treated_<offer>`` columns; without either, a binary
    model with ``control_outcome`` (a :class:`~marketloop.strategy.uplift.TLearner`) gives
    ``p_control`` from its control arm. ``order_value`` and ``segment`` pass through.

    Raises
    ------
    SchemaError
        If the model has no effect for an offer's label, or the customers lack an id.
    """
    frame = _indexed(customers, where="customers")
    passthrough = [c for c in frame.columns
                   if c in ("p_control", "order_value", "segment") or c.startswith("p_treated_")]
    effects = model.predict(frame)
    labels = [str(c) for c in effects.columns]
    missing = [o.label for o in offers.offers if o.label not in labels]
    if missing:
        raise SchemaError(describe("uplift model predictions", "a column per offer label",
                                   f"{labels} ({missing} missing)",
                                   "Set each offer's 'treatment' to the model's label."))
    out = frame[passthrough].copy()
    has_p = "p_control" in out.columns or any(c.startswith("p_treated_") for c in out.columns)
    if not has_p and getattr(model, "outcome_", None) == "binary" and hasattr(
            model, "control_outcome"):
        out["p_control"] = np.asarray(model.control_outcome(frame), dtype=np.float64)
    effects = effects.set_axis(labels, axis=1)
    for o in offers.offers:
        out[f"uplift_{o.name}"] = np.asarray(effects[o.label], dtype=np.float64)
    return out


def _indexed(frame: pd.DataFrame, *, where: str) -> pd.DataFrame:
    """``frame`` indexed by unique, non-missing ``customer_id``."""
    if not isinstance(frame, pd.DataFrame):
        raise SchemaError(describe(where, "a pandas DataFrame", type(frame).__name__))
    if "customer_id" in frame.columns:
        frame = frame.set_index("customer_id")
    elif frame.index.name != "customer_id":
        raise SchemaError(describe(where, "a customer_id column or index",
                                   ", ".join(map(str, frame.columns)) or "no columns"))
    if frame.empty:
        raise SchemaError(describe(where, "at least one customer row", "only a header",
                                   "Give the file its customers' rows."))
    ids = frame.index
    blank = ids.isna() | pd.Series(ids, dtype="string").str.strip().eq("").fillna(True).to_numpy()
    if blank.any():
        raise SchemaError(describe(f"{where} customer_id", "an id on every row",
                                   f"{int(blank.sum())} rows without one (missing or blank)"))
    if ids.has_duplicates:
        dup = ids[ids.duplicated()].unique()[:3].tolist()
        raise SchemaError(describe(f"{where} customer_id", "one row per customer",
                                   f"duplicates, e.g. {dup}"))
    return frame


def _column(frame: pd.DataFrame, name: str, *, low: float, high: float) -> pd.Series:
    """A numeric column within [low, high] (NaN allowed), else :class:`SchemaError`."""
    if name not in frame.columns:
        raise SchemaError(describe("scores", f"a column {name!r}",
                                   f"{', '.join(map(str, frame.columns))} ({name} missing)"))
    raw = frame[name]
    values = pd.to_numeric(raw, errors="coerce").astype(np.float64)
    bad = values.notna() & ~values.between(low, high)
    empty = values.isna() & raw.notna()
    if empty.any():  # text that is not a number (a blank means: no estimate)
        bad |= empty & (raw.astype("string").str.strip() != "")
    if bad.any():
        first = frame.index[bad.to_numpy()][0]
        raise SchemaError(describe(f"scores column {name}", f"numbers in [{low}, {high}]",
                                   f"{frame[name][first]!r} for customer {first} "
                                   f"({int(bad.sum())} such rows)"))
    return values


def _p_treated(frame: pd.DataFrame, offer: Offer, uplift: pd.Series) -> pd.Series:
    """P(convert | treated) from ``p_treated_<offer>``, else ``p_control`` + uplift."""
    name = f"p_treated_{offer.name}"
    if name in frame.columns:
        return _column(frame, name, low=0.0, high=1.0)
    if "p_control" in frame.columns:
        p1 = _column(frame, "p_control", low=0.0, high=1.0) + uplift
        # below 0: the model expects the offer to hurt (clipped, as are small overshoots);
        # well above 1, the two columns are not on one scale (an uplift in percent)
        off = p1[p1 > 1 + P_SLACK]
        if len(off):
            raise SchemaError(describe(
                f"scores p_control + uplift_{offer.name}", f"a probability of at most 1 (within "
                f"{P_SLACK}) for every customer", f"{len(off):,} outside it, e.g. {off.index[0]}: "
                f"{float(off.iloc[0]):.4g}", "Check that the uplift and p_control columns are "
                "on the same scale (probabilities, not percentages)."))
        return p1.clip(0.0, 1.0)
    raise SchemaError(describe(
        "scores", f"a column {name!r} or 'p_control'", "neither",
        "The discount is paid on every redeemed order, so its cost needs P(convert | treated)."))


def _order_value(frame: pd.DataFrame, offers: OfferBook) -> pd.Series:
    """Each customer's expected order value: the ``order_value`` column, else the default."""
    if "order_value" in frame.columns:
        value = _column(frame, "order_value", low=0.0, high=np.inf)
        if offers.order_value is not None:
            return value.fillna(offers.order_value)
        if value.isna().any():
            raise SchemaError(describe("scores column order_value", "a value on every row",
                                       f"{int(value.isna().sum())} empty",
                                       "Set order_value in the offers file as the default."))
        return value
    if offers.order_value is None:
        raise SchemaError(describe("scores", "an 'order_value' column", "none",
                                   "Or set order_value = AMOUNT in the offers file."))
    return pd.Series(offers.order_value, index=frame.index, dtype=np.float64)


def _aligned(profit: pd.DataFrame, cost: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The two frames as float arrays, checked to share index and columns; costs >= 0."""
    if not (isinstance(profit, pd.DataFrame) and isinstance(cost, pd.DataFrame)):
        raise SchemaError(describe("allocate", "profit and cost DataFrames",
                                   f"{type(profit).__name__} and {type(cost).__name__}"))
    if not (profit.index.equals(cost.index) and list(profit.columns) == list(cost.columns)):
        raise SchemaError(describe("allocate cost", "the index and columns of profit",
                                   f"columns {list(cost.columns)} vs {list(profit.columns)}"))
    if profit.index.has_duplicates:
        raise SchemaError(describe("allocate profit index", "one row per customer",
                                   "duplicated customer ids"))
    p = profit.to_numpy(dtype=np.float64, na_value=np.nan)
    c = cost.to_numpy(dtype=np.float64, na_value=np.nan)
    usable = np.isfinite(p)
    bad = usable & ~(np.isfinite(c) & (c >= 0))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise SchemaError(describe("allocate cost", "finite costs >= 0",
                                   f"{c[i, j]!r} for {profit.index[i]!r}, {profit.columns[j]!r}"))
    return p, np.where(usable, c, 0.0)


def _limits(index: pd.Index, segment: pd.Series | None, limits: Iterable[SegmentLimit]
            ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, list[str]]:
    """Group codes of the limited segments (-1 for others) and their limits."""
    limits = list(limits.values()) if isinstance(limits, Mapping) else list(limits)
    if not limits:
        return None, None, None, []
    if segment is None:
        raise SchemaError(describe("allocate", "a segment per customer", "none",
                                   "Per-segment limits need segment=..."))
    seg = segment.reindex(index)
    names = [lim.segment for lim in limits]
    unknown = sorted(set(names) - set(seg.dropna().astype(str)))
    if unknown:
        warnings.warn(f"segment limits for {unknown} match no customer; they change nothing.",
                      MarketloopWarning, stacklevel=3)
    seg = seg.astype("string")
    codes = pd.Categorical(seg.where(seg.isin(names)), categories=names).codes.astype(np.int64)
    max_count = np.array([np.inf if lim.max_count is None else lim.max_count for lim in limits])
    max_spend = np.array([np.inf if lim.max_spend is None else lim.max_spend for lim in limits])
    return codes, max_count, max_spend, names


__all__ = [
    "PLAN_COLUMNS",
    "Allocation",
    "Offer",
    "OfferBook",
    "OfferValues",
    "SegmentLimit",
    "UpliftModel",
    "allocate",
    "finite_positive",
    "load_offers",
    "offer_values",
    "parse_offers",
    "plan_campaign",
    "scores_from_model",
]
