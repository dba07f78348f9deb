"""The UCI Online Retail file through the real CLI, checked against an independent pandas count.

The expected figures are computed here from the raw file with plain pandas, applying the
mapping rules documented in docs/ingest.md ("Online Retail mapping") without any marketloop
code, and are also stated literally (``EXPECTED``) so a change in either shows up.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.external

FILE = Path("online_retail") / "online_retail.csv.gz"

# Measured once with the pandas count below (`independent` fixture) on online_retail.csv.gz
# (SHA-256 0d6f2c5b983b...); 541,909 rows is the published size of the data set.
EXPECTED = {
    "read": 541_909,
    "accepted": 535_297,
    "duplicates": 5_268,
    "quarantined": 1_344,
    "orders": 24_556,
    "customers": 4_370,
    "lines": 535_297,
    "products": 3_955,
}
# Same source: the first broken rule of each quarantined row.
EXPECTED_REASONS = {
    "negative_quantity:not_a_credit_note": 1_336,
    "out_of_range:Quantity": 5,
    "out_of_range:UnitPrice": 2,
    "not_a_sale:adjustment_invoice": 1,
}
# Same source: accepted invoices per order status.
EXPECTED_STATUS = {"paid": 20_722, "returned": 3_834}

#: The documented categories of non-merchandise stock codes (spaces already replaced by "_").
SPECIAL_CATEGORIES = {
    "POST": "postage",
    "DOT": "postage",
    "C2": "postage",
    "M": "manual",
    "m": "manual",
    "D": "discount",
    "S": "samples",
    "B": "adjustment",
    "BANK_CHARGES": "fee",
    "AMAZONFEE": "fee",
    "CRUK": "fee",
    "PADS": "fee",
}


@dataclass
class Independent:
    """What the documented rules give, counted with pandas alone."""

    raw: pd.DataFrame  # every row, text columns, stripped, empty -> NaN; index = row_no - 1
    reason: pd.Series  # first broken rule per row, "" for a valid row
    duplicate: pd.Series  # valid rows repeating an earlier valid row exactly
    accepted: pd.DataFrame

    def counts(self) -> dict[str, int]:
        acc = self.accepted
        return {
            "read": len(self.raw),
            "accepted": len(acc),
            "duplicates": int(self.duplicate.sum()),
            "quarantined": int((self.reason != "").sum()),
            "orders": acc.InvoiceNo.nunique(),
            "customers": acc.CustomerID.nunique(),
            "lines": len(acc),
            "products": acc.StockCode.str.replace(" ", "_").nunique(),
        }


@dataclass
class Snapshot:
    report: dict
    tables: dict[str, int]


@dataclass
class Runs:
    first: Snapshot
    second: Snapshot
    db: Path


@pytest.fixture(scope="module")
def retail_path(shared_data: Path) -> Path:
    path = shared_data / FILE
    if not path.is_file():
        pytest.skip(f"{path} not found under MARKETLOOP_DATA")
    return path


@pytest.fixture(scope="module")
def independent(retail_path: Path) -> Independent:
    raw = pd.read_csv(retail_path, dtype=str, keep_default_na=False)
    raw = raw.apply(lambda s: s.str.strip()).replace("", np.nan)
    quantity = pd.to_numeric(raw.Quantity, errors="raise")  # every field well formed
    price = pd.to_numeric(raw.UnitPrice, errors="raise")
    pd.to_datetime(raw.InvoiceDate, format="%Y-%m-%d %H:%M:%S")  # raises on a bad date
    invoice = raw.InvoiceNo
    credit = invoice.str.startswith("C")
    # In the order the rules are checked (contract columns first, then the layout's rules),
    # so each quarantined row carries its first broken rule.
    rules = [
        (quantity.abs() > 10_000, "out_of_range:Quantity"),
        (price < 0, "out_of_range:UnitPrice"),
        (invoice.str.startswith("A"), "not_a_sale:adjustment_invoice"),
        (quantity == 0, "out_of_range:Quantity"),
        (~credit & (quantity < 0), "negative_quantity:not_a_credit_note"),
        (credit & (quantity > 0), "positive_quantity:credit_note"),
    ]
    reason = pd.Series(
        np.select([c for c, _ in rules], [r for _, r in rules], default=""), index=raw.index
    )
    valid = raw[reason == ""]
    duplicate = valid.duplicated(keep="first")  # NaN equals NaN: an exact repeat of the row
    return Independent(raw, reason, duplicate, valid[~duplicate])


def _ingest(path: Path, db: Path) -> dict:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "marketloop",
            "ingest",
            str(path),
            "--format",
            "online-retail",
            "--warehouse",
            f"duckdb:///{db}",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _table_counts(db: Path) -> dict[str, int]:
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        return {
            name: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for name, table in [
                ("orders", "orders"),
                ("lines", "order_lines"),
                ("customers", "customers"),
                ("products", "products"),
                ("quarantined", "quarantine"),
            ]
        }


@pytest.fixture(scope="module")
def runs(retail_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    db = tmp_path_factory.mktemp("online_retail") / "w.duckdb"
    first = Snapshot(_ingest(retail_path, db), _table_counts(db))
    second = Snapshot(_ingest(retail_path, db), _table_counts(db))
    return Runs(first, second, db)


def _query(db: Path, sql: str) -> pd.DataFrame:
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).df()


def test_every_row_is_accounted_for(runs: Runs) -> None:
    report = runs.first.report
    assert report["read"] == report["accepted"] + report["duplicates"] + report["quarantined"]
    assert report["read"] == 541_909  # the published size of the data set
    assert report["replaced"] == 0
    assert set(report) >= {
        "run_id",
        "read",
        "accepted",
        "duplicates",
        "quarantined",
        "replaced",
        "reasons",
        "files",
    }


def test_independent_count_gives_the_stated_figures(independent: Independent) -> None:
    assert independent.counts() == EXPECTED
    quarantined = independent.reason[independent.reason != ""]
    assert quarantined.value_counts().to_dict() == EXPECTED_REASONS


def test_reported_counts_match_the_independent_count(runs: Runs) -> None:
    report = runs.first.report
    got = {k: report[k] for k in ("read", "accepted", "duplicates", "quarantined")}
    assert got == {k: EXPECTED[k] for k in got}
    assert report["reasons"] == EXPECTED_REASONS


def test_warehouse_tables_hold_the_expected_rows(runs: Runs) -> None:
    assert runs.first.tables == {
        k: EXPECTED[k] for k in ("orders", "lines", "customers", "products", "quarantined")
    }


def test_quarantine_holds_each_refused_row_under_its_record_number(
    runs: Runs, independent: Independent, retail_path: Path
) -> None:
    digest = hashlib.sha256(retail_path.read_bytes()).hexdigest()
    got = _query(runs.db, "SELECT source, row_no, reason FROM quarantine")
    assert set(got.source) == {f"{retail_path.name}#{digest[:12]}"}
    refused = independent.reason[independent.reason != ""]
    expected = dict(zip((refused.index + 1).tolist(), refused.tolist(), strict=True))
    assert dict(zip(got.row_no.tolist(), got.reason.tolist(), strict=True)) == expected


def test_order_amounts_match_the_sum_of_accepted_lines(
    runs: Runs, independent: Independent
) -> None:
    acc = independent.accepted
    net = pd.to_numeric(acc.Quantity) * pd.to_numeric(acc.UnitPrice)
    credit = acc.InvoiceNo.str.startswith("C")
    expected = {"paid": net[~credit].sum(), "returned": net[credit].sum()}
    got = _query(
        runs.db, "SELECT status, count(*) AS n, sum(amount) AS amount FROM orders GROUP BY status"
    ).set_index("status")
    assert got.n.to_dict() == EXPECTED_STATUS
    assert expected["paid"] > 0 > expected["returned"]
    for status, amount in expected.items():
        # each order's amount is rounded to the penny: at most 0.005 off per order
        assert float(got.amount[status]) == pytest.approx(amount, abs=0.01 * got.n[status]), status


def test_products_get_the_documented_categories(runs: Runs, independent: Independent) -> None:
    codes = independent.accepted.StockCode.str.replace(" ", "_").drop_duplicates()
    expected = {
        code: SPECIAL_CATEGORIES.get(
            code, "gift_voucher" if code.lower().startswith("gift_") else "merchandise"
        )
        for code in codes
    }
    got = _query(runs.db, "SELECT product_id, category FROM products")
    assert dict(zip(got.product_id, got.category, strict=True)) == expected


def test_customers_and_products_take_first_region_last_name_last_sale_price(
    runs: Runs, independent: Independent
) -> None:
    acc = independent.accepted
    acc = acc.assign(product_id=acc.StockCode.str.replace(" ", "_"))
    known = acc[acc.CustomerID.notna()]
    region = known.groupby("CustomerID").Country.first()  # file order: the first row's country
    got = _query(runs.db, "SELECT customer_id, region FROM customers").set_index("customer_id")
    assert got.region.sort_index().to_dict() == region.sort_index().to_dict()

    name = acc.groupby("product_id").Description.last()  # last non-empty description
    price = pd.to_numeric(acc.UnitPrice)
    sale = acc[~acc.InvoiceNo.str.startswith("C") & (price > 0)]
    last_price = pd.to_numeric(sale.groupby("product_id").UnitPrice.last())
    got = _query(runs.db, "SELECT product_id, name, price FROM products").set_index("product_id")
    assert got.name.dropna().sort_index().to_dict() == name.dropna().sort_index().to_dict()
    expected_price = last_price.reindex(got.index).fillna(0.0)
    assert np.allclose(got.price.astype(float), expected_price, atol=1e-9)


def test_reingesting_the_same_file_adds_nothing(runs: Runs) -> None:
    report = runs.second.report
    assert report["read"] == EXPECTED["read"]
    assert report["accepted"] == 0
    assert report["replaced"] == 0
    assert report["duplicates"] + report["quarantined"] == report["read"]
    assert report["quarantined"] == runs.first.report["quarantined"]
    assert runs.second.tables == runs.first.tables
