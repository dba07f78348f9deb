"""Ingest of a ~10M-line order-lines CSV (1% dirty): marketloop vs DuckDB's read_csv, same file.

marketloop validates every row against the contract, quarantines bad ones with a reason,
drops repeats, finds orphans against the orders already in the warehouse and writes the
run atomically; the peer is DuckDB's own ``read_csv`` into a table (``ignore_errors`` so it
gets through the broken rows), in the same process, on the same file, into the same kind
of DuckDB file. Both figures and their ratio are printed.

Each side runs ``N_RUNS`` times, alternating, each time into a fresh copy of the warehouse
(holding the orders) or a fresh DuckDB file; the best run of each side is compared, so a
machine shared with other work skews the ratio less. The load average is printed too.

Usage: python bench/bench_ingest.py [N_CUSTOMERS] [N_RUNS] (default 1,500,000 → ~10.1M
lines, 3 runs). The simulated export is cached in $MARKETLOOP_BENCH_DIR (default
/tmp/marketloop-bench).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from marketloop.data.ingest import ingest
from marketloop.data.warehouse import connect
from marketloop.simulate import Market, write_export

TABLES = ("customers", "products", "orders", "order_lines")


def export(n_customers: int) -> Path:
    folder = (
        Path(os.environ.get("MARKETLOOP_BENCH_DIR", "/tmp/marketloop-bench"))
        / f"shop-{n_customers}"
    )
    if not (folder / "order_lines.csv").exists():
        t = time.perf_counter()
        shop = Market(n_customers=n_customers, n_days=365, random_state=0).simulate(
            TABLES, full_truth=False
        )
        write_export(shop, folder, tables=TABLES, dirty_rate=0.01, random_state=0, truth=False)
        print(f"simulated and exported in {time.perf_counter() - t:.0f}s → {folder}")
    return folder


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    n_customers = int(sys.argv[1]) if len(sys.argv) > 1 else 1_500_000
    n_runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    folder = export(n_customers)
    lines = folder / "order_lines.csv"
    print(f"load average before: {load()}")
    ours, peer = [], []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base.duckdb"
        con = connect(f"duckdb:///{base}")
        ingest([folder / "customers.csv", folder / "products.csv", folder / "orders.csv"], con=con)
        con.disconnect()
        for run in range(n_runs):
            work = Path(tmp) / "ours.duckdb"
            shutil.copyfile(base, work)
            con = connect(f"duckdb:///{work}")
            t = time.perf_counter()
            report = ingest([lines], con=con)
            ours.append(time.perf_counter() - t)
            con.disconnect()
            work.unlink()

            peer_con = duckdb.connect(f"{tmp}/peer.duckdb")
            t = time.perf_counter()
            peer_con.sql(
                f"CREATE TABLE order_lines AS SELECT * FROM read_csv('{lines}', ignore_errors=true)"
            )
            peer.append(time.perf_counter() - t)
            peer_rows = peer_con.sql("SELECT count(*) FROM order_lines").fetchone()[0]
            peer_con.close()
            Path(f"{tmp}/peer.duckdb").unlink()
            print(
                f"run {run + 1}: marketloop={ours[-1]:.2f}s duckdb_read_csv={peer[-1]:.2f}s "
                f"ratio={peer[-1] / ours[-1]:.2f}x load={load()}"
            )

    size_mb = lines.stat().st_size / 1e6
    best, best_peer = min(ours), min(peer)
    print(
        f"ingest order_lines lines={report.read:,} ({size_mb:,.0f} MB) "
        f"accepted={report.accepted:,} duplicates={report.duplicates:,} "
        f"quarantined={report.quarantined:,}"
    )
    print(
        f"best of {n_runs}: marketloop={best:.2f}s ({report.read / best:,.0f} rows/s)  "
        f"duckdb_read_csv={best_peer:.2f}s ({peer_rows:,} rows, {peer_rows / best_peer:,.0f} "
        f"rows/s)  ratio={best_peer / best:.2f}x of DuckDB's raw speed  load average after: "
        f"{load()}"
    )


if __name__ == "__main__":
    main()
