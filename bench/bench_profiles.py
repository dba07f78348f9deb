"""Profile build for 1M customers / ~10M order lines: DuckDB vs PySpark local mode, same data.

The shop is synthetic, generated with DuckDB SQL inside this bench (deterministic hashes,
not the simulator: simulating 1M customers with events takes minutes and is not what is
measured): 1M customers, 4M orders (94% paid, 3% returned, 3% cancelled), ~10M order lines
over 1,000 products in 12 categories, 3M web events and 100k texts, spread over 2022-01 to
2025-06; ``as_of`` is 2025-04-01. The same tables go to Parquet, which PySpark reads.

Both sides run the same :func:`build_profiles` expression (windows 30/90/365 days, 12
category shares) and materialise it as a table (``create_table(name, expr)``); the first
Spark query also pays for JIT warm-up, so Spark is timed twice and the best is kept.

Usage: python bench/bench_profiles.py [N_CUSTOMERS] (default 1,000,000; lines = 10x).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import ibis

from marketloop.data.profiles import build_profiles

AS_OF = "2025-04-01"
START = "TIMESTAMP '2022-01-01'"
SPAN_S = 1_277 * 86_400  # 2022-01-01 .. 2025-07-01
CATEGORIES = ("apparel", "beauty", "books", "electronics", "food", "garden", "home",
              "kitchen", "pets", "shoes", "sports", "toys")  # fmt: skip


def generate(con: duckdb.DuckDBPyConnection, n: int) -> None:
    """The six canonical source tables, sized from ``n`` customers."""
    cats = "[" + ", ".join(f"'{c}'" for c in CATEGORIES) + "]"
    n_orders, n_events, n_texts = 4 * n, 3 * n, n // 10
    con.execute(f"""
    CREATE TABLE customers AS SELECT printf('c%08d', i) AS customer_id,
        {START} + to_seconds((hash(i, 1) % {SPAN_S})::BIGINT) AS first_seen
    FROM range({n}) t(i);
    CREATE TABLE products AS SELECT printf('p%05d', i) AS product_id,
        {cats}[1 + i % 12] AS category
    FROM range(1000) t(i);
    CREATE TABLE orders AS SELECT printf('o%09d', i) AS order_id,
        printf('c%08d', hash(i, 2) % {n}) AS customer_id,
        {START} + to_seconds((hash(i, 3) % {SPAN_S})::BIGINT) AS ordered_at,
        CASE WHEN hash(i, 4) % 100 < 94 THEN 'paid'
             WHEN hash(i, 4) % 100 < 97 THEN 'returned' ELSE 'cancelled' END AS status,
        ((hash(i, 5) % 40000) / 100 + 5)::DECIMAL(18, 2) AS amount
    FROM range({n_orders}) t(i);
    CREATE TABLE order_lines AS SELECT printf('o%09d', j // 4) AS order_id,
        (j % 4 + 1)::BIGINT AS line_no, printf('p%05d', hash(j, 6) % 1000) AS product_id,
        (1 + hash(j, 7) % 3)::BIGINT AS quantity,
        ((hash(j, 8) % 20000) / 100 + 1)::DECIMAL(18, 4) AS unit_price,
        ((hash(j, 9) % 500) / 100)::DECIMAL(18, 2) AS discount
    FROM range({4 * n_orders}) t(j) WHERE j % 4 < 1 + hash(j // 4, 10) % 4;
    CREATE TABLE events AS SELECT printf('c%08d', hash(j // 5, 11) % {n}) AS customer_id,
        printf('s%09d', j // 5) AS session_id,
        TIMESTAMP '2024-01-01' + to_seconds((hash(j // 5, 12) % (548 * 86400) + j % 5 * 30)
                                            ::BIGINT) AS ts,
        ['page_view', 'product_view', 'add_to_cart', 'checkout', 'purchase'][1 + j % 5] AS type,
        CASE WHEN j % 5 = 1 THEN (hash(j, 13) % 120000)::BIGINT END AS dwell_ms
    FROM range({n_events}) t(j);
    CREATE TABLE texts AS SELECT printf('c%08d', hash(i, 14) % {n}) AS customer_id,
        {START} + to_seconds((hash(i, 15) % {SPAN_S})::BIGINT) AS ts,
        CASE WHEN i % 5 = 0 THEN 'support' ELSE 'review' END AS kind,
        ['Love it, great purchase.', 'Poor quality, it broke.', 'Does the job.'][1 + i % 3]
            AS body,
        CASE WHEN i % 5 <> 0 THEN (1 + hash(i, 16) % 5)::BIGINT END AS rating
    FROM range({n_texts}) t(i);
    """)


def best_of(n: int, fn: object) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    tmp = Path(tempfile.mkdtemp(prefix="bench-profiles-"))
    try:
        con = ibis.duckdb.connect()
        con.raw_sql("SET TimeZone = 'UTC'")
        con.raw_sql("SET enable_progress_bar = false")
        t = time.perf_counter()
        generate(con.con, n)
        sizes = {name: con.table(name).count().execute() for name in con.list_tables()}
        print(f"generated in {time.perf_counter() - t:.1f}s: "
              + ", ".join(f"{k} {v:,}" for k, v in sorted(sizes.items())))
        for name in sizes:
            con.con.execute(f"COPY {name} TO '{tmp}/{name}.parquet' (FORMAT parquet)")

        def duck() -> None:
            expr = build_profiles(con, as_of=AS_OF, categories=CATEGORIES)
            con.create_table("profiles", expr, overwrite=True)

        ours = best_of(3, duck)
        check = con.table("profiles").aggregate(
            n=lambda t: t.count(), f=lambda t: t.frequency.sum(), m=lambda t: t.monetary.sum()
        ).execute()
        print(f"duckdb  build_profiles → profiles table: {ours:.2f}s (best of 3) "
              f"{check.to_dict('records')[0]}")
        spark_time, spark_check = run_spark(tmp, list(sizes))
        print(f"pyspark build_profiles → profiles table: {spark_time:.2f}s (best of 2) "
              f"{spark_check}")
        print(f"profiles n_customers={n:,} n_lines={sizes['order_lines']:,} "
              f"duckdb={ours:.2f}s pyspark={spark_time:.2f}s "
              f"duckdb_speedup={spark_time / ours:.1f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_spark(folder: Path, names: list[str]) -> tuple[float, dict[str, object]]:
    from pyspark.sql import SparkSession

    t = time.perf_counter()
    spark = (
        SparkSession.builder.master("local[*]")
        .appName("bench-profiles")
        .config("spark.sql.warehouse.dir", str(folder / "spark-warehouse"))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", "8g")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    print(f"pyspark session started in {time.perf_counter() - t:.1f}s")
    for name in names:
        spark.read.parquet(str(folder / f"{name}.parquet")).createOrReplaceTempView(name)
    con = ibis.pyspark.connect(spark)

    def build() -> None:
        expr = build_profiles(con, as_of=AS_OF, categories=CATEGORIES)
        con.create_table("profiles", expr, overwrite=True)

    try:
        took = best_of(2, build)
        p = con.table("profiles")
        check = p.aggregate(n=p.count(), f=p.frequency.sum(), m=p.monetary.sum()).execute()
        return took, check.to_dict("records")[0]
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
