"""Point-in-time profiles: a pandas reference, no leakage, DuckDB = PostgreSQL = PySpark, CLI."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import ibis
import numpy as np
import pandas as pd
import pytest

from _cli import marketloop
from marketloop.data.profiles import (
    build_profiles,
    category_spend,
    profile_columns,
    write_profiles,
)
from marketloop.data.schema import TABLES
from marketloop.data.warehouse import connect, init_warehouse
from marketloop.exceptions import ConfigError, SchemaError
from marketloop.simulate import Market

AS_OF = datetime(2025, 4, 1)
SOURCES = ("customers", "orders", "order_lines", "products", "events", "texts")
IN_CI = os.environ.get("CI") == "true"
# Sums of a few hundred float64 values in another order differ in the last bits: 1e-9
# relative is ~10^6 times the float64 rounding error yet far below a cent on any spend.
RTOL = 1e-9


@pytest.fixture(scope="module")
def shop() -> dict[str, pd.DataFrame]:
    sim = Market(n_customers=1_500, n_days=120, random_state=5).simulate()
    return {name: getattr(sim, name)[TABLES[name].names] for name in SOURCES}


@pytest.fixture(scope="module")
def categories(shop: dict[str, pd.DataFrame]) -> list[str]:
    return sorted(shop["products"]["category"].unique())


def load(con: ibis.BaseBackend, frames: dict[str, pd.DataFrame]) -> ibis.BaseBackend:
    """The canonical tables (decimal money, as the warehouse stores it) filled with ``frames``."""
    init_warehouse(con)
    for name, frame in frames.items():
        con.insert(name, frame)
    if con.name == "postgres":
        con.con.commit()
    return con


def build(con: ibis.BaseBackend, categories: list[str], as_of: datetime = AS_OF) -> pd.DataFrame:
    expr = build_profiles(con, as_of=as_of, categories=categories)
    return expr.order_by("customer_id").to_pandas().reset_index(drop=True)


def assert_profiles_equal(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    got, want = (
        got.assign(as_of=got.as_of.astype("datetime64[us]")),
        want.assign(as_of=want.as_of.astype("datetime64[us]")),
    )
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=RTOL)


# --- a plain-pandas reference for a handful of features ------------------------------------


def reference(frames: dict[str, pd.DataFrame], as_of: datetime) -> pd.DataFrame:
    cut = pd.Timestamp(as_of)
    day = pd.Timedelta(days=1)
    orders = frames["orders"]
    past = orders[orders.customer_id.notna() & (orders.ordered_at < cut)]
    paid = past[past.status == "paid"].sort_values(["ordered_at", "order_id"])
    cust = frames["customers"]
    starts = pd.concat(
        [
            cust.loc[cust.first_seen < cut, ["customer_id", "first_seen"]].rename(
                columns={"first_seen": "t"}
            ),
            past[["customer_id", "ordered_at"]].rename(columns={"ordered_at": "t"}),
        ]
    )
    out = pd.DataFrame(index=pd.Index(sorted(starts.customer_id.unique()), name="customer_id"))
    out["tenure_days"] = (cut - starts.groupby("customer_id").t.min()) / day
    g = paid.groupby("customer_id")
    out["frequency"] = g.size()
    out["monetary"] = g.amount.sum()
    out["recency_days"] = (cut - g.ordered_at.max()) / day
    gaps = g.ordered_at.diff() / day
    out["ipt_mean_days"] = gaps.groupby(paid.customer_id).mean()
    out["ipt_std_days"] = gaps.groupby(paid.customer_id).std()
    for w in (30, 90, 365):
        recent = paid[paid.ordered_at >= cut - pd.Timedelta(days=w)].groupby("customer_id")
        out[f"orders_{w}d"] = recent.size()
        out[f"spend_{w}d"] = recent.amount.sum()
    out["returns"] = past[past.status == "returned"].groupby("customer_id").size()
    lines = frames["order_lines"].merge(paid[["order_id", "customer_id"]], on="order_id")
    gross = (lines.quantity * lines.unit_price).groupby(lines.customer_id).sum()
    out["discount_share"] = lines.discount.fillna(0).groupby(lines.customer_id).sum() / gross
    ev = frames["events"]
    ev = ev[ev.customer_id.notna() & (ev.ts < cut)]
    for w in (30, 90):
        recent = ev[ev.ts >= cut - pd.Timedelta(days=w)]
        out[f"sessions_{w}d"] = recent.groupby("customer_id").session_id.nunique()
        views = recent[recent.type == "product_view"]
        out[f"product_views_{w}d"] = views.groupby("customer_id").size()
        out[f"dwell_ms_{w}d"] = recent.groupby("customer_id").dwell_ms.sum()
    tx = frames["texts"]
    reviews = tx[(tx.ts < cut) & (tx.kind == "review")]
    out["mean_rating"] = reviews.groupby("customer_id").rating.mean().astype("float64")
    counts = [
        c
        for c in out.columns
        if c.startswith(("frequency", "orders_", "returns", "sessions_", "product_views_", "dwell"))
    ]
    sums = ["monetary"] + [c for c in out.columns if c.startswith("spend_")]
    out[counts] = out[counts].fillna(0).astype("int64")
    out[sums] = out[sums].fillna(0.0)
    return out.reset_index()


def test_duckdb_agrees_with_pandas_reference(shop, categories):
    got = build(load(connect("duckdb://"), shop), categories)
    want = reference(shop, AS_OF)
    assert list(got.columns) == profile_columns(categories=categories)
    assert got.customer_id.is_unique
    pd.testing.assert_frame_equal(got[want.columns], want, check_dtype=False, rtol=RTOL)
    # shares of each buyer's net spend add up to one
    shares = got[[c for c in got.columns if c.startswith("share_")]]
    buyers = got.frequency > 0
    np.testing.assert_allclose(shares[buyers].sum(axis=1), 1.0, rtol=1e-9)
    assert shares[~buyers].isna().all().all()


def test_category_spend_long_format_matches_share_columns(shop, categories):
    con = load(connect("duckdb://"), shop)
    wide = build(con, categories).set_index("customer_id")
    long = category_spend(con, as_of=AS_OF).to_pandas()
    pets = long[long.category == "pets"].set_index("customer_id").share
    np.testing.assert_allclose(wide.loc[pets.index, "share_pets"], pets, rtol=1e-9)


def test_missing_tables_give_zero_counts_and_null_averages(shop):
    con = ibis.duckdb.connect()
    orders = con.create_table("orders", shop["orders"])
    got = build_profiles({"orders": orders}, as_of=AS_OF).to_pandas()
    assert (got.sessions_30d == 0).all() and (got.reviews == 0).all()
    assert got.mean_rating.isna().all() and got.discount_share.isna().all()
    assert (got.frequency > 0).any()


def test_bad_inputs_raise_clear_errors(shop):
    con = ibis.duckdb.connect()
    orders = con.create_table("orders", shop["orders"].drop(columns="status"))
    with pytest.raises(SchemaError, match="status missing"):
        build_profiles({"orders": orders}, as_of=AS_OF)
    with pytest.raises(ConfigError, match="windows_days"):
        build_profiles({"customers": orders}, as_of=AS_OF, windows_days=(0,))
    with pytest.raises(ConfigError, match="ISO 8601"):
        build_profiles({"orders": orders}, as_of="first of April")


# --- no leakage -------------------------------------------------------------------------------


def after_cutoff(shop: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """``shop`` plus rows of every table dated at or after ``AS_OF``; nothing before changes."""
    rng = np.random.default_rng(0)
    known = shop["customers"].customer_id.to_numpy()[:400]
    n = len(known)
    offsets = rng.integers(0, 60 * 86_400, n)
    offsets[:50] = 0  # exactly at the cut-off is "after" too
    at = AS_OF + pd.to_timedelta(offsets, unit="s")
    order_ids = [f"late{i:05d}" for i in range(n)]
    extra = {
        "customers": pd.DataFrame(
            {
                "customer_id": [f"new{i:04d}" for i in range(30)],
                "first_seen": AS_OF + pd.to_timedelta(np.arange(30), "D"),
            }
        ),
        "orders": pd.DataFrame(
            {
                "order_id": order_ids,
                "customer_id": known,
                "ordered_at": at,
                "currency": "EUR",
                "status": "paid",
                "amount": rng.uniform(5, 500, n).round(2),
            }
        ),
        "order_lines": pd.DataFrame(
            {
                "order_id": order_ids,
                "line_no": 1,
                "product_id": shop["products"].product_id.iloc[0],
                "quantity": 3,
                "unit_price": 99.5,
                "discount": 50.0,
            }
        ),
        "events": pd.DataFrame(
            {
                "event_id": [f"late{i}" for i in range(n)],
                "customer_id": known,
                "anonymous_id": None,
                "session_id": [f"late{i}" for i in range(n)],
                "ts": at,
                "type": "product_view",
                "product_id": None,
                "dwell_ms": 60_000,
            }
        ),
        "texts": pd.DataFrame(
            {
                "text_id": [f"late{i}" for i in range(n)],
                "customer_id": known,
                "ts": at,
                "kind": "review",
                "body": "Terrible, broke at once.",
                "rating": 1,
                "product_id": None,
            }
        ),
    }
    out = dict(shop)
    for name, rows in extra.items():
        rows = rows.reindex(columns=TABLES[name].names)
        out[name] = pd.concat(
            [shop[name], rows.astype(shop[name].dtypes.to_dict())], ignore_index=True
        )
    return out


def test_data_after_the_cutoff_changes_nothing(shop, categories):
    before = build(load(connect("duckdb://"), shop), categories)
    grown = after_cutoff(shop)
    later = load(connect("duckdb://"), grown)
    assert_profiles_equal(build(later, categories), before)
    # the same rows are visible at a later cut-off: the test can fail
    moved = build(later, categories, as_of=AS_OF + timedelta(days=90))
    assert moved.frequency.sum() > before.frequency.sum()


# --- the same build on three backends -----------------------------------------------------


@pytest.mark.postgres
def test_postgres_agrees_with_duckdb(shop, categories, pg_url):
    want = build(load(connect("duckdb://"), shop), categories)
    con = load(connect(pg_url), shop)
    assert_profiles_equal(build(con, categories), want)
    first = write_profiles(con, as_of=AS_OF)
    again = write_profiles(con, as_of=AS_OF)
    assert (first.rows, first.replaced, again.rows, again.replaced) == (
        len(want),
        0,
        len(want),
        len(want),
    )
    stored = con.table("profiles").order_by("customer_id").to_pandas()
    assert_profiles_equal(stored[want.columns].reset_index(drop=True), want)


def _unavailable(why: str) -> None:
    message = f"PySpark local mode not available ({why}); pip install 'marketloop[spark]'"
    if IN_CI:
        pytest.fail(message + " — required under CI=true")
    pytest.skip(message)


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        _unavailable(str(exc))
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        _unavailable("no java on PATH and JAVA_HOME unset")
    warehouse_dir = tempfile.mkdtemp(prefix="spark-wh-")
    session = (
        SparkSession.builder.master("local[2]")
        .appName("marketloop-test-profiles")
        .config("spark.sql.warehouse.dir", warehouse_dir)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    shutil.rmtree(warehouse_dir, ignore_errors=True)


@pytest.mark.spark
@pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")  # pyspark 4.0 on pandas 3
@pytest.mark.slow
def test_pyspark_agrees_with_duckdb(shop, categories, spark):
    import pyarrow as pa

    want = build(load(connect("duckdb://"), shop), categories)
    # through Arrow: createDataFrame(pandas) turns nullable Int64 columns into all-NULL
    for name, frame in shop.items():
        arrow = pa.Table.from_pandas(frame, preserve_index=False)
        spark.createDataFrame(arrow).createOrReplaceTempView(name)
    con = ibis.pyspark.connect(spark)
    assert_profiles_equal(build(con, categories), want)


# --- the command ------------------------------------------------------------------------


def test_cli_writes_and_replaces_profiles(shop, tmp_path: Path):
    db = tmp_path / "shop.duckdb"
    con = load(connect(f"duckdb:///{db}"), shop)
    con.disconnect()
    url = f"duckdb:///{db}"
    first = marketloop("profile", "--as-of", "2025-04-01", "--warehouse", url, "--json")
    assert first.returncode == 0, first.stderr
    assert '"replaced": 0' in first.stdout
    again = marketloop("profile", "--as-of", "2025-04-01", "--warehouse", url)
    assert again.returncode == 0, again.stderr
    raw = duckdb.connect(str(db), read_only=True)
    try:
        counts = raw.sql(
            "select as_of, count(*), count(distinct customer_id) from profiles group by as_of"
        ).fetchall()
    finally:
        raw.close()
    assert counts == [(AS_OF, 1_260, 1_260)]
    bad = marketloop("profile", "--as-of", "2025-13-01", "--warehouse", url)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0
    assert "--as-of" in bad.stderr and "2025-13-01" in bad.stderr
    early = marketloop("profile", "--as-of", "2000-01-01", "--warehouse", url)
    assert early.returncode == 0 and "0 customers" in early.stdout
    assert early.stderr.startswith("WARNING: no customer is known before 2000-01-01")


@pytest.mark.parametrize("moment", ["0001-01-01", "9999-12-31", "1989-12-31T23:00:00"])
def test_an_as_of_outside_the_warehouse_range_of_times_is_refused(moment: str) -> None:
    from marketloop.data.profiles import parse_as_of
    from marketloop.exceptions import ConfigError

    with pytest.raises(ConfigError, match="expected a time in the years 1990-2100"):
        parse_as_of(moment, where="--as-of")
    assert parse_as_of("2025-04-01T00:00:00+02:00").isoformat() == "2025-03-31T22:00:00"
