"""Blocks of the point-in-time profile: one per-customer Ibis expression per source table.

Each block takes a canonical table and the cut-off, keeps only rows strictly before it and
returns one row per customer. :func:`marketloop.data.profiles.build_profiles` joins them.
Time differences are taken from epoch seconds: Ibis' ``delta`` counts midnights on DuckDB
and rounds intervals on PostgreSQL, so it would differ between backends.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

SECONDS_PER_DAY = 86_400.0

#: A small English sentiment lexicon (substring matches on the lower-cased body).
POSITIVE_WORDS = (
    "love", "great", "excellent", "happy", "thank", "best", "perfect", "fast",
    "recommend", "well packed", "better than", "worth every",
)  # fmt: skip
NEGATIVE_WORDS = (
    "disappoint", "poor", "broke", "cheap", "late", "damaged", "not worth", "refund",
    "wrong", "unacceptable", "upset", "nobody", "terrible", "not arrived", "never",
)  # fmt: skip


class Cutoff:
    """The cut-off as typed Ibis literals, naive or aware as the source column is."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment  # naive, UTC

    def at(self, column: ir.TimestampValue, *, days_before: float = 0) -> ir.TimestampScalar:
        """The literal ``moment - days_before`` typed like ``column`` (naive or UTC)."""
        moment = self.moment - timedelta(days=days_before)
        timezone = getattr(column.type(), "timezone", None)
        if timezone is None:
            return ibis.literal(moment, type="timestamp")
        return ibis.literal(moment.replace(tzinfo=UTC), type=dt.Timestamp(timezone="UTC"))

    @property
    def epoch(self) -> float:
        """The cut-off in seconds since 1970-01-01 UTC, as a Python number."""
        return (self.moment - datetime(1970, 1, 1)).total_seconds()


def _days_since(cutoff: Cutoff, epoch_s: ir.NumericValue) -> ir.FloatingValue:
    return (ibis.literal(cutoff.epoch) - epoch_s.cast("float64")) / SECONDS_PER_DAY


def _float_sum(value: ir.NumericColumn, where: ir.BooleanValue | None = None) -> ir.FloatingValue:
    # sum exactly (decimals stay decimals), convert once; no rows -> 0.0, not NULL
    return value.sum(where=where).cast("float64").fill_null(0.0)


def _count(table: ir.Table, where: ir.BooleanValue) -> ir.IntegerValue:
    return table.count(where=where).cast("int64")


def order_block(orders: ir.Table, cutoff: Cutoff, windows: Sequence[int]) -> ir.Table:
    """Recency, frequency, monetary, windows, returns and cancellations per customer."""
    past = orders.filter(
        orders.customer_id.notnull(), orders.ordered_at < cutoff.at(orders.ordered_at)
    )
    status = past.status.lower()
    paid = status == "paid"
    epoch = past.ordered_at.epoch_seconds()
    metrics: dict[str, ir.Value] = {
        "frequency": _count(past, paid),
        "monetary": _float_sum(past.amount, paid),
        "_first_paid": epoch.min(where=paid),
        "_last_paid": epoch.max(where=paid),
        "returns": _count(past, status == "returned"),
        "cancelled": _count(past, status == "cancelled"),
    }
    for w in windows:
        recent = paid & (past.ordered_at >= cutoff.at(past.ordered_at, days_before=w))
        metrics[f"orders_{w}d"] = _count(past, recent)
        metrics[f"spend_{w}d"] = _float_sum(past.amount, recent)
    per = past.group_by("customer_id").aggregate(**metrics)
    n = per.frequency.cast("float64")
    settled = (per.frequency + per.returns).cast("float64")
    span_days = (per._last_paid - per._first_paid).cast("float64") / SECONDS_PER_DAY
    return per.mutate(
        recency_days=_days_since(cutoff, per._last_paid),
        avg_order_value=ibis.ifelse(per.frequency > 0, per.monetary / n, ibis.null("float64")),
        ipt_mean_days=ibis.ifelse(per.frequency >= 2, span_days / (n - 1), ibis.null("float64")),
        return_rate=ibis.ifelse(
            settled > 0, per.returns.cast("float64") / settled, ibis.null("float64")
        ),
    ).drop("_first_paid", "_last_paid")


