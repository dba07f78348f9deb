"""Point-in-time customer profiles: features from data strictly before a cut-off.

:func:`build_profiles` is one Ibis expression over the canonical tables, so the same build
runs on DuckDB, PostgreSQL and PySpark; nothing here executes. :func:`write_profiles`
(the edge used by ``marketloop profile``) materialises it into the versioned warehouse
table ``profiles``, keyed by ``(customer_id, as_of)``. docs/profiles.md defines every feature.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime

import ibis
import ibis.expr.types as ir
from ibis.backends import BaseBackend

from marketloop.data._profile_features import (
    Cutoff,
    category_column,
    event_block,
    ipt_std_block,
    line_block,
    order_block,
    paid_lines,
    text_block,
)
from marketloop.data._profile_store import write_profiles
from marketloop.data.schema import MAX_YEAR, MIN_YEAR
from marketloop.exceptions import ConfigError, SchemaError, describe

__all__ = [
    "PROFILE_VERSION",
    "SOURCE_TABLES",
    "build_profiles",
    "category_spend",
    "parse_as_of",
    "profile_columns",
    "write_profiles",
]

#: Version of the feature definitions; stored in every row, raised when a definition changes.
PROFILE_VERSION = 1

#: Columns each source table must have for the features that read it.
SOURCE_TABLES: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id", "first_seen"),
    "orders": ("order_id", "customer_id", "ordered_at", "status", "amount"),
    "order_lines": ("order_id", "product_id", "quantity", "unit_price", "discount"),
    "products": ("product_id", "category"),
    "events": ("customer_id", "session_id", "ts", "type", "dwell_ms"),
    "texts": ("customer_id", "ts", "kind", "body", "rating"),
}

_COUNTS = ("frequency", "returns", "cancelled", "reviews", "support_messages")
_WINDOW_COUNTS = ("orders", "sessions", "product_views", "dwell_ms")


def parse_as_of(as_of: datetime | date | str, *, where: str = "as_of") -> datetime:
    """``as_of`` as a naive UTC datetime; a string is ISO 8601 (``"2025-04-01"``).

    Raises
    ------
    ConfigError
        If ``as_of`` is not a date, a datetime or an ISO 8601 string.
    """
    if isinstance(as_of, str):
        try:
            moment = datetime.fromisoformat(as_of.strip())
        except ValueError:
            raise ConfigError(
                describe(where, "an ISO 8601 date or timestamp such as '2025-04-01'", repr(as_of))
            ) from None
    elif isinstance(as_of, datetime):
        moment = as_of
    elif isinstance(as_of, date):
        moment = datetime(as_of.year, as_of.month, as_of.day)
    else:
        raise ConfigError(
            describe(where, "a datetime, a date or an ISO 8601 string", type(as_of).__name__)
        )
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    if not MIN_YEAR <= moment.year <= MAX_YEAR:  # no order in the warehouse lies outside
        raise ConfigError(describe(where, f"a time in the years {MIN_YEAR}-{MAX_YEAR} (the "
                                   "warehouse's range of times)", moment.isoformat()))
    return moment


def profile_columns(
    windows_days: Sequence[int] = (30, 90, 365), categories: Sequence[str] = ()
) -> list[str]:
    """The columns :func:`build_profiles` returns, in order."""
    windows = _check_windows(windows_days)
    cols = [
        "customer_id",
        "as_of",
        "profile_version",
        "recency_days",
        "frequency",
        "monetary",
        "avg_order_value",
        "tenure_days",
        "ipt_mean_days",
        "ipt_std_days",
    ]
    for w in windows:
        cols += [f"orders_{w}d", f"spend_{w}d"]
    cols += ["discount_share", "returns", "return_rate", "cancelled"]
    cols += [category_column(c) for c in categories]
    for w in windows:
        cols += [f"sessions_{w}d", f"product_views_{w}d", f"dwell_ms_{w}d"]
    cols += ["reviews", "mean_rating", "support_messages", "sentiment"]
    return cols


def build_profiles(
    source: BaseBackend | Mapping[str, ir.Table],
    *,
    as_of: datetime | date | str,
    windows_days: Sequence[int] = (30, 90, 365),
    categories: Sequence[str] = (),
) -> ir.Table:
    """One row of features per customer known before ``as_of``, from data before ``as_of``.

    A customer is known when ``customers.first_seen < as_of`` or they placed an order
    (any status) before ``as_of``. Every row read has its timestamp strictly before
    ``as_of``, so data at or after the cut-off changes nothing.

    Parameters
    ----------
    source : ibis connection or mapping of str to ibis.Table
        The canonical tables ``customers``, ``orders``, ``order_lines``, ``products``,
        ``events`` and ``texts``, by name. A missing table gives zero counts and null
        averages for the features that read it.
    as_of : datetime, date or str
        The cut-off; a naive value or a date is UTC, a string ISO 8601.
    windows_days : sequence of int, default=(30, 90, 365)
        Look-back windows in days for ``orders_<w>d``, ``spend_<w>d``, ``sessions_<w>d``,
        ``product_views_<w>d`` and ``dwell_ms_<w>d``.
    categories : sequence of str, default=()
        Product categories that get a spend-share column ``share_<category>``; the caller
        chooses them (``write_profiles`` takes every category in ``products``), so the
        columns do not depend on the data and the expression never executes.

    Returns
    -------
    ibis.Table
        The columns :func:`profile_columns` lists; unordered (order by ``customer_id``
        before materialising).

    Raises
    ------
    SchemaError
        If a source table lacks a column its features need, or neither ``customers``
        nor ``orders`` is given.
    ConfigError
        If ``as_of``, ``windows_days`` or ``categories`` is invalid.

    Examples
    --------
    >>> from marketloop.simulate import Market
    >>> shop = Market(n_customers=200, n_days=60, random_state=0).simulate()
    >>> tables = {n: ibis.memtable(getattr(shop, n)) for n in ("customers", "orders")}
    >>> p = build_profiles(tables, as_of="2025-02-01").order_by("customer_id").to_pandas()
    >>> bool((p["frequency"] >= p["orders_30d"]).all()), p["monetary"].dtype.name
    (True, 'float64')
    """
    moment = parse_as_of(as_of)
    windows = _check_windows(windows_days)
    cols = profile_columns(windows, categories)
    if len(set(cols)) != len(cols):
        raise ConfigError(
            describe(
                "build_profiles(categories)",
                "distinct column names",
                ", ".join(category_column(c) for c in categories),
            )
        )
    tables = _resolve(source)
    cutoff = Cutoff(moment)
    profile = _population(tables, cutoff).mutate(
        as_of=ibis.literal(moment, type="timestamp"),
        profile_version=ibis.literal(PROFILE_VERSION, type="int64"),
    )
    orders, lines = tables.get("orders"), tables.get("order_lines")
    blocks: list[ir.Table] = []
    if orders is not None:
        blocks += [order_block(orders, cutoff, windows), ipt_std_block(orders, cutoff)]
        if lines is not None:
            blocks.append(line_block(orders, lines, tables.get("products"), cutoff, categories))
    if tables.get("events") is not None:
        blocks.append(event_block(tables["events"], cutoff, windows))
    if tables.get("texts") is not None:
        blocks.append(text_block(tables["texts"], cutoff))
    for block in blocks:
        profile = profile.left_join(block, "customer_id").drop("customer_id_right")
    return profile.select(*(_finish(profile, c, windows) for c in cols))


def category_spend(
    source: BaseBackend | Mapping[str, ir.Table], *, as_of: datetime | date | str
) -> ir.Table:
    """Long format: paid spend (after discounts) per customer and category before ``as_of``.

    Returns
    -------
    ibis.Table
        ``customer_id``, ``category`` (null for products not in the catalogue),
        ``spend`` (float64) and ``share`` (of the customer's spend, float64; null when
        the customer's spend is 0).
    """
    tables = _resolve(source)
    for name in ("orders", "order_lines", "products"):
        if name not in tables:
            raise SchemaError(describe("category_spend(source)", f"a {name} table", "none"))
    lin = paid_lines(tables["orders"], tables["order_lines"], Cutoff(parse_as_of(as_of)))
    lin = lin.left_join(tables["products"].select("product_id", "category"), "product_id")
    per = lin.group_by("customer_id", "category").aggregate(spend=lin._net.sum().cast("float64"))
    total = per.spend.sum().over(group_by=per.customer_id)
    return per.mutate(share=ibis.ifelse(total > 0, per.spend / total, ibis.null("float64")))


def _resolve(source: BaseBackend | Mapping[str, ir.Table]) -> dict[str, ir.Table]:
    if isinstance(source, BaseBackend):
        have = set(source.list_tables())
        tables = {name: source.table(name) for name in SOURCE_TABLES if name in have}
    else:
        tables = {name: source[name] for name in SOURCE_TABLES if source.get(name) is not None}
    for name, table in tables.items():
        missing = [c for c in SOURCE_TABLES[name] if c not in table.columns]
        if missing:
            raise SchemaError(
                describe(
                    f"build_profiles table {name}",
                    f"columns {', '.join(SOURCE_TABLES[name])}",
                    f"{', '.join(table.columns)} ({', '.join(missing)} missing)",
                )
            )
    if "customers" not in tables and "orders" not in tables:
        raise SchemaError(
            describe(
                "build_profiles(source)",
                "a customers or an orders table",
                ", ".join(tables) or "none",
            )
        )
    return tables


def _population(tables: dict[str, ir.Table], cutoff: Cutoff) -> ir.Table:
    """Customers known before the cut-off, with ``tenure_days`` from their first sign."""
    starts: list[ir.Table] = []
    if "customers" in tables:
        c = tables["customers"]
        known = c.filter(c.customer_id.notnull(), c.first_seen < cutoff.at(c.first_seen))
        starts.append(known.select("customer_id", _since=known.first_seen.epoch_seconds()))
    if "orders" in tables:
        o = tables["orders"]
        past = o.filter(o.customer_id.notnull(), o.ordered_at < cutoff.at(o.ordered_at))
        starts.append(past.select("customer_id", _since=past.ordered_at.epoch_seconds()))
    union = starts[0] if len(starts) == 1 else starts[0].union(starts[1], distinct=False)
    union = union.mutate(_since=union._since.cast("float64"))
    first = union.group_by("customer_id").aggregate(_since=union._since.min())
    return first.select(
        "customer_id",
        tenure_days=(ibis.literal(cutoff.epoch) - first._since) / 86_400.0,
    )


def _finish(profile: ir.Table, col: str, windows: Sequence[int]) -> ir.Value:
    """Column ``col`` of the joined profile: counts and sums 0 when absent, ratios null."""
    counted = col in _COUNTS or any(col == f"{k}_{w}d" for k in _WINDOW_COUNTS for w in windows)
    summed = col == "monetary" or any(col == f"spend_{w}d" for w in windows)
    if col not in profile.columns:
        if counted:
            return ibis.literal(0, type="int64").name(col)
        return ibis.null("float64").name(col)
    if counted:
        return profile[col].fill_null(0).cast("int64").name(col)
    if summed:
        return profile[col].fill_null(0.0).cast("float64").name(col)
    return profile[col]


def _check_windows(windows_days: Sequence[int]) -> list[int]:
    windows = list(windows_days)
    if (
        not windows
        or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in windows)
        or len(set(windows)) != len(windows)
    ):
        raise ConfigError(
            describe(
                "build_profiles(windows_days)",
                "distinct positive whole numbers of days",
                repr(windows_days),
            )
        )
    return sorted(windows)
