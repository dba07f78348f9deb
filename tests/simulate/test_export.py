"""The export matches the canonical schema; dirty mode breaks exactly the rows it lists."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime

import pandas as pd
import pytest

from marketloop.data.schema import CURRENCIES, ID_PATTERN, TABLES
from marketloop.simulate import TABLES as SIM_TABLES
from marketloop.simulate import Market, write_export
from marketloop.simulate._columns import COLUMNS

ID = re.compile(ID_PATTERN)
RATE = 0.08


def test_frames_and_column_kinds_match_the_schema(shop) -> None:
    for name in SIM_TABLES:
        contract = TABLES[name]
        assert list(getattr(shop, name).columns) == contract.names, name
        assert [c for c, _ in COLUMNS[name]] == contract.names, name
    assert shop.orders["ordered_at"].dtype == "datetime64[s]"
    assert shop.order_lines["quantity"].dtype == "int64"
    assert str(shop.events["dwell_ms"].dtype) == "Int64"
    assert shop.consents["granted"].dtype == bool
    assert (shop.orders["amount"] == shop.orders["amount"].round(2)).all()


def test_order_lines_add_up_to_the_order_amount(shop) -> None:
    lines = shop.order_lines
    net = (lines["quantity"] * lines["unit_price"] - lines["discount"]).groupby(
        lines["order_id"]).sum()
    amount = shop.orders.set_index("order_id")["amount"].reindex(net.index)
    assert (net - amount).abs().max() < 0.005
    assert (lines["discount"] >= 0).all()


def _parse_ts(value: str) -> bool:
    try:
        datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return False
    return True


def _field_ok(contract, col: str, value: str) -> bool:
    spec = contract.column(col)
    if value == "":
        return not spec.required
    if spec.kind == "id":
        return bool(ID.fullmatch(value))
    if spec.kind == "timestamp":
        return _parse_ts(value)
    if spec.allowed is not None:
        return value.lower() in {a.lower() for a in spec.allowed}
    if spec.kind in ("money", "price", "int"):
        v = float(value)
        return (spec.low is None or v >= spec.low) and (spec.high is None or v <= spec.high)
    return True


@pytest.fixture(scope="module")
def dirty_dir(tmp_path_factory):
    shop = Market(n_customers=1_500, n_days=120, random_state=8).simulate()
    out = tmp_path_factory.mktemp("dirty")
    write_export(shop, out, dirty_rate=RATE, random_state=1)
    return out


def test_clean_export_layout(shop, tmp_path) -> None:
    result = write_export(shop, tmp_path, random_state=0)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["format"] == "marketloop-sim" and manifest["version"] == 1
    assert manifest["files"]["orders"] == "orders.csv"
    for name in SIM_TABLES:
        data = (tmp_path / f"{name}.csv").read_bytes()
        header, *rows = data.decode("utf-8").splitlines()
        assert header == ",".join(TABLES[name].names)
        assert len(rows) == len(getattr(shop, name)) == result.rows[name]
    assert (tmp_path / "truth" / "customers.parquet").exists()
    assert len(pd.read_csv(tmp_path / "truth" / "dirty_rows.csv")) == 0
    first = (tmp_path / "orders.csv").read_text().splitlines()[1].split(",")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first[2])
    assert re.fullmatch(r"-?\d+\.\d\d", first[5])


def _records(path) -> tuple[list[str], list[bytes], bool]:
    data = path.read_bytes()
    lines = data.split(b"\n")
    ends_clean = data.endswith(b"\n")
    if ends_clean:
        lines = lines[:-1]
    return lines[0].decode().split(","), lines[1:], ends_clean


def _fields(record: bytes) -> list[str]:
    return next(csv.reader(io.StringIO(record.decode("utf-8", errors="surrogateescape"))))


def test_every_listed_row_is_broken_and_the_rest_clean(dirty_dir) -> None:
    listed = pd.read_csv(dirty_dir / "truth" / "dirty_rows.csv", keep_default_na=False)
    order_ids = {_fields(r)[0] for r in _records(dirty_dir / "orders.csv")[1]}
    cascade = set(pd.read_csv(dirty_dir / "truth" / "dirty_cascade.csv")["row_no"])
    for name in SIM_TABLES:
        contract = TABLES[name]
        header, records, ends_clean = _records(dirty_dir / f"{name}.csv")
        assert not ends_clean
        mine = listed[listed["file"] == f"{name}.csv"].set_index("row_no")
        assert mine.index.is_unique
        n_bad = int((mine["kind"] != "truncated_last_line").sum())
        # round(RATE * n) rows are broken among n originals + the duplicates they add
        assert RATE / (1 + RATE) * len(records) - 2 <= n_bad <= RATE * len(records) + 1
        for i, record in enumerate(records, start=1):
            if i in mine.index:
                kind, col = mine.loc[i, "kind"], mine.loc[i, "column"]
                assert _broken(kind, col, record, records[i - 2], header, contract,
                               order_ids), (name, i, kind, record)
            else:
                record.decode("utf-8")
                f = _fields(record)
                assert len(f) == len(header), (name, i, record)
                bad = [c for c, v in zip(header, f, strict=True)
                       if not _field_ok(contract, c, v)]
                assert not bad, (name, i, bad, record)
                if name == "order_lines":  # valid parent, unless listed as cascading
                    assert f[0] in order_ids or i in cascade, (i, record)


def _broken(kind, col, record, previous, header, contract, order_ids) -> bool:
    if kind == "bad_encoding":
        try:
            record.decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False
    if kind == "duplicate_row":
        return record == previous
    f = _fields(record)
    if kind == "truncated_last_line":
        return len(f) < len(header)
    value = f[header.index(col)]
    if kind == "missing_id":
        return value == ""
    if kind == "malformed_id":
        return value != "" and not ID.fullmatch(value)
    if kind == "bad_date":
        return not _parse_ts(value)
    if kind == "negative_quantity":
        return int(value) < 0
    if kind == "absurd_quantity":
        return int(value) > contract.column("quantity").high
    if kind == "negative_price":
        return float(value) < 0
    if kind == "unknown_currency":
        return value not in CURRENCIES
    if kind == "bad_enum":
        return value.lower() not in {a.lower() for a in contract.column(col).allowed}
    if kind == "orphan_line":
        return bool(ID.fullmatch(value)) and value not in order_ids
    raise AssertionError(kind)


def test_dirty_parquet_lists_no_encoding_or_truncation(shop, tmp_path) -> None:
    result = write_export(shop, tmp_path, format="parquet", dirty_rate=0.1, random_state=0,
                          truth=False)
    kinds = set(result.dirty_rows["kind"])
    assert "bad_encoding" not in kinds and "truncated_last_line" not in kinds
    orders = pd.read_parquet(tmp_path / "orders.parquet")
    assert list(orders.columns) == TABLES["orders"].names
    assert len(orders) == result.rows["orders"]
