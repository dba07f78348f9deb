"""Ingest of the simulator's export, judged by the simulator's own list of broken rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from marketloop.data.ingest import ingest
from marketloop.data.schema import DATA_TABLES
from marketloop.data.warehouse import connect
from marketloop.simulate import Market, write_export

#: The reason (or reason prefix) ingest must give each kind of broken row.
EXPECTED_REASON = {
    "missing_id": "missing:",
    "malformed_id": "malformed:",
    "bad_date": "malformed:",
    "bad_enum": "not_allowed:",
    "unknown_currency": "not_allowed:currency",
    "absurd_quantity": "out_of_range:quantity",
    "negative_quantity": "out_of_range:quantity",
    "negative_price": "out_of_range:",
    "orphan_line": "orphan:order_id",
    "bad_encoding": "invalid_encoding",
    "truncated_last_line": "malformed_row:too_few_fields",
    "parent_order_broken": "orphan:order_id",
}


@pytest.fixture(scope="module")
def shop():
    return Market(n_customers=3_000, n_days=120, random_state=11).simulate()


@pytest.fixture(scope="module")
def dirty_run(shop, tmp_path_factory):
    out = tmp_path_factory.mktemp("dirty")
    export = write_export(shop, out / "shop", dirty_rate=0.03, random_state=3)
    con = connect("duckdb://")
    report = ingest([out / "shop"], con=con)
    return export, report, con, out / "shop"


def test_every_broken_row_is_quarantined_with_the_right_reason(dirty_run) -> None:
    export, report, con, folder = dirty_run
    sources = {Path(f.path).name: f.source for f in report.files}
    quarantine = con.table("quarantine").to_pandas()
    got = {
        (s, int(r)): reason
        for s, r, reason in zip(
            quarantine.source, quarantine.row_no, quarantine.reason, strict=True
        )
    }

    cascade = pd.read_csv(folder / "truth" / "dirty_cascade.csv").rename(columns={"reason": "kind"})
    broken = pd.concat(
        [export.dirty_rows[["file", "row_no", "kind"]], cascade[["file", "row_no", "kind"]]]
    )
    broken = broken[broken.kind != "duplicate_row"]
    want = {(sources[f], int(r)): kind for f, r, kind in broken.itertuples(index=False)}

    assert set(got) == set(want), "quarantined rows differ from the rows the simulator broke"
    wrong = {k: (want[k], got[k]) for k in want if not got[k].startswith(EXPECTED_REASON[want[k]])}
    assert not wrong


def test_duplicated_rows_are_counted_as_duplicates(dirty_run) -> None:
    export, report, _con, _folder = dirty_run
    planted = export.dirty_rows[export.dirty_rows.kind == "duplicate_row"].groupby("file").size()
    for f in report.files:
        assert f.duplicates == planted.get(Path(f.path).name, 0), f.path
        assert f.read == f.accepted + f.duplicates + f.quarantined
        assert f.read == export.rows[f.table]


def test_a_clean_export_round_trips_into_the_warehouse(shop, tmp_path: Path) -> None:
    write_export(shop, tmp_path / "shop", dirty_rate=0.0)
    con = connect("duckdb://")
    report = ingest([tmp_path / "shop"], con=con)
    assert report.quarantined == 0 and report.duplicates == 0
    for contract in DATA_TABLES:
        got = con.table(contract.name).order_by(list(contract.key)).to_pandas()
        want = getattr(shop, contract.name).sort_values(list(contract.key)).reset_index(drop=True)
        assert len(got) == len(want), contract.name
        for column in contract.names:
            a, b = got[column], want[column]
            if contract.column(column).kind in ("money", "price", "float", "int"):
                np.testing.assert_allclose(
                    pd.to_numeric(a).astype(float),
                    pd.to_numeric(b).astype(float),
                    atol=0.005,
                    err_msg=column,
                )
            elif contract.column(column).kind == "timestamp":
                diff = (pd.to_datetime(a) - pd.to_datetime(b)).abs().max()
                assert pd.isna(diff) or diff < pd.Timedelta(seconds=1), column
            else:
                norm = lambda s: s.astype("string").fillna("").str.lower().tolist()  # noqa: E731
                assert norm(a) == norm(b), f"{contract.name}.{column}"


def test_row_numbers_follow_the_file_on_a_large_parallel_scan(tmp_path: Path) -> None:
    """A year of events (~470k rows) into a file-backed warehouse keeps every record number.

    Regression: numbering rows by the stored table's rowid gave wrong numbers for this file
    (a parallel insert stored row groups out of file order); in-memory warehouses hid it.
    """
    shop = Market(n_customers=20_000, n_days=365, random_state=7).simulate(("customers", "events"))
    export = write_export(
        shop, tmp_path / "shop", dirty_rate=0.01, random_state=7, tables=("events",), truth=False
    )
    con = connect(f"duckdb:///{tmp_path}/w.duckdb")
    ingest([export.files["events"]], con=con)
    got = set(con.table("quarantine").row_no.to_pandas())
    dirty = export.dirty_rows
    assert got == set(dirty.row_no[dirty.kind != "duplicate_row"])
