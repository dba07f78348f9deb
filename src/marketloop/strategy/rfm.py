"""RFM segmentation: recency, frequency and monetary scores and named segments.

The traditional baseline every smarter strategy is compared with. Everything here is an
Ibis expression: the functions take and return ``ibis.Table`` and never execute, so the
same segmentation runs on DuckDB, PostgreSQL and PySpark; the caller materialises.

The chain is :func:`rfm_inputs` (per-customer figures before ``as_of``) →
:func:`rfm_scores` (quantile scores 1..``n_bins``) → :func:`assign_segments` (a name per
score cell, from :class:`SegmentRule` s) → :func:`segment_summary`; :func:`rfm_segments`
runs the first three.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from marketloop.exceptions import ConfigError, SchemaError, describe

#: Columns :func:`rfm_inputs` returns, in order.
RFM_COLUMNS = (
    "customer_id",
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "first_order_at",
    "last_order_at",
)

_ORDER_COLUMNS = ("order_id", "customer_id", "ordered_at", "status", "amount")
_SCORE_INPUTS = ("customer_id", "recency_days", "frequency", "monetary")
_MAX_BINS = 9  # one digit per score keeps ``rfm_cell`` unambiguous
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class SegmentRule:
    """A named segment: the customers whose scores fall in the given inclusive ranges.

    Parameters
    ----------
    name : str
        Segment name: lower case letters, digits and ``_``, starting with a letter.
        Several rules may share a name; the segment is then their union.
    r : tuple of (int, int)
        Inclusive range of the recency score (``n_bins`` = bought most recently).
    f : tuple of (int, int) or None, default=None
        Inclusive range of the frequency score; None accepts any score.
    m : tuple of (int, int) or None, default=None
        Inclusive range of the monetary score; None accepts any score.
    description : str, default=""
        What the segment means, for reports.

    Examples
    --------
    >>> rule = SegmentRule("champions", r=(5, 5), f=(4, 5))
    >>> rule.matches(5, 4, 1), rule.matches(4, 5, 5)
    (True, False)
    """

    name: str
    r: tuple[int, int]
    f: tuple[int, int] | None = None
    m: tuple[int, int] | None = None
    description: str = ""

    def ranges(self) -> dict[str, tuple[int, int] | None]:
        """The score ranges by score name (``r``, ``f``, ``m``); None means any."""
        return {"r": self.r, "f": self.f, "m": self.m}

    def matches(self, r: int, f: int, m: int) -> bool:
        """Whether the score cell ``(r, f, m)`` belongs to this rule."""
        cell = {"r": r, "f": f, "m": m}
        return all(
            bounds is None or bounds[0] <= cell[score] <= bounds[1]
            for score, bounds in self.ranges().items()
        )


#: The common RFM grid over recency and frequency scores (five bins), eleven segments.
DEFAULT_RULES: tuple[SegmentRule, ...] = (
    SegmentRule("champions", r=(5, 5), f=(4, 5), description="Bought recently, buy often."),
    SegmentRule("loyal", r=(3, 4), f=(4, 5), description="Buy often; responsive."),
    SegmentRule(
        "potential_loyalists", r=(4, 5), f=(2, 3), description="Recent, a few orders."
    ),
    SegmentRule("new", r=(5, 5), f=(1, 1), description="First order, very recent."),
    SegmentRule("promising", r=(4, 4), f=(1, 1), description="Recent single buyers."),
    SegmentRule("need_attention", r=(3, 3), f=(3, 3), description="Average on both."),
    SegmentRule("about_to_sleep", r=(3, 3), f=(1, 2), description="Fading, few orders."),
    SegmentRule("at_risk", r=(1, 2), f=(3, 4), description="Bought often, long ago."),
    SegmentRule("cannot_lose", r=(1, 2), f=(5, 5), description="Best buyers, gone quiet."),
    SegmentRule("hibernating", r=(2, 2), f=(1, 2), description="Long ago, few orders."),
    SegmentRule("lost", r=(1, 1), f=(1, 2), description="Longest ago, few orders."),
)


def rfm_inputs(orders: ir.Table, *, as_of: datetime | date | str) -> ir.Table:
    """Recency, frequency and monetary value per customer, from paid orders before ``as_of``.

    Only orders with status ``paid``, a customer (guest orders are left out) and
    ``ordered_at`` strictly before ``as_of`` count, so later orders change nothing.

    Parameters
    ----------
    orders : ibis.Table
        The canonical ``orders`` table (``order_id``, ``customer_id``, ``ordered_at``,
        ``status``, ``amount``).
    as_of : datetime, date or str
        The moment the figures describe; a string is ISO 8601 (``"2024-07-01"``). A
        naive value is UTC; an aware one is converted to UTC.

    Returns
    -------
    ibis.Table
        One row per customer: ``customer_id``; ``recency_days`` (int64, whole days from
        the last order to ``as_of``); ``frequency`` (int64, distinct orders);
        ``monetary`` (float64, total spend); ``avg_order_value`` (float64, spend per
        order); ``first_order_at`` and ``last_order_at``. Unordered.

    Raises
    ------
    SchemaError
        If ``orders`` lacks a required column or ``ordered_at`` is not a timestamp.
    ConfigError
        If ``as_of`` is not a date, a timestamp or an ISO 8601 string.

    Examples
    --------
    >>> from datetime import datetime
    >>> import ibis
    >>> orders = ibis.memtable({
    ...     "order_id": ["o1", "o2", "o3", "o4"],
    ...     "customer_id": ["c1", "c1", "c2", None],
    ...     "ordered_at": [datetime(2024, 5, 1), datetime(2024, 6, 20, 12),
    ...                    datetime(2024, 3, 2), datetime(2024, 6, 1)],
    ...     "status": ["paid", "paid", "paid", "paid"],
    ...     "amount": [10.0, 30.0, 5.0, 99.0],
    ... })
    >>> rfm = rfm_inputs(orders, as_of="2024-07-01").order_by("customer_id").to_pandas()
    >>> print(rfm[["customer_id", "recency_days", "frequency", "monetary"]].to_string(index=False))
    customer_id  recency_days  frequency  monetary
             c1            10          2      40.0
             c2           121          1       5.0
    """
    where = "rfm_inputs(orders)"
    _check_columns(orders, _ORDER_COLUMNS, where=where)
    ordered_at_type = orders.ordered_at.type()
    if not ordered_at_type.is_timestamp():
        raise SchemaError(
            describe(f"{where} column ordered_at", "a timestamp", str(ordered_at_type))
        )
    cutoff = _cutoff(as_of, ordered_at_type, where="rfm_inputs(as_of)")
    paid = orders.filter(
        orders.status.lower() == "paid",
        orders.customer_id.notnull(),
        orders.ordered_at < cutoff,
    )
    last = paid.ordered_at.max()
    # Whole days elapsed, from epoch seconds: DuckDB's DATE_DIFF counts midnights crossed
    # and Postgres' interval cast rounds, so Ibis' ``delta`` differs between the two.
    elapsed_s = cutoff.epoch_seconds() - last.epoch_seconds()
    per_customer = paid.group_by("customer_id").aggregate(
        recency_days=(elapsed_s / _SECONDS_PER_DAY).floor().cast("int64"),
        frequency=paid.order_id.nunique().cast("int64"),
        monetary=paid.amount.sum().cast("float64"),
        first_order_at=paid.ordered_at.min(),
        last_order_at=last,
    )
    return per_customer.mutate(
        avg_order_value=per_customer.monetary / per_customer.frequency.cast("float64")
    ).select(*RFM_COLUMNS)


def rfm_scores(rfm: ir.Table, *, n_bins: int = 5) -> ir.Table:
    """Score recency, frequency and monetary value into ``n_bins`` quantile bins.

    Scores are SQL ``NTILE`` buckets over all customers: customers are sorted by the
    value, then by ``customer_id``, and cut into ``n_bins`` groups whose sizes differ by
    at most one (the first, lower groups take the remainder). Ties in a value are thus
    split by ``customer_id``, so the result is the same on every backend and every run.

    Parameters
    ----------
    rfm : ibis.Table
        One row per customer with ``customer_id``, ``recency_days``, ``frequency`` and
        ``monetary``, as :func:`rfm_inputs` returns.
    n_bins : int, default=5
        Bins per score, 2 to 9; scores run from 1 (worst) to ``n_bins`` (best). Fewer
        customers than bins leave the top scores unused.

    Returns
    -------
    ibis.Table
        The input columns plus int64 ``r`` (recent is high), ``f``, ``m`` and the string
        ``rfm_cell`` such as ``"545"``.

    Raises
    ------
    SchemaError
        If a required column is missing.
    ConfigError
        If ``n_bins`` is not an integer from 2 to 9.

    Examples
    --------
    >>> import ibis
    >>> rfm = ibis.memtable({"customer_id": ["a", "b", "c", "d"],
    ...                      "recency_days": [3, 40, 10, 200],
    ...                      "frequency": [5, 1, 2, 1], "monetary": [90.0, 10.0, 50.0, 5.0]})
    >>> scores = rfm_scores(rfm, n_bins=2).order_by("customer_id").to_pandas()
    >>> scores["rfm_cell"].tolist()
    ['222', '111', '222', '111']
    """
    _check_n_bins(n_bins, where="rfm_scores")
    _check_columns(rfm, _SCORE_INPUTS, where="rfm_scores(rfm)")

    def score(value: ir.Value) -> ir.IntegerColumn:
        # Ibis' ntile is 0-based; the customer_id tie-breaker makes the order total.
        bucket = ibis.ntile(n_bins).over(order_by=[value, rfm.customer_id.asc()])
        return (bucket + 1).cast("int64")

    scored = rfm.mutate(
        r=score(rfm.recency_days.desc()),
        f=score(rfm.frequency.asc()),
        m=score(rfm.monetary.asc()),
    )
    return scored.mutate(
        rfm_cell=scored.r.cast("string") + scored.f.cast("string") + scored.m.cast("string")
    )


def check_rules(
    rules: Iterable[SegmentRule], *, n_bins: int = 5
) -> tuple[SegmentRule, ...]:
    """Return ``rules`` as a tuple if every score cell falls in exactly one of them.

    Parameters
    ----------
    rules : iterable of SegmentRule
        The segment rules to check.
    n_bins : int, default=5
        Bins per score; cells run over ``1..n_bins`` for each of r, f and m.

    Returns
    -------
    tuple of SegmentRule
        The rules, in order.

    Raises
    ------
    ConfigError
        If a rule is malformed, a range leaves ``1..n_bins``, a cell matches no rule (a
        gap) or several rules (an overlap); the message names the first such cell.

    Examples
    --------
    >>> len(check_rules(DEFAULT_RULES))
    11
    >>> check_rules([SegmentRule("recent", r=(3, 5)), SegmentRule("old", r=(1, 1))])
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    marketloop.exceptions.ConfigError: segment rules: ... found cell 211 in no rule (and 24 ...
    """
    _check_n_bins(n_bins, where="check_rules")
    rules = tuple(rules)
    if not rules:
        raise ConfigError(describe("segment rules", "at least one SegmentRule", "none"))
    for rule in rules:
        _check_rule(rule, n_bins=n_bins)
    gaps: list[str] = []
    overlaps: list[tuple[str, list[str]]] = []
    for cell in itertools.product(range(1, n_bins + 1), repeat=3):
        names = [rule.name for rule in rules if rule.matches(*cell)]
        label = "".join(map(str, cell))
        if not names:
            gaps.append(label)
        elif len(names) > 1:
            overlaps.append((label, names))
    expected = "every (r, f, m) score cell in exactly one rule"
    if overlaps:
        label, names = overlaps[0]
        n_more = len(overlaps) - 1
        more = f" (and {n_more} more cells in several rules)" if n_more else ""
        raise ConfigError(describe(
            "segment rules", expected, f"cell {label} in rules {', '.join(names)}{more}",
            "Narrow one of the rules so that they no longer overlap.",
        ))
    if gaps:
        more = f" (and {len(gaps) - 1} more cells in no rule)" if len(gaps) > 1 else ""
        raise ConfigError(describe(
            "segment rules", expected, f"cell {gaps[0]} in no rule{more}",
            "Widen a rule or add one covering that cell.",
        ))
    return rules


def assign_segments(
    scores: ir.Table, *, rules: Sequence[SegmentRule] = DEFAULT_RULES, n_bins: int = 5
) -> ir.Table:
    """Name each customer's segment from their ``r``, ``f`` and ``m`` scores.

    Parameters
    ----------
    scores : ibis.Table
        Rows with integer ``r``, ``f`` and ``m`` scores, as :func:`rfm_scores` returns.
    rules : sequence of SegmentRule, default=DEFAULT_RULES
        Segment rules; checked by :func:`check_rules` first.
    n_bins : int, default=5
        The ``n_bins`` the scores were made with.

    Returns
    -------
    ibis.Table
        The input columns plus the string ``segment``.

    Raises
    ------
    SchemaError
        If ``r``, ``f`` or ``m`` is missing.
    ConfigError
        If the rules leave a gap or overlap (see :func:`check_rules`).

    Examples
    --------
    >>> import ibis
    >>> scores = ibis.memtable({"customer_id": ["a", "b"], "r": [5, 1], "f": [5, 1], "m": [3, 1]})
    >>> assign_segments(scores).order_by("customer_id").to_pandas()["segment"].tolist()
    ['champions', 'lost']
    """
    rules = check_rules(rules, n_bins=n_bins)
    _check_columns(scores, ("r", "f", "m"), where="assign_segments(scores)")
    branches = []
    for rule in rules:
        conditions = [
            scores[score].between(bounds[0], bounds[1])
            for score, bounds in rule.ranges().items()
            if bounds is not None
        ]
        branches.append((ibis.and_(*conditions), rule.name))
    return scores.mutate(segment=ibis.cases(*branches).cast("string"))


def segment_summary(segmented: ir.Table) -> ir.Table:
    """Size and value of each segment.

    Parameters
    ----------
    segmented : ibis.Table
        One row per customer with ``segment``, ``recency_days``, ``frequency`` and
        ``monetary``, as :func:`rfm_segments` returns.

    Returns
    -------
    ibis.Table
        One row per non-empty segment: ``segment``, ``customers`` (int64), ``share`` of
        all customers (float64, sums to 1), ``mean_recency_days``, ``mean_frequency``,
        ``mean_monetary`` and ``total_monetary`` (float64). Unordered.

    Raises
    ------
    SchemaError
        If a required column is missing.

    Examples
    --------
    >>> import ibis
    >>> seg = ibis.memtable({"customer_id": ["a", "b", "c"], "segment": ["new", "lost", "lost"],
    ...                      "recency_days": [1, 300, 500], "frequency": [1, 1, 2],
    ...                      "monetary": [20.0, 10.0, 30.0]})
    >>> out = segment_summary(seg).order_by("segment").to_pandas()
    >>> print(out[["segment", "customers", "total_monetary"]].to_string(index=False))
    segment  customers  total_monetary
       lost          2            40.0
        new          1            20.0
    """
    _check_columns(segmented, ("segment", *_SCORE_INPUTS[1:]), where="segment_summary(segmented)")
    per_segment = segmented.group_by("segment").aggregate(
        customers=segmented.count().cast("int64"),
        mean_recency_days=segmented.recency_days.cast("float64").mean(),
        mean_frequency=segmented.frequency.cast("float64").mean(),
        mean_monetary=segmented.monetary.cast("float64").mean(),
        total_monetary=segmented.monetary.cast("float64").sum(),
    )
    share = per_segment.customers.cast("float64") / per_segment.customers.sum().cast("float64")
    return per_segment.mutate(share=share).select(
        "segment", "customers", "share", "mean_recency_days", "mean_frequency",
        "mean_monetary", "total_monetary",
    )


def rfm_segments(
    orders: ir.Table,
    *,
    as_of: datetime | date | str,
    n_bins: int = 5,
    rules: Sequence[SegmentRule] = DEFAULT_RULES,
) -> ir.Table:
    """RFM figures, scores and segment per customer: the three steps chained.

    Parameters
    ----------
    orders : ibis.Table
        The canonical ``orders`` table.
    as_of : datetime, date or str
        Only paid orders strictly before this moment count (see :func:`rfm_inputs`).
    n_bins : int, default=5
        Bins per score (see :func:`rfm_scores`).
    rules : sequence of SegmentRule, default=DEFAULT_RULES
        Segment rules (see :func:`assign_segments`).

    Returns
    -------
    ibis.Table
        :data:`RFM_COLUMNS` plus ``r``, ``f``, ``m``, ``rfm_cell`` and ``segment``.

    Raises
    ------
    SchemaError, ConfigError
        As the three steps do; the rules are checked before anything else.

    Examples
    --------
    >>> from datetime import datetime
    >>> import ibis
    >>> orders = ibis.memtable({
    ...     "order_id": ["o1", "o2", "o3"], "customer_id": ["c1", "c1", "c2"],
    ...     "ordered_at": [datetime(2024, 6, 1), datetime(2024, 6, 9), datetime(2023, 1, 5)],
    ...     "status": ["paid", "paid", "paid"], "amount": [10.0, 30.0, 5.0]})
    >>> out = rfm_segments(orders, as_of="2024-07-01").order_by("customer_id").to_pandas()
    >>> print(out[["customer_id", "rfm_cell", "segment"]].to_string(index=False))
    customer_id rfm_cell     segment
             c1      222 hibernating
             c2      111        lost
    """
    rules = check_rules(rules, n_bins=n_bins)
    scores = rfm_scores(rfm_inputs(orders, as_of=as_of), n_bins=n_bins)
    return assign_segments(scores, rules=rules, n_bins=n_bins)


def _check_columns(table: ir.Table, required: Sequence[str], *, where: str) -> None:
    """Raise SchemaError naming the columns of ``required`` that ``table`` lacks."""
    missing = [c for c in required if c not in table.columns]
    if missing:
        found = ", ".join(table.columns) or "no columns"
        raise SchemaError(describe(
            where, f"columns {', '.join(required)}", f"{found} ({', '.join(missing)} missing)"
        ))


def _check_n_bins(n_bins: int, *, where: str) -> None:
    """Raise ConfigError unless ``n_bins`` is an int from 2 to 9."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or not 2 <= n_bins <= _MAX_BINS:
        raise ConfigError(describe(
            f"{where}(n_bins)", f"an integer from 2 to {_MAX_BINS}", repr(n_bins),
            "Scores are written as one digit each in rfm_cell.",
        ))


def _check_rule(rule: SegmentRule, *, n_bins: int) -> None:
    """Raise ConfigError if ``rule`` is not a SegmentRule with a valid name and ranges."""
    if not isinstance(rule, SegmentRule):
        raise ConfigError(describe("segment rules", "SegmentRule objects", type(rule).__name__))
    if not isinstance(rule.name, str) or not _NAME.match(rule.name):
        raise ConfigError(describe(
            "segment rule name", "lower case letters, digits and _, starting with a letter",
            repr(rule.name),
        ))
    for score, bounds in rule.ranges().items():
        if bounds is None:
            continue
        ok = (
            isinstance(bounds, tuple)
            and len(bounds) == 2
            and all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
            and 1 <= bounds[0] <= bounds[1] <= n_bins
        )
        if not ok:
            raise ConfigError(describe(
                f"segment rule {rule.name!r}, range {score}",
                f"(low, high) integers with 1 <= low <= high <= {n_bins}", repr(bounds),
            ))


def _cutoff(as_of: datetime | date | str, dtype: dt.DataType, *, where: str) -> ir.TimestampValue:
    """``as_of`` as a timestamp literal in UTC, naive or aware as the column is."""
    if isinstance(as_of, str):
        try:
            moment = datetime.fromisoformat(as_of)
        except ValueError:
            raise ConfigError(describe(
                where, "an ISO 8601 date or timestamp such as '2024-07-01'", repr(as_of)
            )) from None
    elif isinstance(as_of, datetime):
        moment = as_of
    elif isinstance(as_of, date):
        moment = datetime(as_of.year, as_of.month, as_of.day)
    else:
        raise ConfigError(describe(where, "a datetime, a date or an ISO 8601 string",
                                   type(as_of).__name__))
    if getattr(dtype, "timezone", None) is None:
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        return ibis.literal(moment, type="timestamp")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return ibis.literal(moment.astimezone(UTC), type=dt.Timestamp(timezone="UTC"))