def ipt_std_block(orders: ir.Table, cutoff: Cutoff) -> ir.Table:
    """Sample standard deviation of the gaps between consecutive paid orders (days)."""
    paid = orders.filter(
        orders.customer_id.notnull(),
        orders.ordered_at < cutoff.at(orders.ordered_at),
        orders.status.lower() == "paid",
    )
    epoch = paid.ordered_at.epoch_seconds()
    # order_id breaks ties between orders placed in the same second
    w = ibis.window(group_by=paid.customer_id, order_by=[paid.ordered_at, paid.order_id])
    gaps = paid.mutate(_gap=(epoch - epoch.lag().over(w)).cast("float64") / SECONDS_PER_DAY)
    return gaps.group_by("customer_id").aggregate(ipt_std_days=gaps._gap.std(how="sample"))


def category_column(category: str) -> str:
    """Column name of a category's spend share: ``share_`` and the category in snake case."""
    slug = re.sub(r"[^a-z0-9]+", "_", category.lower()).strip("_")
    return f"share_{slug or 'blank'}"


def paid_lines(orders: ir.Table, lines: ir.Table, cutoff: Cutoff) -> ir.Table:
    """Lines of paid customer orders before the cut-off, with ``customer_id``."""
    paid = orders.filter(
        orders.customer_id.notnull(),
        orders.ordered_at < cutoff.at(orders.ordered_at),
        orders.status.lower() == "paid",
    ).select("order_id", "customer_id")
    joined = lines.join(paid, "order_id")
    gross = joined.quantity * joined.unit_price
    return joined.mutate(_gross=gross, _net=gross - joined.discount.fill_null(0))


def line_block(
    orders: ir.Table,
    lines: ir.Table,
    products: ir.Table | None,
    cutoff: Cutoff,
    categories: Sequence[str],
) -> ir.Table:
    """Discount share and the spend share of each category in ``categories``."""
    lin = paid_lines(orders, lines, cutoff)
    metrics: dict[str, ir.Value] = {
        "_gross": _float_sum(lin._gross),
        "_discount": _float_sum(lin.discount.fill_null(0)),
    }
    if categories and products is not None:
        lin = lin.left_join(products.select("product_id", "category"), "product_id")
        metrics["_net"] = _float_sum(lin._net)
        for cat in categories:
            metrics[category_column(cat)] = _float_sum(lin._net, lin.category == cat)
    per = lin.group_by("customer_id").aggregate(**metrics)
    shares = {
        category_column(cat): ibis.ifelse(
            per._net > 0, per[category_column(cat)] / per._net, ibis.null("float64")
        )
        for cat in (categories if "_net" in metrics else ())
    }
    out = per.mutate(
        discount_share=ibis.ifelse(
            per._gross > 0, per._discount / per._gross, ibis.null("float64")
        ),
        **shares,
    )
    return out.drop(*(c for c in out.columns if c.startswith("_")))


def event_block(events: ir.Table, cutoff: Cutoff, windows: Sequence[int]) -> ir.Table:
    """Sessions, product views and dwell time per window, for known visitors."""
    ts = events.ts
    ev = events.filter(
        events.customer_id.notnull(),
        ts < cutoff.at(ts),
        ts >= cutoff.at(ts, days_before=max(windows)),
    )
    metrics: dict[str, ir.Value] = {}
    for w in windows:
        recent = ev.ts >= cutoff.at(ev.ts, days_before=w)
        metrics[f"sessions_{w}d"] = ev.session_id.nunique(where=recent).cast("int64")
        metrics[f"product_views_{w}d"] = _count(ev, recent & (ev.type.lower() == "product_view"))
        metrics[f"dwell_ms_{w}d"] = ev.dwell_ms.sum(where=recent).cast("int64").fill_null(0)
    return ev.group_by("customer_id").aggregate(**metrics)


def _lexicon_hits(body: ir.StringValue, words: Sequence[str]) -> ir.FloatingValue:
    hits = [body.contains(word).ifelse(1.0, 0.0) for word in words]
    total = hits[0]
    for hit in hits[1:]:
        total = total + hit
    return total


def text_block(texts: ir.Table, cutoff: Cutoff) -> ir.Table:
    """Reviews, mean rating, support messages and a lexicon sentiment per customer."""
    past = texts.filter(texts.customer_id.notnull(), texts.ts < cutoff.at(texts.ts))
    body = past.body.fill_null("").lower()
    pos, neg = _lexicon_hits(body, POSITIVE_WORDS), _lexicon_hits(body, NEGATIVE_WORDS)
    score = ibis.ifelse(pos + neg > 0, (pos - neg) / (pos + neg), 0.0)
    kind = past.kind.lower()
    review = kind == "review"
    return past.group_by("customer_id").aggregate(
        reviews=_count(past, review),
        mean_rating=past.rating.cast("float64").mean(where=review),
        support_messages=_count(past, kind == "support"),
        sentiment=score.mean(),
    )
