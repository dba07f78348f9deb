"""Ingest loses nothing: every row is added, a duplicate, or quarantined with its reason."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import duckdb
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from marketloop.data.ingest import ingest
from marketloop.data.warehouse import connect

ORDERS_HEADER = "order_id,customer_id,ordered_at,currency,status,amount"
LINES_HEADER = "order_id,line_no,product_id,quantity,unit_price,discount"


def write(path: Path, header: str, rows: list[str], *, gz: bool = False) -> Path:
    data = (header + "\n" + "".join(r + "\n" for r in rows)).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def orders_rows(n: int) -> list[str]:
    return [
        f"O{i},C{i % 7},2025-01-{1 + i % 28:02d}T10:00:00Z,EUR,paid,{10 + i}.50" for i in range(n)
    ]


def count(con, table: str) -> int:
    return int(con.table(table).count().execute())


# -- the kinds of broken line, each with the reason ingest must give ----------------------

GOOD = "O{o},{n},P{p},{q},{price},0.00"
BROKEN = {
    "missing_id": ("O{o},{n},,{q},{price},0.00", "missing:product_id"),
    "malformed_id": ("O{o},{n},P {p},{q},{price},0.00", "malformed:product_id"),
    "negative_quantity": ("O{o},{n},P{p},-3,{price},0.00", "out_of_range:quantity"),
    "absurd_quantity": ("O{o},{n},P{p},1000000,{price},0.00", "out_of_range:quantity"),
    "text_quantity": ("O{o},{n},P{p},two,{price},0.00", "malformed:quantity"),
    "negative_price": ("O{o},{n},P{p},{q},-1.00,0.00", "out_of_range:unit_price"),
    "too_many_fields": ("O{o},{n},P{p},{q},{price},0.00,extra", "malformed_row:too_many_fields"),
    "too_few_fields": ("O{o},{n},P{p},{q}", "malformed_row:too_few_fields"),
    "orphan": ("NOPE{o},{n},P{p},{q},{price},0.00", "orphan:order_id"),
}

line_kind = st.sampled_from(["good"] * 4 + ["duplicate"] + sorted(BROKEN))


@settings(max_examples=30)
@given(kinds=st.lists(line_kind, min_size=1, max_size=40), seed=st.integers(0, 10_000))
def test_counts_add_up_and_every_broken_line_has_its_reason(tmp_path_factory, kinds, seed) -> None:
    tmp = tmp_path_factory.mktemp("h")
    rows, expected = [], []
    for n, kind in enumerate(kinds, start=1):
        fields = {"o": (seed + n) % 20, "n": n, "p": n % 9, "q": 1 + n % 4, "price": f"{n % 50}.25"}
        if kind == "duplicate" and rows:
            # an exact repeat of a row that keeps the contract is a duplicate (even of an
            # orphan: repeats are set aside before parents are looked up); a repeat of a
            # broken row is quarantined again for the same reason
            rows.append(rows[-1])
            kept = ("good", "duplicate", "orphan:order_id")
            expected.append("duplicate" if expected[-1] in kept else expected[-1])
            continue
        if kind in ("good", "duplicate"):
            rows.append(GOOD.format(**fields))
            expected.append("good")
        else:
            template, reason = BROKEN[kind]
            rows.append(template.format(**fields))
            expected.append(reason)
    con = connect("duckdb://")
    ingest([write(tmp / "orders.csv", ORDERS_HEADER, orders_rows(20))], con=con)
    report = ingest([write(tmp / "order_lines.csv", LINES_HEADER, rows)], con=con)

    assert report.read == len(rows) == report.accepted + report.duplicates + report.quarantined
    assert report.accepted == expected.count("good")
    assert report.duplicates == expected.count("duplicate")
    want_reasons = pd.Series([e for e in expected if e not in ("good", "duplicate")]).value_counts()
    assert report.reasons == want_reasons.to_dict()
    # every quarantined row is stored with its reason at its record number
    q = con.table("quarantine").filter(lambda t: t.table_name == "order_lines").to_pandas()
    stored = dict(zip(q.row_no, q.reason, strict=True))
    want = {i + 1: e for i, e in enumerate(expected) if e not in ("good", "duplicate")}
    assert stored == want
    # no accepted row breaks a contract
    lines = con.table("order_lines").to_pandas()
    assert lines.quantity.between(1, 10_000).all() and (lines.unit_price >= 0).all()
    assert lines.product_id.str.fullmatch(r"P\d").all()


def test_reingesting_the_same_file_adds_nothing(tmp_path: Path) -> None:
    con = connect(f"duckdb:///{tmp_path}/w.duckdb")
    orders = write(tmp_path / "orders.csv", ORDERS_HEADER, [*orders_rows(50), "bad,,,,,"])
    first = ingest([orders], con=con)
    second = ingest([orders], con=con)
    assert (first.accepted, first.quarantined) == (50, 1)
    assert (second.accepted, second.duplicates, second.quarantined) == (0, 50, 1)
    assert count(con, "orders") == 50
    assert count(con, "quarantine") == 1
    assert count(con, "ingest_runs") == 2


def test_a_corrected_file_replaces_the_changed_rows(tmp_path: Path) -> None:
    con = connect("duckdb://")
    rows = orders_rows(10)
    ingest([write(tmp_path / "orders.csv", ORDERS_HEADER, rows)], con=con)
    rows[3] = rows[3].replace(",paid,", ",cancelled,")
    report = ingest([write(tmp_path / "orders.csv", ORDERS_HEADER, rows)], con=con)
    assert (report.accepted, report.replaced, report.duplicates) == (1, 1, 9)
    status = con.table("orders").filter(lambda t: t.order_id == "O3").status.execute()
    assert status.tolist() == ["cancelled"]
    assert count(con, "orders") == 10


def test_a_key_repeated_with_other_content_is_a_conflict(tmp_path: Path) -> None:
    con = connect("duckdb://")
    rows = orders_rows(3) + [orders_rows(3)[1].replace("EUR", "USD")]
    report = ingest([write(tmp_path / "orders.csv", ORDERS_HEADER, rows)], con=con)
    assert report.reasons == {"conflicting_duplicate:order_id": 1}
    assert report.accepted == 3


def test_gzip_parquet_and_jsonl_give_the_same_warehouse(tmp_path: Path) -> None:
    rows = orders_rows(30)
    csv_path = write(tmp_path / "orders.csv.gz", ORDERS_HEADER, rows, gz=True)
    frame = pd.read_csv(csv_path, dtype=str)
    frame.to_parquet(tmp_path / "orders.parquet")
    with (tmp_path / "orders.jsonl").open("w") as fh:
        for record in frame.to_dict("records"):
            fh.write(json.dumps(record) + "\n")
        fh.write("{not json\n")
    tables = []
    for name in ("orders.csv.gz", "orders.parquet", "orders.jsonl"):
        con = connect("duckdb://")
        report = ingest([tmp_path / name], con=con)
        assert report.accepted == 30
        tables.append(con.table("orders").order_by("order_id").to_pandas())
    assert report.reasons == {"malformed_row:json": 1}
    pd.testing.assert_frame_equal(tables[0], tables[1])
    pd.testing.assert_frame_equal(tables[0], tables[2])


def test_timestamps_with_offsets_are_stored_in_utc(tmp_path: Path) -> None:
    con = connect("duckdb://")
    rows = ["O1,C1,2025-03-01T12:00:00+02:00,EUR,paid,1.00", "O2,C1,2025-03-01 12:00:00,eur,PAID,2"]
    ingest([write(tmp_path / "orders.csv", ORDERS_HEADER, rows)], con=con)
    got = con.table("orders").order_by("order_id").to_pandas()
    assert got.ordered_at.dt.hour.tolist() == [10, 12]
    assert got.currency.tolist() == ["EUR", "EUR"] and got.status.tolist() == ["paid", "paid"]


def test_postgres_and_duckdb_build_the_same_warehouse(tmp_path: Path, pg_url: str) -> None:
    lines = [GOOD.format(o=i % 20, n=i, p=i % 9, q=1 + i % 3, price="2.50") for i in range(1, 60)]
    lines += [BROKEN["orphan"][0].format(o=1, n=99, p=1, q=1, price="1"), lines[0], "x,y"]
    files = [
        write(tmp_path / "orders.csv", ORDERS_HEADER, orders_rows(20) + ["O5,C1,never,EUR,paid,1"]),
        write(tmp_path / "order_lines.csv", LINES_HEADER, lines),
    ]
    results = {}
    for name, url in (("duckdb", "duckdb://"), ("postgres", pg_url)):
        con = connect(url)
        report = ingest(files, con=con)
        again = ingest(files, con=con)
        assert again.accepted == 0
        results[name] = (
            report.to_dict()["reasons"],
            {t: con.table(t).to_pandas() for t in ("orders", "order_lines", "quarantine")},
        )
    assert results["duckdb"][0] == results["postgres"][0]
    for table, frame in results["duckdb"][1].items():
        other = results["postgres"][1][table]
        cols = [c for c in frame.columns if c != "run_id"]
        key = cols[:2]
        a = frame[cols].sort_values(key).reset_index(drop=True)
        b = other[cols].sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(a.astype(str), b.astype(str), obj=table)


def test_files_load_parents_first_whatever_the_order_given(tmp_path: Path) -> None:
    con = connect("duckdb://")
    lines = write(tmp_path / "order_lines.csv", LINES_HEADER, ["O1,1,P1,1,1.00,0"])
    orders = write(tmp_path / "orders.csv", ORDERS_HEADER, orders_rows(2))
    report = ingest([lines, orders], con=con)
    assert report.quarantined == 0 and report.accepted == 3


def test_row_numbers_count_records_the_reader_refused(tmp_path: Path) -> None:
    rows = orders_rows(6)
    rows[1] = rows[1] + ",extra"  # record 2: refused by the reader
    rows[2] = rows[2] + ",extra"  # record 3: refused by the reader
    rows[4] = rows[4].replace("EUR", "XXX")  # record 5: refused by the contract
    con = connect("duckdb://")
    ingest([write(tmp_path / "orders.csv", ORDERS_HEADER, rows)], con=con)
    q = con.table("quarantine").order_by("row_no").to_pandas()
    assert q.row_no.tolist() == [2, 3, 5]
    assert q.reason.tolist()[-1] == "not_allowed:currency"


def test_json_lines_as_exporters_write_them(tmp_path: Path) -> None:
    """A key first seen far down the file (null keys left out), a byte-order mark, and
    numbers as JSON numbers (2.0, 1e-04): read as a CSV of the same values would be."""
    con = connect("duckdb://")
    ingest([write(tmp_path / "orders.csv", ORDERS_HEADER, orders_rows(300))], con=con)
    lines = []
    for i in range(300):
        line = {"order_id": f"O{i}", "line_no": 1.0, "product_id": "P1", "quantity": 2.0,
                "unit_price": 1e-04 if i == 0 else 12.5}
        if i >= 250:  # the first 250 have no discount at all
            line["discount"] = 0.5
        lines.append(json.dumps(line))
    path = tmp_path / "order_lines.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    report = ingest([path], con=con)
    assert (report.read, report.accepted, report.quarantined) == (300, 300, 0), report.reasons
    got = con.table("order_lines").to_pandas()
    assert int((got["discount"].astype(float) == 0.5).sum()) == 50
    assert got["quantity"].eq(2).all() and got["line_no"].eq(1).all()
    assert float(got.loc[got.order_id == "O0", "unit_price"].iloc[0]) == 0.0001


def test_orphan_row_numbers_in_json_lines_are_not_moved_by_refused_lines(tmp_path: Path) -> None:
    # JSON Lines records carry their number from the reader; the CSV reader's shift past
    # refused records must not apply to them (an orphan after a bad line kept its number)
    con = connect("duckdb://")
    ingest([write(tmp_path / "orders.csv", ORDERS_HEADER, orders_rows(1))], con=con)
    line = {"order_id": "O0", "line_no": "1", "product_id": "P1", "quantity": "1"}
    lines = tmp_path / "order_lines.jsonl"
    lines.write_text(
        "{not json\n"
        + json.dumps({**line, "unit_price": "1.00"})
        + "\n"
        + json.dumps({**line, "order_id": "NOPE", "unit_price": "1.00"})
        + "\n"
    )
    ingest([lines], con=con)
    q = con.table("quarantine").order_by("row_no").to_pandas()
    assert list(zip(q.row_no, q.reason, strict=True)) == [
        (1, "malformed_row:json"),
        (3, "orphan:order_id"),
    ]


def test_a_run_leaves_the_insertion_order_setting_as_it_found_it(tmp_path: Path) -> None:
    # publishing writes unordered (faster); the session's own setting must come back
    con = connect("duckdb://")
    ingest([write(tmp_path / "orders.csv", ORDERS_HEADER, orders_rows(3))], con=con)
    setting = "SELECT current_setting('preserve_insertion_order')"
    assert con.con.execute(setting).fetchone()[0] is True


def test_a_run_reads_on_malloc_and_gives_arrow_its_allocator_back(tmp_path, monkeypatch) -> None:
    import pyarrow as pa

    from marketloop.data import _readers

    before = pa.default_memory_pool().backend_name
    seen = []
    read = _readers.read_plain_csv

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen.append(pa.default_memory_pool().backend_name)
        return read(*args, **kwargs)

    monkeypatch.setattr(_readers, "read_plain_csv", spy)
    con = connect("duckdb://")
    report = ingest([write(tmp_path / "orders.csv", ORDERS_HEADER, orders_rows(3))], con=con)
    assert report.accepted == 3
    assert seen == ["system"]
    assert pa.default_memory_pool().backend_name == before


def test_bad_encoding_is_quarantined_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_bytes(
        (ORDERS_HEADER + "\nO1,C1,2025-01-01,EUR,paid,1\nO2,C\xe9,2025-01-01,EUR,paid,1\n").encode(
            "latin-1"
        )
    )
    con = connect("duckdb://")
    report = ingest([path], con=con)
    assert (report.accepted, report.reasons) == (1, {"invalid_encoding": 1})
    # the raw row keeps the byte it could not read, escaped, not a replacement character
    assert con.table("quarantine").to_pandas()["raw"].tolist() == [
        "O2,C\\xe9,2025-01-01,EUR,paid,1"]
    crlf = tmp_path / "windows.csv"  # an Excel export: cp1252 with CRLF line ends
    crlf.write_bytes((ORDERS_HEADER + "\r\nO3,C1,2025-01-01,EUR,paid,1\r\nO4,M\xfcller,"
                      "2025-01-01,EUR,paid,1\r\nO5,C1,2025-01-01,EUR,paid,1\r\nO6,\xe9,"
                      "2025-01-01,EUR,paid,1\r\n").encode("cp1252"))
    ingest([crlf], con=con)
    q = con.table("quarantine")
    assert q.filter(q.source.startswith("windows.csv")).order_by("row_no").to_pandas()[
        "raw"].tolist() == ["O4,M\\xfcller,2025-01-01,EUR,paid,1", "O6,\\xe9,2025-01-01,EUR,paid,1"]
    quoted = tmp_path / "quoted.csv"  # a quoted field across lines: the whole record is kept
    quoted.write_bytes((ORDERS_HEADER + '\r\nO7,"C\xe9\r\nsecond ""line""",2025-01-01,EUR,paid,1'
                        '\r\nO8,C1,2025-01-01,EUR,paid,1\r\n').encode("latin-1"))
    assert ingest([quoted], con=con).reasons == {"invalid_encoding": 1}
    assert q.filter(q.source.startswith("quoted.csv")).to_pandas()["raw"].tolist() == [
        'O7,"C\\xe9\r\nsecond ""line""",2025-01-01,EUR,paid,1']
    lines = tmp_path / "order_lines.jsonl"  # the same in JSON Lines
    lines.write_bytes(b'{"order_id": "O1", "line_no": 1, "product_id": "P1", "quantity": 1, '
                      b'"unit_price": 1}\n{"order_id": "O1", "line_no": 2, "product_id": '
                      b'"P\xe9", "quantity": 1, "unit_price": 1}\n')
    ingest([lines], con=con)
    q = con.table("quarantine")
    raw = q.filter((q.row_no == 2) & (q.table_name == "order_lines")).to_pandas()["raw"]
    assert raw.tolist() == ['{"order_id": "O1", "line_no": 2, "product_id": "P\\xe9", '
                            '"quantity": 1, "unit_price": 1}']


