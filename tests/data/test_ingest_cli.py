"""The ingest command as users run it: real subprocesses, exit codes, messages, SIGKILL."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from _cli import marketloop

LINES_HEADER = "order_id,line_no,product_id,quantity,unit_price,discount"
ORDERS_HEADER = "order_id,customer_id,ordered_at,currency,status,amount"


def table_counts(db: Path) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        names = {
            r[0] for r in con.sql("select table_name from information_schema.tables").fetchall()
        }
        return {t: con.sql(f'select count(*) from "{t}"').fetchone()[0] for t in sorted(names)}
    finally:
        con.close()


@pytest.fixture
def orders_csv(tmp_path: Path) -> Path:
    path = tmp_path / "orders.csv"
    rows = [f"O{i},C{i % 5},2025-02-0{1 + i % 9}T08:00:00Z,EUR,paid,{i}.99" for i in range(40)]
    path.write_text(ORDERS_HEADER + "\n" + "\n".join(rows + ["O99,C1,soon,EUR,paid,1"]) + "\n")
    return path


def test_ingest_prints_the_counts_as_json(tmp_path: Path, orders_csv: Path) -> None:
    result = marketloop(
        "ingest", str(orders_csv), "--warehouse", f"duckdb:///{tmp_path}/w.duckdb", "--json"
    )
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)
    assert {k: counts[k] for k in ("read", "accepted", "duplicates", "quarantined")} == {
        "read": 41,
        "accepted": 40,
        "duplicates": 0,
        "quarantined": 1,
    }
    assert counts["reasons"] == {"malformed:ordered_at": 1}


def test_ingest_prints_a_table_and_says_why_rows_were_quarantined(
    tmp_path: Path, orders_csv: Path
) -> None:
    result = marketloop("ingest", str(orders_csv), "--warehouse", f"duckdb:///{tmp_path}/w.duckdb")
    assert result.returncode == 0, result.stderr
    assert "orders.csv" in result.stdout
    assert "1 rows quarantined: malformed:ordered_at 1" in result.stdout


BAD_FILES = {
    "missing": (
        None,
        "missing.csv: expected an existing file or folder; found nothing at that path.",
    ),
    "empty": (b"", "empty.csv: expected a file with a header row; found an empty file."),
    "wrong columns": (
        b"a,b,c\n1,2,3\n",
        "wrong columns.csv: expected the columns of a known layout",
    ),
    "not parquet": (
        b"PAR1 this is not parquet",
        "not parquet.parquet: expected a readable PARQUET file",
    ),
    "repeated column": (
        b"order_id,order_id\n1,2\n",
        "repeated column.csv: expected distinct column names; found order_id repeated.",
    ),
    "unreadable header": (b"col\rumn,x\n1,2\n", "unreadable header.csv: expected a CSV header row"),
    "stray carriage returns": (
        ORDERS_HEADER.encode() + b"\nO1,C1,2025,EUR,paid,1\r\nO2\x00\x00,C1,2025,EUR,paid\r1\n",
        "stray carriage returns.csv: expected a readable CSV file",
    ),
    "utf16": (
        (ORDERS_HEADER + "\nO1,C1,2025-01-01,EUR,paid,1\n").encode("utf-16"),
        "utf16.csv: expected UTF-8 text; found UTF-16 (a byte-order mark or NUL bytes in the "
        "header). Save it as UTF-8",
    ),
    "truncated gzip": (
        gzip.compress(
            "\n".join(
                [ORDERS_HEADER, *(f"O{i},C{i * 7919},2025-01-01,EUR,paid,{i}" for i in range(9999))]
            ).encode()
        )[:-900],
        "truncated gzip.csv.gz: expected a complete gzip file; found a stream that ends early",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_file_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, orders_csv: Path, case: str
) -> None:
    content, message = BAD_FILES[case]
    suffix = {"not parquet": ".parquet", "truncated gzip": ".csv.gz"}.get(case, ".csv")
    bad = tmp_path / f"{case}{suffix}"
    if content is not None:
        bad.write_bytes(content)
    db = tmp_path / "w.duckdb"
    assert marketloop("ingest", str(orders_csv), "--warehouse", f"duckdb:///{db}").returncode == 0
    before = table_counts(db)
    result = marketloop("ingest", str(orders_csv), str(bad), "--warehouse", f"duckdb:///{db}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(tmp_path / message.split(":")[0]) in lines[0] or message.split(":")[0] in lines[0]
    assert message.split(": ", 1)[1].rstrip(".") in lines[0]
    assert table_counts(db) == before


def test_an_unknown_format_or_warehouse_exits_2(tmp_path: Path, orders_csv: Path) -> None:
    result = marketloop(
        "ingest",
        str(orders_csv),
        "--format",
        "shopify-x",
        "--warehouse",
        f"duckdb:///{tmp_path}/w.duckdb",
    )
    assert result.returncode == 2
    assert (
        "--format: expected auto or one of canonical, online-retail; found 'shopify-x'."
        in result.stderr
    )
    result = marketloop("ingest", str(orders_csv), "--warehouse", "mysql://nowhere/db")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "expected a URL starting with duckdb:// or postgresql://" in result.stderr


def test_init_creates_every_canonical_table(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    result = marketloop("init", "--warehouse", f"duckdb:///{db}")
    assert result.returncode == 0, result.stderr
    assert "11 tables created" in result.stdout
    assert set(table_counts(db)) >= {
        "orders",
        "order_lines",
        "quarantine",
        "ingest_runs",
        "decisions",
    }
    assert "0 tables created" in marketloop("init", "--warehouse", f"duckdb:///{db}").stdout


def test_init_refuses_a_table_whose_columns_have_other_types(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    con = duckdb.connect(str(db))
    con.sql("create table orders (order_id varchar, customer_id varchar, ordered_at varchar, "
            "currency varchar, status varchar, amount double)")  # dates as text
    con.close()
    result = marketloop("init", "--warehouse", f"duckdb:///{db}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert ("warehouse table orders: expected the contract's column types; found ordered_at "
            "is string, not timestamp; amount is float64, not decimal(18, 2)") in result.stderr


def _big_lines_file(path: Path, n_orders: int) -> None:
    con = duckdb.connect()
    con.sql(f"""
        copy (select 'O' || (i // 3) as order_id, i % 3 + 1 as line_no,
                     'P' || (i % 997) as product_id, 1 + i % 4 as quantity,
                     round((i % 5000) / 100.0, 2) as unit_price, 0.0 as discount
              from range({3 * n_orders}) t(i)) to '{path}' (header)""")
    con.sql(f"""
        copy (select 'O' || i as order_id, 'C' || (i % 1000) as customer_id,
                     timestamp '2025-01-01' + to_seconds(i) as ordered_at, 'EUR' as currency,
                     'paid' as status, 10.0 as amount
              from range({n_orders}) t(i)) to '{path.parent / "orders.csv"}' (header)""")


def test_a_run_killed_at_any_moment_leaves_all_or_nothing(tmp_path: Path) -> None:
    n_orders = 300_000
    lines = tmp_path / "order_lines.csv"
    _big_lines_file(lines, n_orders)
    files = [str(tmp_path / "orders.csv"), str(lines)]
    outcomes = []
    for i, delay in enumerate((0.5, 1.0, 1.6, 2.3, 3.2)):
        db = tmp_path / f"w{i}.duckdb"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "marketloop",
                "ingest",
                *files,
                "--warehouse",
                f"duckdb:///{db}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        finished = proc.poll() is not None
        if not finished:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if not db.exists():
            outcomes.append("none")
            continue
        counts = table_counts(db)
        whole = {"orders": n_orders, "order_lines": 3 * n_orders, "ingest_runs": 2}
        nothing = {"orders": 0, "order_lines": 0, "ingest_runs": 0}
        got = {k: counts.get(k, 0) for k in whole}
        assert got in (whole, nothing), f"killed after {delay}s: {got}"
        outcomes.append("whole" if got == whole else "none")
        # a killed run can simply be run again
        again = marketloop("ingest", *files, "--warehouse", f"duckdb:///{db}", "--json")
        assert again.returncode == 0, again.stderr
        after = {k: v for k, v in table_counts(db).items() if k in ("orders", "order_lines")}
        assert after == {"orders": n_orders, "order_lines": 3 * n_orders}
    assert "none" in outcomes, (
        "no kill landed inside a run: the file is too small to test atomicity"
    )


@pytest.mark.parametrize(("files", "words"), [
    ({"orders": "orders.csv"}, "expected the files it names beside it; found no orders.csv"),
    (["orders.csv"], "expected 'files' as a map of table to file name"),
    ({"orders": 5}, "expected 'files' as a map of table to file name"),
])
def test_a_folder_whose_manifest_is_wrong_exits_2(tmp_path: Path, files: object,
                                                 words: str) -> None:
    shop = tmp_path / "shop"
    shop.mkdir()
    (shop / "manifest.json").write_text(json.dumps({"files": files}))
    result = marketloop("ingest", str(shop), "--warehouse", f"duckdb:///{tmp_path}/w.duckdb")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert words in result.stderr


@pytest.mark.parametrize("spelling", ["duckdb://", "duckdb:///", "duckdb:///:memory:"])
def test_an_in_memory_warehouse_is_refused_because_it_would_keep_nothing(
    orders_csv: Path, spelling: str
) -> None:
    result = marketloop("ingest", str(orders_csv), "--warehouse", spelling)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "an in-memory database that would keep nothing" in result.stderr


def test_a_warehouse_url_naming_data_a_folder_or_a_missing_folder_exits_2(
    tmp_path: Path, orders_csv: Path
) -> None:
    before = orders_csv.read_bytes()
    cases = {
        f"duckdb:///{orders_csv}": "which is another kind of file",  # DuckDB would open it empty
        f"duckdb:///{tmp_path}": "found a folder",
        f"duckdb:///{tmp_path}/typo/w.duckdb": f"found no folder {tmp_path}/typo",
        f"duckdb:///{tmp_path}/new.csv": "a new file named like data",
    }
    for url, message in cases.items():
        result = marketloop("ingest", str(orders_csv), "--warehouse", url)
        assert result.returncode == 2 and "Traceback" not in result.stderr, url
        assert message in result.stderr, (url, result.stderr)
    assert orders_csv.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orders.csv"]  # nothing created


def test_a_failed_first_run_leaves_no_warehouse_file(tmp_path: Path, orders_csv: Path) -> None:
    lines = tmp_path / "order_lines.csv.gz"
    rows = "".join(f"O{i},1,P{i * 7919 % 10007},1,9.99,0\n" for i in range(4000))
    body = LINES_HEADER + "\n" + rows
    lines.write_bytes(gzip.compress(body.encode())[:-400])  # no end-of-stream marker
    db = tmp_path / "w.duckdb"
    result = marketloop("ingest", str(orders_csv), str(lines), "--warehouse", f"duckdb:///{db}")
    assert result.returncode == 2, result.stderr
    assert "a stream that ends early (truncated file)" in result.stderr
    assert not db.exists() and not Path(f"{db}.wal").exists()


def test_a_command_that_reads_the_warehouse_does_not_create_one(tmp_path: Path) -> None:
    db = tmp_path / "none.duckdb"
    result = marketloop("experiment", "analyse", "--experiment", "e1",
                        "--warehouse", f"duckdb:///{db}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "expected an existing warehouse; found no file" in result.stderr
    assert not db.exists()
    duckdb.connect(str(db)).close()  # a DuckDB file with no tables in it
    result = marketloop("experiment", "analyse", "--experiment", "e1",
                        "--warehouse", f"duckdb:///{db}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "expected tables decisions, outcomes; found decisions, outcomes missing" in result.stderr


def test_a_folder_skips_readmes_and_hidden_files(tmp_path: Path, orders_csv: Path) -> None:
    (tmp_path / "README.txt").write_text("Orders exported on Monday.\n")
    (tmp_path / ".orders.csv.swp.csv").write_text("not,a,table\n")
    (tmp_path / "~lock.orders.csv").write_text("")
    db = tmp_path / "w.duckdb"
    result = marketloop("ingest", str(tmp_path), "--warehouse", f"duckdb:///{db}", "--json")
    assert result.returncode == 0, result.stderr
    assert [Path(f["path"]).name for f in json.loads(result.stdout)["files"]] == ["orders.csv"]


def test_one_file_under_several_names_is_one_source(tmp_path: Path, orders_csv: Path) -> None:
    link = tmp_path / "latest.csv"
    link.symlink_to(orders_csv)
    db = tmp_path / "w.duckdb"
    spellings = [str(orders_csv), str(tmp_path / "." / "orders.csv"), str(link)]
    first = marketloop("ingest", *spellings, "--warehouse", f"duckdb:///{db}", "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert len(report["files"]) == 1 and report["quarantined"] == 1  # the row dated "soon"
    again = marketloop("ingest", str(link), "--warehouse", f"duckdb:///{db}", "--json")
    assert json.loads(again.stdout)["quarantined"] == 1
    counts = table_counts(db)
    assert counts["quarantine"] == 1 and counts["ingest_runs"] == 2


def test_typed_parquet_with_whole_floats_ingests(tmp_path: Path, orders_csv: Path) -> None:
    import pandas as pd

    # pandas keeps an integer column with a gap as float64: 2.0 is the integer 2
    lines = pd.DataFrame({"order_id": ["O1", "O2", "O3", "O4"], "line_no": [1, 1, 1, 1],
                          "product_id": ["P1", "P2", "P3", "P4"],
                          "quantity": [2.0, float("nan"), 2.5, 3.0],
                          "unit_price": [9.99, 5.0, 1.0, 10.0], "discount": [0.0] * 4})
    lines.to_parquet(tmp_path / "order_lines.parquet")
    db = tmp_path / "w.duckdb"
    result = marketloop("ingest", str(orders_csv), str(tmp_path / "order_lines.parquet"),
                        "--warehouse", f"duckdb:///{db}", "--json")
    assert result.returncode == 0, result.stderr
    (lines_report,) = [f for f in json.loads(result.stdout)["files"]
                       if f["table"] == "order_lines"]
    assert lines_report["accepted"] == 2 and lines_report["quarantined"] == 2
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.sql("select order_id, quantity from order_lines order by 1").fetchall() == [
            ("O1", 2), ("O4", 3)]
        assert sorted(r[0] for r in con.sql("select reason from quarantine").fetchall()) == [
            "malformed:ordered_at", "malformed:quantity", "missing:quantity"]
    finally:
        con.close()


def test_online_retail_as_the_spreadsheet_copies_write_it(tmp_path: Path) -> None:
    path = tmp_path / "Online Retail.csv"
    path.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "536365,85123A,WHITE HANGING HEART,6,12/1/2010 8:26,2.55,17850.0,United Kingdom\n"
        "536365,71053,WHITE METAL LANTERN,6,12/1/2010 8:26,3.39,17850,United Kingdom\n"
        "536366,22633,HAND WARMER,6,2010-12-01 08:28:00,1.85,17850,United Kingdom\n"
        "536367,84879,BIRD ORNAMENT,32,13/45/2010 8:34,1.69,13047.0,United Kingdom\n"
        "536368,84880,ROBIN,1,12/1/2010 18:34:59,1.69,,United Kingdom\n")
    db = tmp_path / "w.duckdb"
    result = marketloop("ingest", str(path), "--warehouse", f"duckdb:///{db}", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["reasons"] == {"malformed:InvoiceDate": 1} and report["accepted"] == 4
    con = duckdb.connect(str(db), read_only=True)
    try:
        orders = con.sql("select order_id, customer_id, strftime(ordered_at, '%Y-%m-%d %H:%M:%S')"
                         " from orders order by 1").fetchall()
        raw = con.sql("select raw from quarantine").fetchone()[0]
        customers = con.sql("select customer_id from customers").fetchall()
    finally:
        con.close()
    assert orders == [("536365", "17850", "2010-12-01 08:26:00"),
                      ("536366", "17850", "2010-12-01 08:28:00"),
                      ("536368", None, "2010-12-01 18:34:59")]
    assert customers == [("17850",)]  # 17850.0 is the same customer
    assert json.loads(raw)["InvoiceDate"] == "13/45/2010 8:34"  # kept as written


RETAIL_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"


def _write_retail(path: Path, rows: list[str]) -> None:
    path.write_text("\n".join([RETAIL_HEADER, *rows]) + "\n")


def _fetch(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.sql(sql).fetchall()
    finally:
        con.close()


def test_online_retail_stock_codes_become_ids_or_are_quarantined(tmp_path: Path) -> None:
    """A padded code is the same product; a code that cannot be an id is quarantined, as a
    canonical products file's would be; BANK CHARGES is BANK_CHARGES."""
    path = tmp_path / "retail.csv"
    rows = ["536365,85123A,HEART,6,2010-12-01 08:26,2.55,17850,United Kingdom",
            "536366,  85123A ,HEART,1,2010-12-01 09:00,2.55,17850,United Kingdom",
            "536367,#123,HASH,1,2010-12-01 09:10,1.00,17850,United Kingdom",
            "536368,ABC$,DOLLAR,1,2010-12-01 09:20,1.00,17850,United Kingdom",
            "536369,BANK CHARGES,Bank Charges,1,2010-12-01 09:30,15.00,17850,United Kingdom"]
    _write_retail(path, rows)
    db = tmp_path / "w.duckdb"
    result = marketloop("ingest", str(path), "--warehouse", f"duckdb:///{db}", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["reasons"] == {"malformed:StockCode": 2} and report["accepted"] == 3
    products = _fetch(db, "select product_id, category from products order by 1")
    assert products == [("85123A", "merchandise"), ("BANK_CHARGES", "fee")]


def test_online_retail_in_monthly_files_builds_the_warehouse_one_file_does(
        tmp_path: Path) -> None:
    """A customer and a product seen in both months keep their first day (and the
    customer the country of it); a product the second month only refunds keeps its price
    and name."""
    december = ["536365,85123A,HEART,6,2010-12-01 08:26,2.55,17850,United Kingdom",
                "536365,71053,LANTERN,2,2010-12-01 08:26,3.39,17850,United Kingdom",
                "536366,71053,LANTERN,1,2010-12-05 10:00,3.39,12345,France"]
    january = ["536401,85123A,HEART,1,2011-01-04 09:00,2.95,17850,EIRE",
               "C536402,71053,,1,2011-01-05 09:00,3.39,12345,France",
               "536403,22633,WARMER,3,2011-01-06 09:00,1.85,17850,EIRE"]
    _write_retail(tmp_path / "dec.csv", december)
    _write_retail(tmp_path / "jan.csv", january)
    _write_retail(tmp_path / "all.csv", december + january)
    tables = {}
    for name, files in (("one", ["all.csv"]), ("two", ["dec.csv", "jan.csv"]),
                        ("runs", ["dec.csv"])):
        db = tmp_path / f"{name}.duckdb"
        result = marketloop("ingest", *(str(tmp_path / f) for f in files), "--warehouse",
                            f"duckdb:///{db}")
        assert result.returncode == 0 and "WARNING" not in result.stderr, result.stderr
        if name == "runs":  # the second month in a later run
            later = marketloop("ingest", str(tmp_path / "jan.csv"), "--warehouse",
                               f"duckdb:///{db}")
            assert later.returncode == 0, later.stderr
        tables[name] = {t: _fetch(db, f"select * from {t} order by all")
                        for t in ("customers", "products", "orders", "order_lines")}
    assert tables["two"] == tables["one"] and tables["runs"] == tables["one"]
    customers = {r[0]: r for r in tables["one"]["customers"]}
    assert str(customers["17850"][1]) == "2010-12-01 08:26:00" and customers["17850"][2] == (
        "United Kingdom")
    lantern = next(r for r in tables["one"]["products"] if r[0] == "71053")
    assert lantern[2] == "LANTERN" and float(lantern[3]) == 3.39


def test_an_invoice_split_across_files_is_warned_about(tmp_path: Path) -> None:
    first = "536365,85123A,HEART,6,2010-12-01 08:26,2.55,17850,United Kingdom"
    second = "536365,71053,LANTERN,6,2010-12-01 08:26,3.39,17850,United Kingdom"
    _write_retail(tmp_path / "part1.csv", [first])
    _write_retail(tmp_path / "part2.csv", [second])
    result = marketloop("ingest", str(tmp_path / "part1.csv"), str(tmp_path / "part2.csv"),
                        "--warehouse", f"duckdb:///{tmp_path}/w.duckdb")
    assert result.returncode == 0, result.stderr
    assert ("part2.csv: 1 line replaced stored lines of the same invoice and line number "
            "with other content. If the files split an invoice") in result.stderr


def _pg_tables(pg_url: str) -> dict[str, int]:
    """Row counts of the tables in the test schema (temporary tables are not in it)."""
    import psycopg

    schema = pg_url.split("search_path%3D")[1]
    with psycopg.connect(pg_url.split("?")[0]) as con:
        names = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,)).fetchall()]
        return {n: con.execute(f'SELECT count(*) FROM "{schema}"."{n}"').fetchone()[0]
                for n in names}


