"""Interactions for the recommenders: from the warehouse (Ibis), from a file, from a raw export.

An *interactions* frame has one row per (customer, product, time) purchase or other
positive event, in three columns: ``customer_id`` and ``product_id`` (strings) and ``ts``
(timestamps, tz-naive UTC). Repeats are allowed: a product bought on three orders is three
rows. Every recommender's ``fit`` takes this frame.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from pathlib import Path

import ibis
import numpy as np
import pandas as pd

from marketloop.exceptions import IngestError, SchemaError, describe

#: The columns of an interactions frame, in order.
INTERACTION_COLUMNS = ("customer_id", "product_id", "ts")


def check_interactions(frame: object, *, where: str, allow_empty: bool = False) -> pd.DataFrame:
    """``frame`` as a clean interactions frame (string ids, datetime ``ts``), or an error.

    Rows with a missing id are dropped silently (no customer, no recommendation); a missing
    or unparseable time is an error, since every split and every seasonal weight needs it.
    """
    if not isinstance(frame, pd.DataFrame):
        raise SchemaError(describe(where, "a pandas DataFrame of interactions",
                                   type(frame).__name__))
    missing = [c for c in INTERACTION_COLUMNS if c not in frame.columns]
    if missing:
        raise SchemaError(describe(
            where, f"columns {', '.join(INTERACTION_COLUMNS)}",
            f"{', '.join(map(str, frame.columns)) or 'no columns'} ({', '.join(missing)} missing)",
            "Build the frame with read_interactions or warehouse_interactions."))
    frame = frame.reset_index(drop=True)
    out = pd.DataFrame({
        "customer_id": _ids(frame["customer_id"]),
        "product_id": _ids(frame["product_id"]),
        "ts": _times(frame["ts"], where),
    })
    out = out[out.customer_id.notna() & out.product_id.notna()].reset_index(drop=True)
    if out.empty and not allow_empty:
        raise SchemaError(describe(where, "at least one interaction with a customer and a product",
                                   f"none among {len(frame)} rows",
                                   "Check the file, the columns chosen or the time window."))
    return out


def _ids(values: pd.Series) -> pd.Series:
    ids = values.astype("string").str.strip()
    ids = ids.mask(ids.eq("").fillna(False))
    return ids.astype(object).where(ids.notna(), None)


def _times(values: pd.Series, where: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        ts = values
    elif pd.api.types.is_numeric_dtype(values):  # Unix seconds, as MovieLens writes them
        ts = pd.to_datetime(values, unit="s", errors="coerce")
    else:
        ts = pd.to_datetime(values, errors="coerce", format="mixed")
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    bad = ts.isna() & values.notna() | values.isna()
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        raise SchemaError(describe(f"{where} column ts", "a date-time on every row",
                                   f"{int(bad.sum())} missing or unreadable values "
                                   f"(first at row {first}: {values.iloc[first]!r})"))
    return ts.astype("datetime64[ns]").reset_index(drop=True)


def read_interactions(path: str | Path, *, user_col: str, item_col: str,
                      time_col: str) -> pd.DataFrame:
    """Read an interactions file: CSV (plain or gzip-compressed) or Parquet; ids as strings.

    Parameters
    ----------
    path : str or pathlib.Path
        The file; ``.parquet``/``.pq`` is read as Parquet, anything else as CSV.
    user_col, item_col, time_col : str
        The columns holding the customer, the item and the time (a date-time, or Unix
        seconds when the column is numeric).

    Returns
    -------
    pandas.DataFrame
        An interactions frame (see the module docstring).

    Raises
    ------
    IngestError
        If the file is missing or is not a readable table.
    SchemaError
        If a column is missing, a time is unreadable or no row is left.
    """
    path = Path(path)
    if not path.is_file():
        raise IngestError(describe(str(path), "an existing file", "nothing at that path"))
    cols = [user_col, item_col, time_col]
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            raw = pd.read_parquet(path)
        else:
            raw = pd.read_csv(path, dtype={user_col: str, item_col: str},
                              keep_default_na=False, na_values=[""], compression="infer")
    except Exception as exc:  # pandas, pyarrow, zlib: not a readable table
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise IngestError(describe(str(path), "a CSV (plain or .gz) or Parquet file",
                                   first)) from None
    missing = [c for c in cols if c not in raw.columns]
    if missing:
        raise SchemaError(describe(
            f"{path} header", f"columns {', '.join(cols)}",
            f"{', '.join(map(str, raw.columns))} ({', '.join(missing)} missing)",
            "Name the columns with --user-col, --item-col and --time-col."))
    times = raw[time_col]
    if times.dtype == object:  # a CSV column of whole numbers read as text: Unix seconds
        numeric = pd.to_numeric(times, errors="coerce")
        times = numeric if numeric.notna().all() else times
    frame = pd.DataFrame({"customer_id": raw[user_col].astype("string"),
                          "product_id": raw[item_col].astype("string"), "ts": times})
    return check_interactions(frame, where=str(path))


def online_retail_interactions(path: str | Path) -> pd.DataFrame:
    """Purchases of the UCI Online Retail export as interactions.

    Kept: invoice lines with a ``CustomerID``, on ordinary invoices (not ``C`` credit notes
    nor ``A`` adjustments), with a positive ``Quantity``, of merchandise (postage, fees,
    discounts, manual and sample lines are dropped: they are not products one recommends).
    ``StockCode`` is upper-cased (``85123a`` and ``85123A`` are one product).

    Parameters
    ----------
    path : str or pathlib.Path
        ``online_retail.csv.gz`` (columns InvoiceNo, StockCode, Description, Quantity,
        InvoiceDate, UnitPrice, CustomerID, Country).

    Returns
    -------
    pandas.DataFrame
        An interactions frame: ``customer_id``, ``product_id`` (the stock code), ``ts``.
    """
    from marketloop.data.adapters.online_retail import SPECIAL_CODES

    raw = read_raw(path, ["InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "CustomerID"])
    code = raw["StockCode"].str.strip().str.upper()
    special = {c.upper() for c in SPECIAL_CODES} | {"BANK CHARGES"}
    keep = (raw["CustomerID"].str.strip().ne("") & raw["CustomerID"].notna()
            & raw["InvoiceNo"].str.match(r"^\d")
            & (pd.to_numeric(raw["Quantity"], errors="coerce") > 0)
            & ~code.isin(special) & ~code.str.startswith("GIFT_") & ~code.str.startswith("DCGS"))
    frame = pd.DataFrame({"customer_id": raw.loc[keep, "CustomerID"],
                          "product_id": code[keep], "ts": raw.loc[keep, "InvoiceDate"]})
    return check_interactions(frame, where=str(path))


def read_raw(path: str | Path, columns: Sequence[str]) -> pd.DataFrame:
    """The named columns of a CSV (plain or gzip) as strings, or an :class:`IngestError`."""
    path = Path(path)
    if not path.is_file():
        raise IngestError(describe(str(path), "an existing file", "nothing at that path"))
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, compression="infer")
    except Exception as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise IngestError(describe(str(path), "a CSV file", first)) from None
    missing = [c for c in columns if c not in raw.columns]
    if missing:
        raise SchemaError(describe(f"{path} header", f"columns {', '.join(columns)}",
                                   ", ".join(map(str, raw.columns))))
    return raw[list(columns)]


def warehouse_interactions(orders: ibis.Table, order_lines: ibis.Table, *,
                           as_of: datetime | str | None = None,
                           statuses: Collection[str] = ("paid",)) -> ibis.Table:
    """Purchases in the warehouse as an interactions expression (one row per order line).

    Parameters
    ----------
    orders, order_lines : ibis.Table
        The canonical tables (DESIGN.md section 3).
    as_of : datetime or str, optional
        Only orders placed strictly before it (point in time); all when omitted.
    statuses : collection of str, default=("paid",)
        Order statuses that count as purchases; cancelled and returned orders do not.

    Returns
    -------
    ibis.Table
        Columns ``customer_id``, ``product_id``, ``ts``; guest orders (no customer) and
        lines with a non-positive quantity are left out. Unordered: order it before
        materialising when the order matters.

    Examples
    --------
    >>> import ibis
    >>> from marketloop.simulate import Market
    >>> shop = Market(n_customers=300, n_days=60, random_state=0).simulate(
    ...     ("customers", "products", "orders", "order_lines"))
    >>> expr = warehouse_interactions(ibis.memtable(shop.orders), ibis.memtable(shop.order_lines))
    >>> list(expr.columns)
    ['customer_id', 'product_id', 'ts']
    """
    kept = orders.filter(orders.customer_id.notnull() & orders.status.isin(list(statuses)))
    if as_of is not None:
        kept = kept.filter(kept.ordered_at < ibis.timestamp(pd.Timestamp(as_of).to_pydatetime()))
    lines = order_lines.filter(order_lines.quantity > 0)
    joined = kept.inner_join(lines, "order_id")
    return joined.select(customer_id=joined.customer_id.cast("string"),
                         product_id=joined.product_id.cast("string"), ts=joined.ordered_at)


def load_interactions(con: object, *, as_of: datetime | str | None = None) -> pd.DataFrame:
    """Materialise :func:`warehouse_interactions` from the warehouse ``con`` (the edge)."""
    tables = set(con.list_tables())  # type: ignore[attr-defined]
    missing = [t for t in ("orders", "order_lines") if t not in tables]
    if missing:
        raise SchemaError(describe("warehouse", "tables orders and order_lines",
                                   f"{', '.join(missing)} missing",
                                   "Load the shop's data with `marketloop ingest` first."))
    expr = warehouse_interactions(con.table("orders"), con.table("order_lines"),  # type: ignore[attr-defined]
                                  as_of=as_of)
    frame = expr.order_by(["ts", "customer_id", "product_id"]).to_pandas()
    return check_interactions(frame, where="warehouse orders and order_lines")


def shop_interactions(shop: object, *, as_of: datetime | str | None = None) -> pd.DataFrame:
    """Interactions of a simulated (or any in-memory) shop's ``orders`` and ``order_lines``.

    The same expression as :func:`warehouse_interactions`, run on DuckDB over the frames.
    """
    expr = warehouse_interactions(ibis.memtable(shop.orders),  # type: ignore[attr-defined]
                                  ibis.memtable(shop.order_lines),  # type: ignore[attr-defined]
                                  as_of=as_of)
    frame = expr.order_by(["ts", "customer_id", "product_id"]).to_pandas()
    return check_interactions(frame, where="shop orders and order_lines")


def consented_customers(consents: pd.DataFrame, *, purpose: str = "personalisation",
                        channel: str | None = None) -> set[str]:
    """Customers whose latest consent for ``purpose`` (on ``channel``, or any) is granted.

    Pass the result as ``consented=`` to ``recommend``: the others get the non-personal
    best-seller list.
    """
    rows = consents[consents["purpose"] == purpose]
    if channel is not None:
        rows = rows[rows["channel"] == channel]
    latest = rows.sort_values("ts").groupby(["customer_id", "channel"]).tail(1)
    return set(latest.loc[latest["granted"].astype(bool), "customer_id"].astype(str))