def test_ingest_runs_record_the_counts(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    con = connect(f"duckdb:///{path}")
    ingest([write(tmp_path / "orders.csv", ORDERS_HEADER, [*orders_rows(4), "O1,,,,,"])], con=con)
    con.disconnect()
    runs = (
        duckdb.connect(str(path))
        .sql("select n_read, n_accepted, n_duplicates, n_quarantined from ingest_runs")
        .fetchall()
    )
    assert runs == [(5, 4, 0, 1)]


def test_repeats_stay_exact_when_every_key_hashes_alike(tmp_path: Path, monkeypatch) -> None:
    """Repeats are found by a hash of the key, then grouped on the key: collisions are harmless."""
    import ibis

    import marketloop.data.ingest as ingest_module

    rows = orders_rows(6)
    rows += [rows[1], rows[4].replace("EUR", "USD"), rows[1], rows[5]]
    path = write(tmp_path / "orders.csv", ORDERS_HEADER, rows)

    def run() -> tuple[object, ...]:
        con = connect("duckdb://")
        report = ingest([path], con=con)
        q = con.table("quarantine").to_pandas()
        return (
            report.accepted,
            report.duplicates,
            report.reasons,
            sorted(zip(q.row_no, q.reason, strict=True)),
            sorted(con.table("orders").order_id.execute()),
        )

    honest = run()
    monkeypatch.setattr(ingest_module, "_key_hash", lambda table, key: ibis.literal(7, "int64"))
    assert run() == honest
    assert honest[:3] == (6, 3, {"conflicting_duplicate:order_id": 1})


@given(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=300),
       st.lists(st.integers(min_value=-3, max_value=3), max_size=50))
def test_repeated_values_are_those_that_occur_twice_or_more(spread: list[int],
                                                             near_zero: list[int]) -> None:
    import numpy as np

    from marketloop.data.ingest import _repeated_values

    values = np.array(spread + near_zero + spread[: len(spread) // 3], dtype=np.int64)
    unique, counts = np.unique(values, return_counts=True)
    assert _repeated_values(values).tolist() == unique[counts > 1].tolist()


@given(st.lists(st.lists(st.text(alphabet='ab,"\n\r', max_size=6), min_size=1, max_size=3),
                min_size=1, max_size=6), st.booleans())
def test_a_record_ends_at_the_first_line_feed_outside_quotes(records: list[list[str]],
                                                             crlf: bool) -> None:
    import csv
    import io

    from marketloop.data._readers import _record_end

    ends, buffer = [], io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n" if crlf else "\n",
                        quoting=csv.QUOTE_MINIMAL)
    starts = []
    for record in records:
        starts.append(len(buffer.getvalue().encode()))
        writer.writerow(record)
        ends.append(len(buffer.getvalue().encode()) - 1)  # the record's own line feed
    data = buffer.getvalue().encode()
    assert [_record_end(data, start) for start in starts] == ends
