"""pyarrow's read of a plain CSV file gives what DuckDB's reader gives, record numbers too."""

from __future__ import annotations

import uuid
from pathlib import Path

import ibis
import numpy as np
import pandas as pd
from hypothesis import example, given, settings
from hypothesis import strategies as st

from marketloop.data._csv_fast import read_plain_csv
from marketloop.data._readers import _stage_csv_duckdb

COLUMNS = ["a", "b", "c"]

# field texts a shop export holds, and the ones that trip readers: spaces, tabs, '#',
# non-ASCII letters, empty fields; no quote, CR or NUL (those files go to DuckDB)
field = st.text(
    alphabet=st.sampled_from(list("xyz019 .-#\t") + ["é", "字", "ü"]), min_size=0, max_size=5
)
line = st.lists(field, min_size=1, max_size=5)


def duckdb_read(path: Path, delimiter: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """DuckDB's rows (fields as text, record numbers in the file) and refused records."""
    staged = _stage_csv_duckdb(
        ibis.duckdb.connect(), path, COLUMNS, uuid.uuid4().hex[:8], delimiter
    )
    rows = staged.rows.to_pandas()
    rejects = staged.rejects()
    total = len(rows) + len(rejects)
    kept = np.setdiff1d(np.arange(1, total + 1), rejects["row_no"].to_numpy())
    rows = rows.sort_values("_row_no").assign(_row_no=kept)  # parsed order is file order
    return rows.fillna("").reset_index(drop=True), rejects.reset_index(drop=True)


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(line, min_size=1, max_size=12),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    newline_at_end=st.booleans(),
)
@example(lines=[["1", "2", "3"], ["4", "5"]], delimiter=",", newline_at_end=False)
@example(lines=[["1", "2", "3"], [" "], ["4", "5", "6", "7"]], delimiter=",", newline_at_end=True)
@example(lines=[["1", "2", "3"], ["4", "5", "6", ""]], delimiter=";", newline_at_end=True)
@example(lines=[["4", "5"], ["1", "2", "3"], ["4", "5"]], delimiter=",", newline_at_end=False)
def test_plain_files_read_the_same_as_duckdb(
    tmp_path_factory, lines: list[list[str]], delimiter: str, newline_at_end: bool
) -> None:
    texts = [delimiter.join(fields) for fields in lines]
    body = delimiter.join(COLUMNS) + "\n" + "\n".join(texts) + ("\n" if newline_at_end else "")
    path = tmp_path_factory.mktemp("csv") / "f.csv"
    path.write_bytes(body.encode("utf-8"))
    fast = read_plain_csv(path, COLUMNS, delimiter)
    if fast is None:  # not plain (an empty line, a trailing delimiter): DuckDB reads it
        return
    rows, rejects = fast
    want_rows, want_rejects = duckdb_read(path, delimiter)
    got_rows = rows.to_pandas()
    pd.testing.assert_frame_equal(got_rows, want_rows, check_dtype=False)
    pd.testing.assert_frame_equal(
        rejects.astype({"raw": str}), want_rejects.astype({"raw": str}), check_dtype=False
    )


def test_files_that_are_not_plain_are_left_to_duckdb(tmp_path: Path) -> None:
    for body in (
        'a,b,c\n1,"2",3\n',  # a quote
        "a,b,c\r\n1,2,3\r\n",  # carriage returns
        "a,b,c\n1,2,3\n\n4,5,6\n",  # an empty line
        "a,b,c\n",  # no records
    ):
        path = tmp_path / "f.csv"
        path.write_bytes(body.encode())
        assert read_plain_csv(path, COLUMNS, ",") is None, body
    path.write_bytes(b"a,b,c\n1,\xe9,3\n")  # not UTF-8
    assert read_plain_csv(path, COLUMNS, ",") is None


def test_refused_records_keep_their_number_when_their_text_repeats(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"a,b,c\n1,2\n1,2,3\n1,2\n1,2,3,4\n")
    rows, rejects = read_plain_csv(path, COLUMNS, ",")
    assert rows.column("_row_no").to_pylist() == [2]
    assert rejects.to_dict("list") == {
        "row_no": [1, 3, 4],
        "reason": [
            "malformed_row:too_few_fields",
            "malformed_row:too_few_fields",
            "malformed_row:too_many_fields",
        ],
        "raw": ["1,2", "1,2", "1,2,3,4"],
    }
