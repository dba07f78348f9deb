"""RFM segmentation against a plain-pandas reference, on DuckDB and PostgreSQL."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from marketloop.exceptions import ConfigError, SchemaError
from marketloop.strategy import (
    DEFAULT_RULES,
    RFM_COLUMNS,
    SegmentRule,
    assign_segments,
    check_rules,
    rfm_inputs,
    rfm_scores,
    rfm_segments,
    segment_summary,
)

AS_OF = datetime(2024, 7, 1)

ORDERS_SCHEMA = pa.schema([
    ("order_id", pa.string()),
    ("customer_id", pa.string()),
    ("ordered_at", pa.timestamp("us")),
    ("currency", pa.string()),
    ("status", pa.string()),
    ("amount", pa.decimal128(18, 2)),
])


def load(con: ibis.BaseBackend, df: pd.DataFrame, name: str = "orders") -> ibis.Table:
    """Create ``name`` from ``df`` with the canonical types (amount a decimal(18, 2))."""
    table = pa.Table.from_pandas(df, schema=ORDERS_SCHEMA, preserve_index=False)
    return con.create_table(name, table, overwrite=True)


def orders_frame(rows: list[tuple[str, str | None, datetime, str, str]]) -> pd.DataFrame:
    """Orders from ``(order_id, customer_id, ordered_at, status, amount)`` rows."""
    df = pd.DataFrame(rows, columns=["order_id", "customer_id", "ordered_at", "status", "amount"])
    df["amount"] = df["amount"].map(Decimal)
    df["currency"] = "EUR"
    return df[list(ORDERS_SCHEMA.names)]


def random_orders(n_customers: int = 300, n_orders: int = 4_000, seed: int = 7) -> pd.DataFrame:
    """Seeded orders over two years around ``AS_OF``, with guests and every status."""
    rng = np.random.default_rng(seed)
    # a skewed customer mix gives frequency ties at 1 and a long tail, as real shops have
    weights = rng.pareto(1.5, n_customers) + 0.05
    customer = rng.choice(n_customers, size=n_orders, p=weights / weights.sum())
    ids = np.array([f"c{i:04d}" for i in range(n_customers)], dtype=object)[customer]
    ids[rng.random(n_orders) < 0.08] = None  # guest orders
    seconds = rng.integers(-600 * 86_400, 60 * 86_400, size=n_orders)
    # a few orders exactly whole days before AS_OF test the day count at the boundary
    seconds[:40] = -86_400 * rng.integers(0, 30, size=40)
    seconds[40:45] = 0  # exactly at AS_OF: not strictly before, so excluded
    ordered_at = [AS_OF + timedelta(seconds=int(s)) for s in seconds]
    status = rng.choice(["paid", "cancelled", "returned"], size=n_orders, p=[0.8, 0.12, 0.08])
    cents = rng.integers(100, 50_000, size=n_orders)
    cents[rng.random(n_orders) < 0.1] = 1_999  # repeated amounts give monetary ties
    return pd.DataFrame({
        "order_id": [f"o{i:05d}" for i in range(n_orders)],
        "customer_id": ids,
        "ordered_at": ordered_at,
        "currency": "EUR",
        "status": status,
        "amount": [Decimal(int(c)) / 100 for c in cents],
    })


# ---------------------------------------------------------------- plain-pandas reference


def reference_rfm(df: pd.DataFrame, *, as_of: datetime) -> pd.DataFrame:
    paid = df[(df.status == "paid") & df.customer_id.notna() & (df.ordered_at < as_of)]
    by = paid.groupby("customer_id")
    out = pd.DataFrame({
        "recency_days": (pd.Timestamp(as_of) - by.ordered_at.max()) // pd.Timedelta(days=1),
        "frequency": by.order_id.nunique(),
        "monetary": by.amount.sum().map(float),
        "first_order_at": by.ordered_at.min(),
        "last_order_at": by.ordered_at.max(),
    })
    out["avg_order_value"] = out.monetary / out.frequency
    return out.reset_index()[list(RFM_COLUMNS)].sort_values("customer_id", ignore_index=True)


def reference_ntile(
    values: pd.Series, ids: pd.Series, n_bins: int, *, ascending: bool
) -> pd.Series:
    """SQL NTILE (1-based) over rows sorted by value, then id.

    SQL's NTILE gives the first ``n % n_bins`` buckets one row more than the others; it is
    not ``floor((rank - 1) * n_bins / n) + 1`` (for 7 rows and 5 bins, sizes 2,2,1,1,1
    against 2,1,2,1,1), which is why this reference spells the sizes out.
    """
    frame = pd.DataFrame({"v": values.to_numpy(), "id": ids.to_numpy()}, index=values.index)
    frame = frame.sort_values(["v", "id"], ascending=[ascending, True], kind="mergesort")
    n = len(frame)
    small, extra = divmod(n, n_bins)
    big_rows = extra * (small + 1)
    buckets = [
        i // (small + 1) + 1 if i < big_rows else extra + (i - big_rows) // small + 1
        for i in range(n)
    ]
    return pd.Series(buckets, index=frame.index).reindex(values.index)


def reference_scores(rfm: pd.DataFrame, n_bins: int) -> pd.DataFrame:
    out = rfm.copy()
    out["r"] = reference_ntile(out.recency_days, out.customer_id, n_bins, ascending=False)
    out["f"] = reference_ntile(out.frequency, out.customer_id, n_bins, ascending=True)
    out["m"] = reference_ntile(out.monetary, out.customer_id, n_bins, ascending=True)
    out["rfm_cell"] = out.r.astype(str) + out.f.astype(str) + out.m.astype(str)
    return out


def reference_segment(r: int, f: int, m: int, rules: tuple[SegmentRule, ...]) -> str:
    (name,) = [rule.name for rule in rules if rule.matches(r, f, m)]
    return name


# ---------------------------------------------------------------- backends


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def con(request: pytest.FixtureRequest) -> Iterator[ibis.BaseBackend]:
    """A fresh DuckDB database, or a fresh schema on the test PostgreSQL server."""
    if request.param == "duckdb":
        backend = ibis.duckdb.connect()
    else:
        backend = ibis.connect(request.getfixturevalue("pg_url"))
    yield backend
    backend.disconnect()


def materialise(expr: ibis.Table) -> pd.DataFrame:
    df = expr.order_by("customer_id").to_pandas()
    for col in ("first_order_at", "last_order_at"):
        if col in df:
            df[col] = df[col].astype("datetime64[us]")
    return df


# ---------------------------------------------------------------- rfm_inputs


def test_rfm_inputs_hand_made(con: ibis.BaseBackend) -> None:
    d = datetime
    orders = load(con, orders_frame([
        ("o1", "alice", d(2024, 6, 30, 23, 59), "paid", "10.00"),    # 0 whole days before
        ("o2", "alice", d(2024, 1, 1), "paid", "20.50"),
        ("o3", "alice", d(2024, 6, 1), "cancelled", "999.00"),       # not paid
        ("o4", "bob", d(2024, 6, 20, 12), "paid", "5.25"),           # 10.5 days -> 10
        ("o5", "bob", d(2024, 6, 25), "returned", "100.00"),         # not paid
        ("o6", None, d(2024, 6, 29), "paid", "70.00"),               # guest
        ("o7", "carol", d(2024, 7, 1), "paid", "30.00"),             # at as_of: excluded
        ("o8", "carol", d(2024, 7, 15), "paid", "30.00"),            # after as_of
        ("o9", "dave", d(2024, 3, 2), "paid", "1.00"),
    ]))
    got = materialise(rfm_inputs(orders, as_of=AS_OF))
    assert list(got.columns) == list(RFM_COLUMNS)
    assert got.customer_id.tolist() == ["alice", "bob", "dave"]
    assert got.recency_days.tolist() == [0, 10, 121]
    assert got.frequency.tolist() == [2, 1, 1]
    assert got.monetary.tolist() == [30.5, 5.25, 1.0]
    assert got.avg_order_value.tolist() == [15.25, 5.25, 1.0]
    assert got.first_order_at.tolist()[0] == pd.Timestamp("2024-01-01")
    assert got.last_order_at.tolist()[0] == pd.Timestamp("2024-06-30 23:59")


def test_rfm_inputs_agree_with_reference(con: ibis.BaseBackend) -> None:
    df = random_orders()
    got = materialise(rfm_inputs(load(con, df), as_of=AS_OF))
    want = reference_rfm(df, as_of=AS_OF)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_as_of_accepts_strings_dates_and_aware_datetimes() -> None:
    df = random_orders(n_orders=500)
    orders = load(ibis.duckdb.connect(), df)
    want = materialise(rfm_inputs(orders, as_of=AS_OF))
    for as_of in ("2024-07-01", "2024-07-01T02:00:00+02:00", AS_OF.date()):
        pd.testing.assert_frame_equal(materialise(rfm_inputs(orders, as_of=as_of)), want)


def test_rfm_inputs_refuses_bad_input() -> None:
    orders = load(ibis.duckdb.connect(), random_orders(n_orders=100))
    with pytest.raises(SchemaError, match=re.escape("(amount missing)")):
        rfm_inputs(orders.drop("amount"), as_of=AS_OF)
    with pytest.raises(ConfigError, match=re.escape("found '1st of July'")):
        rfm_inputs(orders, as_of="1st of July")


# ---------------------------------------------------------------- rfm_scores


def test_ntile_sizes_and_ties_follow_sql() -> None:
    rfm = ibis.memtable({
        "customer_id": ["g", "f", "e", "d", "c", "b", "a"],
        "recency_days": [1, 2, 3, 4, 5, 6, 7],
        "frequency": [1, 1, 1, 1, 1, 1, 1],      # all tied: split by customer_id
        "monetary": [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0],
    })
    got = rfm_scores(rfm).order_by("customer_id").to_pandas()
    # 7 rows in 5 bins: sizes 2, 2, 1, 1, 1 (SQL NTILE); a..g have monetary 1..7
    assert got.m.tolist() == [1, 1, 2, 2, 3, 4, 5]
    assert got.f.tolist() == [1, 1, 2, 2, 3, 4, 5]     # ties ordered by customer_id
    assert got.r.tolist() == [1, 1, 2, 2, 3, 4, 5]     # a is least recent
    assert got.rfm_cell.tolist()[-1] == "555"


@pytest.mark.parametrize("n_bins", [2, 3, 5, 9])
def test_rfm_scores_agree_with_reference(con: ibis.BaseBackend, n_bins: int) -> None:
    df = random_orders()
    got = materialise(rfm_scores(rfm_inputs(load(con, df), as_of=AS_OF), n_bins=n_bins))
    want = reference_scores(reference_rfm(df, as_of=AS_OF), n_bins)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert got[["r", "f", "m"]].isin(range(1, n_bins + 1)).all().all()


@pytest.mark.parametrize("n_bins", [1, 10, 2.5, True])
def test_rfm_scores_refuses_bad_n_bins(n_bins: int) -> None:
    rfm = ibis.memtable({"customer_id": ["a"], "recency_days": [1], "frequency": [1],
                         "monetary": [1.0]})
    msg = f"expected an integer from 2 to 9; found {n_bins!r}"
    with pytest.raises(ConfigError, match=re.escape(msg)):
        rfm_scores(rfm, n_bins=n_bins)


# ---------------------------------------------------------------- segment rules


def test_default_rules_put_every_cell_in_exactly_one_segment() -> None:
    names = {rule.name for rule in DEFAULT_RULES}
    assert len(names) == 11
    for cell in itertools.product(range(1, 6), repeat=3):
        assert sum(rule.matches(*cell) for rule in DEFAULT_RULES) == 1, cell
    assert check_rules(DEFAULT_RULES) == DEFAULT_RULES


def test_case_expression_matches_the_rules_on_every_cell() -> None:
    cells = list(itertools.product(range(1, 6), repeat=3))
    scores = ibis.memtable(pd.DataFrame(cells, columns=["r", "f", "m"]).assign(
        customer_id=[f"c{i:03d}" for i in range(len(cells))]))
    got = assign_segments(scores).order_by("customer_id").to_pandas()
    want = [reference_segment(*cell, DEFAULT_RULES) for cell in cells]
    assert got.segment.tolist() == want


def test_rules_with_a_gap_name_the_cell() -> None:
    rules = [rule for rule in DEFAULT_RULES if rule.name != "promising"]   # r=4, f=1
    msg = ("segment rules: expected every (r, f, m) score cell in exactly one rule; found "
           "cell 411 in no rule (and 4 more cells in no rule). Widen a rule or add one "
           "covering that cell.")
    with pytest.raises(ConfigError, match=re.escape(msg)):
        check_rules(rules)
    with pytest.raises(ConfigError, match=re.escape(msg)):
        assign_segments(ibis.memtable({"r": [1], "f": [1], "m": [1]}), rules=rules)


def test_rules_that_overlap_name_the_cell_and_rules() -> None:
    rules = [*DEFAULT_RULES, SegmentRule("whales", r=(1, 5), m=(5, 5))]
    msg = "found cell 115 in rules lost, whales (and 24 more cells in several rules)"
    with pytest.raises(ConfigError, match=re.escape(msg)):
        check_rules(rules)


@pytest.mark.parametrize(
    ("rule", "found"),
    [
        (SegmentRule("Bad Name", r=(1, 5)), "found 'Bad Name'"),
        (SegmentRule("wide", r=(0, 5)), "found (0, 5)"),
        (SegmentRule("wide", r=(1, 6)), "found (1, 6)"),
        (SegmentRule("upside_down", r=(5, 1)), "found (5, 1)"),
    ],
)
def test_malformed_rules_are_refused(rule: SegmentRule, found: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(found)):
        check_rules([rule])


def test_custom_rules_and_bins() -> None:
    rules = [
        SegmentRule("active_big", r=(2, 2), m=(2, 2)),
        SegmentRule("active_small", r=(2, 2), m=(1, 1)),
        SegmentRule("dormant", r=(1, 1)),
    ]
    df = random_orders(n_orders=800)
    got = materialise(rfm_segments(load(ibis.duckdb.connect(), df), as_of=AS_OF, n_bins=2,
                                   rules=rules))
    want = reference_scores(reference_rfm(df, as_of=AS_OF), 2)
    want_segments = [reference_segment(r, f, m, tuple(rules))
                     for r, f, m in zip(want.r, want.f, want.m, strict=True)]
    assert got.segment.tolist() == want_segments


# ---------------------------------------------------------------- segments end to end


def test_every_customer_gets_exactly_one_segment(con: ibis.BaseBackend) -> None:
    df = random_orders()
    got = materialise(rfm_segments(load(con, df), as_of=AS_OF))
    want = reference_scores(reference_rfm(df, as_of=AS_OF), 5)
    assert got.customer_id.tolist() == want.customer_id.tolist()  # unique and complete
    assert got.segment.notna().all()
    want_segments = [reference_segment(r, f, m, DEFAULT_RULES)
                     for r, f, m in zip(want.r, want.f, want.m, strict=True)]
    assert got.segment.tolist() == want_segments


def test_orders_after_as_of_change_nothing(con: ibis.BaseBackend) -> None:
    df = random_orders()
    before = materialise(rfm_segments(load(con, df), as_of=AS_OF))
    rng = np.random.default_rng(1)
    later = random_orders(seed=99).assign(
        order_id=lambda x: "late" + x.order_id,
        ordered_at=[AS_OF + timedelta(seconds=int(s))
                    for s in rng.integers(0, 90 * 86_400, size=4_000)],
    )
    after = materialise(rfm_segments(load(con, pd.concat([df, later])), as_of=AS_OF))
    pd.testing.assert_frame_equal(after, before)


def test_guest_and_unpaid_orders_are_excluded() -> None:
    df = random_orders()
    orders = load(ibis.duckdb.connect(), df)
    got = materialise(rfm_segments(orders, as_of=AS_OF))
    only_paid_known = df[(df.status == "paid") & df.customer_id.notna()]
    pruned = materialise(rfm_segments(load(ibis.duckdb.connect(), only_paid_known), as_of=AS_OF))
    pd.testing.assert_frame_equal(got, pruned)


def test_segment_summary_agrees_with_reference(con: ibis.BaseBackend) -> None:
    df = random_orders()
    segmented = rfm_segments(load(con, df), as_of=AS_OF)
    got = segment_summary(segmented).order_by("segment").to_pandas()
    seg = materialise(segmented)
    by = seg.groupby("segment")
    want = pd.DataFrame({
        "customers": by.size(),
        "share": by.size() / len(seg),
        "mean_recency_days": by.recency_days.mean(),
        "mean_frequency": by.frequency.mean(),
        "mean_monetary": by.monetary.mean(),
        "total_monetary": by.monetary.sum(),
    }).reset_index()
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert got.share.sum() == pytest.approx(1.0)
    assert got.customers.sum() == len(seg)


@pytest.mark.postgres
def test_postgres_and_duckdb_give_the_same_segments(pg_url: str) -> None:
    df = random_orders(seed=11)
    results = []
    for backend in (ibis.duckdb.connect(), ibis.connect(pg_url)):
        segmented = rfm_segments(load(backend, df), as_of=AS_OF)
        results.append((materialise(segmented),
                        segment_summary(segmented).order_by("segment").to_pandas()))
        backend.disconnect()
    (duck, duck_summary), (pg, pg_summary) = results
    pd.testing.assert_frame_equal(pg, duck, check_dtype=False)
    pd.testing.assert_frame_equal(pg_summary, duck_summary, check_dtype=False)
