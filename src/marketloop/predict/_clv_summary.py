"""From a transaction log to the per-customer (frequency, recency, T) summary of the papers."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from marketloop._validation import check_frame
from marketloop.exceptions import ConfigError, SchemaError, describe

#: Days per time unit of the summary.
UNIT_DAYS = {"W": 7.0, "D": 1.0}


def _show(value: object) -> str:
    """repr of a cell without numpy's type wrapper (``-7.5``, not ``np.float64(-7.5)``)."""
    item = getattr(value, "item", None)
    return repr(item() if callable(item) else value)


def _parse_dates(values: pd.Series, *, column: str, date_format: str | None) -> pd.Series:
    """Calendar days (tz-naive, midnight) of ``values``; any unparseable value is an error."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    else:
        text = values.astype("string").str.strip()
        # utc=True: a time with an offset and one without parse to the same dtype (a naive
        # time is read as UTC), so the retry below can be assigned into the first pass
        parsed = pd.to_datetime(text, format=date_format or "ISO8601", errors="coerce",
                                utc=True)
        retry = parsed.isna() & text.notna()
        if date_format is None and retry.any():  # not ISO 8601: let pandas guess per value
            parsed[retry] = pd.to_datetime(text[retry], format="mixed", errors="coerce",
                                           utc=True)
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        expected = f"dates in format {date_format!r}" if date_format else "parseable dates"
        raise SchemaError(
            describe(
                f"transactions column {column!r}",
                expected,
                f"{int(bad.sum()):,} unparseable value(s), "
                f"first {_show(values.iloc[i])} (row {i + 1})",
                "Pass the format, e.g. --date-format %Y%m%d for 19970101.",
            )
        )
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.dt.floor("D")


def _parse_amounts(values: pd.Series, *, column: str) -> pd.Series:
    amounts = pd.to_numeric(values, errors="coerce")
    bad = amounts.isna().to_numpy() | ~np.isfinite(amounts.to_numpy(dtype=float, na_value=np.nan))
    negative = amounts.to_numpy(dtype=float, na_value=0.0) < 0
    for mask, expected, what in ((bad, "numbers", "non-numeric"), (negative, "amounts >= 0",
                                                                    "negative")):
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            raise SchemaError(
                describe(
                    f"transactions column {column!r}",
                    expected,
                    f"{int(mask.sum()):,} {what} value(s), "
                    f"first {_show(values.iloc[i])} (row {i + 1})",
                    "Drop refunds and cancelled orders before fitting.",
                )
            )
    return amounts.astype(float)


def _as_day(value: str | pd.Timestamp, *, name: str) -> pd.Timestamp:
    try:
        day = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise ConfigError(describe(name, "a date like 1997-09-30", repr(value))) from None
    if pd.isna(day):
        raise ConfigError(describe(name, "a date like 1997-09-30", repr(value)))
    if day.tzinfo is not None:
        day = day.tz_convert("UTC").tz_localize(None)
    return day.floor("D")


def summary_from_transactions(
    transactions: pd.DataFrame,
    *,
    customer_col: str = "customer_id",
    date_col: str = "ordered_at",
    amount_col: str | None = None,
    calibration_end: str | pd.Timestamp,
    holdout_end: str | pd.Timestamp | None = None,
    date_format: str | None = None,
    freq: Literal["W", "D"] = "W",
) -> pd.DataFrame:
    """Per-customer repeat-purchase summary of a calibration period, and its holdout.

    Purchases on the same calendar day are merged into one transaction (amounts summed),
    as Fader, Hardie & Lee (2005) do for CDNow. The calibration period runs from each
    customer's first purchase to ``calibration_end`` (that day included); customers whose
    first purchase is later are left out.

    Parameters
    ----------
    transactions : pandas.DataFrame
        One row per purchase.
    customer_col, date_col : str, default="customer_id", "ordered_at"
        Columns holding the customer and the purchase date (datetime, or text/integers
        parsed with ``date_format``).
    amount_col : str or None, default=None
        Column of purchase values; adds ``monetary_value``.
    calibration_end : str or pandas.Timestamp
        Last day of the calibration period; must lie within the data's date range.
    holdout_end : str, pandas.Timestamp or None, default=None
        Last day of the holdout period (after ``calibration_end``, at most the last date in
        the data); adds ``frequency_holdout`` and ``duration_holdout``.
    date_format : str or None, default=None
        ``strptime`` format of ``date_col`` when it is text, e.g. ``"%Y%m%d"``.
    freq : {"W", "D"}, default="W"
        Time unit of ``recency``, ``T`` and ``duration_holdout``: weeks (the papers') or days.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id``: ``frequency`` (repeat purchases), ``recency`` (time from
        first to last purchase), ``T`` (time from first purchase to ``calibration_end``),
        ``monetary_value`` (mean value of the repeat purchases, 0 without any),
        ``frequency_holdout`` and ``duration_holdout``.

    Raises
    ------
    SchemaError
        A column is missing, a date does not parse, or an amount is not a number >= 0.
    ConfigError
        ``calibration_end`` or ``holdout_end`` is not a date or is outside the data range.

    Examples
    --------
    >>> tx = pd.DataFrame({"customer_id": ["a", "a", "a", "b"],
    ...                    "ordered_at": ["2024-01-01", "2024-01-08", "2024-01-15", "2024-01-08"]})
    >>> summary = summary_from_transactions(tx, calibration_end="2024-01-15")
    >>> summary["frequency"].to_dict(), summary["recency"].to_dict(), summary["T"].to_dict()
    ({'a': 2, 'b': 0}, {'a': 2.0, 'b': 0.0}, {'a': 2.0, 'b': 1.0})
    """
    where = "summary_from_transactions"
    required = [customer_col, date_col] + ([amount_col] if amount_col else [])
    check_frame(transactions, required=required, where=where)
    if freq not in UNIT_DAYS:
        raise ConfigError(describe(f"{where} freq", "'W' or 'D'", repr(freq)))
    if len(transactions) == 0:
        raise SchemaError(describe(where, "at least one transaction", "an empty table"))
    days = _parse_dates(transactions[date_col], column=date_col, date_format=date_format)
    frame = pd.DataFrame({"customer_id": transactions[customer_col].to_numpy(), "day": days})
    frame["amount"] = (
        _parse_amounts(transactions[amount_col], column=amount_col).to_numpy()
        if amount_col else 0.0
    )
    lo, hi = frame["day"].min(), frame["day"].max()
    cal_end = _check_in_data(calibration_end, "calibration_end", lo, hi)
    unit = UNIT_DAYS[freq]
    daily = frame.groupby(["customer_id", "day"], sort=True, observed=True)["amount"].sum()
    daily = daily.reset_index()
    cal = daily[daily["day"] <= cal_end]
    grouped = cal.groupby("customer_id", sort=True)
    first = grouped["day"].min()
    out = pd.DataFrame(index=first.index)
    out["frequency"] = (grouped.size() - 1).astype("int64")
    out["recency"] = (grouped["day"].max() - first).dt.days / unit
    out["T"] = (cal_end - first).dt.days / unit
    if amount_col:
        first_amount = grouped["amount"].first()  # rows are sorted by day within a customer
        repeat_total = grouped["amount"].sum() - first_amount
        x = out["frequency"].to_numpy()
        out["monetary_value"] = np.where(x > 0, repeat_total / np.maximum(x, 1), 0.0)
    if holdout_end is not None:
        end = _check_in_data(holdout_end, "holdout_end", cal_end + pd.Timedelta(days=1), hi)
        hold = daily[(daily["day"] > cal_end) & (daily["day"] <= end)]
        counts = hold.groupby("customer_id").size()
        out["frequency_holdout"] = counts.reindex(out.index, fill_value=0).astype("int64")
        out["duration_holdout"] = (end - cal_end).days / unit
    out.index.name = "customer_id"
    return out


def _check_in_data(
    value: str | pd.Timestamp, name: str, lo: pd.Timestamp, hi: pd.Timestamp
) -> pd.Timestamp:
    day = _as_day(value, name=name)
    if not lo <= day <= hi:
        raise ConfigError(
            describe(
                name,
                f"a date within the data range {lo.date()} to {hi.date()}",
                str(day.date()),
            )
        )
    return day
