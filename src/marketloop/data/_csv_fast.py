"""A fast, exactly numbered read of plain CSV files: pyarrow's multithreaded reader.

DuckDB's CSV reader is parallel, but record numbers come from ``row_number() OVER ()``,
which serialises the scan (the ``rowid`` of a stored scan does not follow the file; see
:class:`marketloop.data._readers.Staged`). pyarrow's reader keeps the file's order and
splits the work into blocks, so numbering is a free ``arange``.

Only files whose reading is plain take this path: not compressed, two columns or more, no
quote character, no carriage return, no NUL byte, no empty line, valid UTF-8 and every
record shorter than a block. There a record is exactly a line and a field exactly the
text between delimiters, so pyarrow and DuckDB read the same values
(``tests/data/test_csv_fast.py`` checks them against each other). Everything else returns
``None`` and is read by DuckDB, as is a file with a record that has more fields than the
header and ends in a delimiter (DuckDB drops empty fields past the last column). Records
with the wrong number of fields are refused with DuckDB's reasons; their record numbers
are found by looking for their text among the file's lines.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

#: Bytes that make a file's reading depend on the dialect: the file goes to DuckDB. (An
#: empty line is found in pyarrow's result: a record whose fields are all empty.)
NOT_PLAIN = (b'"', b"\r", b"\x00")
#: A record must fit in one block; DuckDB refuses records over 4 MiB (``line_too_long``),
#: so anything near that size is left to DuckDB.
BLOCK_SIZE = (1 << 22) - (1 << 16)
#: Past this many refused records (or texts that are hard to find), DuckDB reads the file.
MAX_REFUSED = 200
_MAX_CANDIDATES = 10_000


def is_gzip(head: bytes) -> bool:
    """Whether bytes that open a file (two are enough) start a gzip stream.

    Every reader tells a compressed file by these bytes, not by its name.
    """
    return head[:2] == b"\x1f\x8b"


def read_plain_csv(
    path: Path, columns: list[str], delimiter: str
) -> tuple[pa.Table, pd.DataFrame] | None:
    """The file's fields as strings plus ``_row_no``, and its refused records; or None.

    Returns
    -------
    (pyarrow.Table, pandas.DataFrame) or None
        One string column per header field and ``_row_no`` (the 1-based record number in
        the file, header excluded); the refused records as ``row_no``, ``reason``,
        ``raw``. None when the file is not plain (see the module docstring).
    """
    data = path.read_bytes()
    if len(columns) < 2 or is_gzip(data) or any(m in data for m in NOT_PLAIN):
        return None
    start = data.find(b"\n") + 1
    if start == 0 or start == len(data):
        return None  # a header without records: DuckDB says what it makes of it
    if not data.isascii():
        try:  # checked once for the whole file: fields split at ASCII bytes stay valid
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    refused: list[tuple[str, str]] = []

    def refuse(row: pcsv.InvalidRow) -> str:
        too_many = row.actual_columns > row.expected_columns
        if not row.text or (too_many and row.text.endswith(delimiter)):
            # an empty line, or empty fields past the last column (DuckDB drops them)
            return "error"
        refused.append((row.text, "too_many_fields" if too_many else "too_few_fields"))
        return "skip" if len(refused) <= MAX_REFUSED else "error"

    try:
        table = pcsv.read_csv(
            pa.BufferReader(data),
            read_options=pcsv.ReadOptions(
                skip_rows=1, column_names=columns, block_size=BLOCK_SIZE, use_threads=True
            ),
            parse_options=pcsv.ParseOptions(
                delimiter=delimiter,
                quote_char=False,
                double_quote=False,
                escape_char=False,
                newlines_in_values=False,
                ignore_empty_lines=False,
                invalid_row_handler=refuse,
            ),
            convert_options=pcsv.ConvertOptions(
                column_types={c: pa.string() for c in columns},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                check_utf8=False,
            ),
        )
    except pa.ArrowException:
        return None  # a record over a block, too many refused records
    if _has_blank_record(table):
        return None  # an empty line (or one of delimiters only): DuckDB skips those
    n_records = table.num_rows + len(refused)
    rejects = _located(data, start, refused, n_records)
    if rejects is None:
        return None
    numbers = np.delete(
        np.arange(1, n_records + 1, dtype=np.int64), rejects["row_no"].to_numpy() - 1
    )
    return table.append_column("_row_no", pa.array(numbers)), rejects


def _has_blank_record(table: pa.Table) -> bool:
    """Whether a record has every field empty (looked for where the first one is)."""
    first_empty = pc.equal(pc.binary_length(table.column(0)), 0)
    if not pc.any(first_empty).as_py():
        return False
    rest = table.filter(first_empty)
    blank = first_empty.filter(first_empty)
    for column in rest.columns[1:]:
        blank = pc.and_(blank, pc.equal(pc.binary_length(column), 0))
    return bool(pc.any(blank).as_py())


def _located(
    data: bytes, start: int, refused: list[tuple[str, str]], n_records: int
) -> pd.DataFrame | None:
    """The refused lines with their record numbers, found by their text; None if unsure."""
    found: list[tuple[int, str, str]] = []
    last_line = data[data.rfind(b"\n", 0, len(data) - 1) + 1 :].rstrip(b"\n")
    for (text, why), times in Counter(refused).items():
        needle = text.encode("utf-8")
        if times == 1 and needle == last_line:  # a truncated last line: no need to look
            found.append((len(data), why, text))
            continue
        hits: list[int] = []
        at, candidates = start, 0
        while (i := data.find(needle, at)) >= 0:
            end = i + len(needle)
            if data[i - 1] == 10 and (end == len(data) or data[end] == 10):
                hits.append(i)
            at, candidates = i + 1, candidates + 1
            if candidates > _MAX_CANDIDATES:
                return None
        if len(hits) != times:  # every line with this text is refused alike: counts agree
            return None
        found.extend((offset, why, text) for offset in hits)
    found.sort()
    numbers, line, last = [], 0, 0
    for offset, _why, _text in found:  # the header is line 0: a line's index is its number
        if offset == len(data):
            numbers.append(n_records)
            continue
        line += data.count(b"\n", last, offset)
        numbers.append(line)
        last = offset
    return pd.DataFrame(
        {
            "row_no": pd.Series(numbers, dtype="int64"),
            "reason": [f"malformed_row:{why}" for _o, why, _t in found],
            "raw": [text for _o, _w, text in found],
        }
    )
