"""Labels for churn and next-purchase models, read only from the window after the cut-off.

Features come from :func:`marketloop.data.profiles.build_profiles`, which reads rows strictly
before ``as_of``; the labels here read only paid orders in ``[as_of, as_of + horizon)``. The
two never share a row, so a model fitted on them cannot see its own answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta

import ibis.expr.types as ir
import numpy as np
import pandas as pd

from marketloop._validation import check_frame
from marketloop.data.profiles import parse_as_of
from marketloop.exceptions import ConfigError, describe

__all__ = ["alive_at_horizon", "churn_labels", "next_purchase_labels", "window_orders"]

ORDER_COLUMNS = ("customer_id", "ordered_at", "status")


def _window(
    as_of: datetime | date | str, horizon_days: int, where: str
) -> tuple[datetime, datetime]:
    start = parse_as_of(as_of, where=f"{where}(as_of)")
    if (isinstance(horizon_days, bool) or not isinstance(horizon_days, int | np.integer)
            or horizon_days < 1):
        raise ConfigError(describe(f"{where}(horizon_days)", "an integer number of days >= 1",
                                   repr(horizon_days)))
    return start, start + timedelta(days=int(horizon_days))


def window_orders(
    orders: pd.DataFrame | ir.Table,
    *,
    as_of: datetime | date | str,
    horizon_days: int,
    observed_until: datetime | date | str | None = None,
) -> pd.DataFrame:
    """Paid orders with ``as_of <= ordered_at < as_of + horizon_days``: the label window.

    Parameters
    ----------
    orders : pandas.DataFrame or ibis.Table
        Canonical orders (``customer_id``, ``ordered_at``, ``status``); an Ibis table is
        filtered in the backend, only the window is fetched.
    as_of : datetime, date or str
        The cut-off the features were built at.
    horizon_days : int
        Length of the label window in days.
    observed_until : datetime, date, str or None, default=None
        End of the observed data; a window that runs past it raises, because a customer
        with no order yet would be labelled churned for want of data.

    Returns
    -------
    pandas.DataFrame
        ``customer_id`` and ``ordered_at`` of the paid orders in the window.
    """
    start, end = _window(as_of, horizon_days, "window_orders")
    if observed_until is not None and parse_as_of(observed_until) < end:
        raise ConfigError(
            describe(
                "window_orders(observed_until)",
                f"data observed until at least {end:%Y-%m-%d} (as_of + horizon_days)",
                f"{parse_as_of(observed_until):%Y-%m-%d}",
                "Choose an earlier as_of or a shorter horizon.",
            )
        )
    if isinstance(orders, ir.Table):
        check_frame(pd.DataFrame(columns=list(orders.columns)), required=ORDER_COLUMNS,
                    where="window_orders(orders)")
        t = orders.ordered_at
        orders = (
            orders.filter((orders.status == "paid") & (t >= start) & (t < end))
            .select("customer_id", "ordered_at")
            .to_pandas()
        )
        return orders
    check_frame(orders, required=ORDER_COLUMNS, where="window_orders(orders)")
    t = pd.to_datetime(orders["ordered_at"])
    keep = (orders["status"] == "paid") & (t >= start) & (t < end)
    return pd.DataFrame({"customer_id": orders.loc[keep, "customer_id"], "ordered_at": t[keep]})


def _population(customers: Iterable[str] | pd.Index) -> pd.Index:
    index = pd.Index(customers, name="customer_id")
    if index.has_duplicates:
        dup = index[index.duplicated()][0]
        raise ConfigError(describe("labels(customers)", "distinct customer ids", f"{dup!r} twice"))
    return index


def churn_labels(
    orders: pd.DataFrame | ir.Table,
    customers: Iterable[str] | pd.Index,
    *,
    as_of: datetime | date | str,
    horizon_days: int = 90,
    observed_until: datetime | date | str | None = None,
) -> pd.Series:
    """1 if the customer places no paid order in ``[as_of, as_of + horizon_days)``, else 0.

    Parameters
    ----------
    orders : pandas.DataFrame or ibis.Table
        Canonical orders; only paid orders inside the window are read.
    customers : iterable of str
        The population to label, usually the index of the profiles built at ``as_of``.
    as_of, horizon_days, observed_until
        As for :func:`window_orders`.

    Returns
    -------
    pandas.Series
        ``churned`` (int 0/1), indexed by ``customer_id`` in the order of ``customers``.

    Examples
    --------
    >>> orders = pd.DataFrame({"customer_id": ["a", "b", "b"], "status": "paid",
    ...     "ordered_at": pd.to_datetime(["2025-01-05", "2025-02-10", "2025-05-01"])})
    >>> churn_labels(orders, ["a", "b"], as_of="2025-02-01", horizon_days=30).tolist()
    [1, 0]
    """
    index = _population(customers)
    bought = window_orders(orders, as_of=as_of, horizon_days=horizon_days,
                           observed_until=observed_until)["customer_id"].unique()
    return pd.Series((~index.isin(bought)).astype("int64"), index=index, name="churned")


def next_purchase_labels(
    orders: pd.DataFrame | ir.Table,
    customers: Iterable[str] | pd.Index,
    *,
    as_of: datetime | date | str,
    horizon_days: int = 30,
    observed_until: datetime | date | str | None = None,
) -> pd.DataFrame:
    """Whether and when each customer next buys within ``horizon_days`` after ``as_of``.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id``: ``purchased`` (int 0/1) and ``days_to_next`` (float days
        from ``as_of`` to the first paid order in the window; NaN when there is none, i.e.
        censored at ``horizon_days``).
    """
    index = _population(customers)
    start = parse_as_of(as_of)
    window = window_orders(orders, as_of=as_of, horizon_days=horizon_days,
                           observed_until=observed_until)
    first = window.groupby("customer_id")["ordered_at"].min()
    days = (pd.to_datetime(first) - start).dt.total_seconds() / 86_400.0
    days = days.reindex(index)
    return pd.DataFrame(
        {"purchased": days.notna().astype("int64").to_numpy(), "days_to_next": days.to_numpy()},
        index=index,
    )


def alive_at_horizon(
    truth_customers: pd.DataFrame,
    customers: Iterable[str] | pd.Index,
    *,
    as_of: datetime | date | str,
    horizon_days: int = 90,
) -> pd.Series:
    """The simulator's truth: 1 if the customer is still alive at ``as_of + horizon_days``.

    In the simulator (docs/simulator.md) a customer drops out at the purchase recorded in
    ``truth.customers.dropout_at`` and is alive until then; a null ``dropout_at`` means alive
    at the end of the simulated period. The horizon must lie within that period.
    """
    check_frame(truth_customers, required=["dropout_at"], where="alive_at_horizon(truth)")
    index = _population(customers)
    _, end = _window(as_of, horizon_days, "alive_at_horizon")
    dropout = pd.to_datetime(truth_customers["dropout_at"]).reindex(index)
    alive = dropout.isna() | (dropout >= end)
    return pd.Series(alive.astype("int64").to_numpy(), index=index, name="alive")