def test_two_ingests_at_once_into_postgresql_store_each_row_once(tmp_path: Path,
                                                                 pg_url: str) -> None:
    """Both runs compare with the warehouse before either writes; the advisory lock makes
    the second wait for the first's commit, so it finds every row a duplicate. (Without it,
    this export was stored twice: 1,506 orders for 753 ids.)"""
    shop = tmp_path / "shop"
    made = marketloop("simulate", "--out", str(shop), "--customers", "300", "--days", "60",
                      "--seed", "3", "--dirty-rate", "0.05")
    assert made.returncode == 0, made.stderr
    assert marketloop("init", "--warehouse", pg_url).returncode == 0
    procs = [subprocess.Popen([sys.executable, "-m", "marketloop", "ingest", str(shop),
                               "--warehouse", pg_url, "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    reports = sorted((json.loads(out) for out, _ in outs), key=lambda r: r["accepted"])
    assert reports[0]["accepted"] == 0 and reports[1]["accepted"] > 0
    import psycopg

    schema = pg_url.split("search_path%3D")[1]
    with psycopg.connect(pg_url.split("?")[0]) as con:
        for table, key in (("orders", "order_id"), ("customers", "customer_id"),
                           ("order_lines", "order_id, line_no")):
            n, distinct = con.execute(f'SELECT count(*), count(DISTINCT ({key})) FROM '
                                      f'"{schema}".{table}').fetchone()
            assert n == distinct > 0, (table, n, distinct)


def test_a_run_killed_on_postgresql_leaves_no_staging_tables(tmp_path: Path,
                                                             pg_url: str) -> None:
    _big_lines_file(tmp_path / "order_lines.csv", 100_000)
    files = [str(tmp_path / "orders.csv"), str(tmp_path / "order_lines.csv")]
    assert marketloop("init", "--warehouse", pg_url).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "marketloop", "ingest", *files,
                             "--warehouse", pg_url], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(4.0)  # reading, staging and writing 400,000 rows takes longer
    assert proc.poll() is None, "the run ended before the kill: make the file larger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while True:  # the server ends the killed client's session once it sees the socket close
        counts = _pg_tables(pg_url)
        if not [n for n in counts if n.startswith("_ml_")] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [n for n in counts if n.startswith("_ml_")] == [], counts
    assert counts["orders"] in (0, 100_000) and counts["order_lines"] in (0, 300_000)


def test_parquet_with_nan_inf_or_huge_floats_quarantines_those_rows(tmp_path: Path) -> None:
    """One NaN (as pyarrow writes it, not a null), inf or 1e19 in a float column is a bad
    row, not a file that cannot be read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    amounts = [10.0, float("nan"), float("inf"), 1e19, 12.5]
    pq.write_table(pa.table({
        "order_id": [f"O{i}" for i in range(5)], "customer_id": ["C1"] * 5,
        "ordered_at": ["2025-01-01T08:00:00Z"] * 5, "currency": ["EUR"] * 5,
        "status": ["paid"] * 5, "amount": pa.array(amounts, pa.float64())}),
        tmp_path / "orders.parquet")
    result = marketloop("ingest", str(tmp_path / "orders.parquet"), "--warehouse",
                        f"duckdb:///{tmp_path}/w.duckdb", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["read"], report["accepted"], report["quarantined"]) == (5, 2, 3)
    assert set(report["reasons"]) <= {"malformed:amount", "out_of_range:amount"}


def test_a_gzip_file_named_csv_is_read_by_its_bytes(tmp_path: Path, orders_csv: Path) -> None:
    disguised = tmp_path / "export.csv"  # a download that kept the wrong name
    disguised.write_bytes(gzip.compress(orders_csv.read_bytes()))
    result = marketloop("ingest", str(disguised), "--warehouse",
                        f"duckdb:///{tmp_path}/w.duckdb", "--json")
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)
    assert (counts["read"], counts["accepted"], counts["quarantined"]) == (41, 40, 1)


def test_a_postgresql_schema_that_does_not_exist_is_named(pg_server_url: str) -> None:
    url = f"{pg_server_url}?options=-csearch_path%3Dno_such_schema_here"
    for args in (["init"], ["ingest", "nothing.csv"]):
        result = marketloop(*args, "--warehouse", url)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert ("expected a schema 'no_such_schema_here' in database 'test'; found no such "
                'schema. Create it first: CREATE SCHEMA "no_such_schema_here"') in result.stderr


def test_a_first_run_that_fails_on_postgresql_leaves_no_tables(tmp_path: Path,
                                                              pg_url: str) -> None:
    """As a fresh DuckDB file is removed: the canonical tables the run created are dropped
    while empty; tables that were there before stay."""
    bad = tmp_path / "orders.csv.gz"
    bad.write_bytes(BAD_FILES["truncated gzip"][0])
    failed = marketloop("ingest", str(bad), "--warehouse", pg_url)
    assert failed.returncode == 2 and "truncated file" in failed.stderr, failed.stderr
    assert _pg_tables(pg_url) == {}
    assert marketloop("init", "--warehouse", pg_url).returncode == 0
    assert marketloop("ingest", str(bad), "--warehouse", pg_url).returncode == 2
    assert len(_pg_tables(pg_url)) == 11  # made by init, not by the failed run
