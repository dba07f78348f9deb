"""Read an input file into a staging table of text columns, keeping every record.

Each reader returns a :class:`Staged`: an Ibis table of the file's columns as strings plus
``_row_no`` (the 1-based record number, header excluded), and the records the reader could
not split into fields (bad encoding, wrong field count, malformed JSON) with a reason.
Together they account for every record of the file.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import uuid
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
from ibis.backends import BaseBackend

from marketloop.data._csv_fast import is_gzip, read_plain_csv
from marketloop.data._validate import plain_flags
from marketloop.exceptions import IngestError, describe

FileKind = Literal["csv", "parquet", "jsonl"]

#: DuckDB's CSV error types mapped to marketloop's quarantine reasons.
CSV_REASONS = {
    "INVALID ENCODING": "invalid_encoding",
    "INVALID UNICODE": "invalid_encoding",
    "TOO MANY COLUMNS": "malformed_row:too_many_fields",
    "MISSING COLUMNS": "malformed_row:too_few_fields",
    "UNQUOTED VALUE": "malformed_row:unquoted_value",
    "LINE SIZE OVER MAXIMUM": "malformed_row:line_too_long",
    "CAST ERROR": "malformed_row:cast",
}
#: The longest record the CSV reader accepts (DuckDB's ``max_line_size``).
MAX_RECORD_BYTES = 1 << 22


class Staged:
    """A file opened in the scratch engine.

    ``rows`` is lazy for a CSV file DuckDB reads: the file is scanned when the first
    expression built on it is materialised, and only then does :meth:`rejects` know the
    records the reader refused.

    Attributes
    ----------
    rows : ibis.Table
        The records that split into fields: one string column per header field and
        ``_row_no``, the record number. A plain CSV file is read by pyarrow (see
        :mod:`marketloop.data._csv_fast`), which numbers every record as it stands in the
        file. Other CSV files are read by DuckDB and numbered with ``row_number() OVER ()``,
        which follows the file's order but counts parsed records only (see
        :meth:`renumber`) and serialises the scan. (The ``rowid`` of the table such a scan
        is stored in does not follow the file: on a file-backed DuckDB, a parallel insert
        of a 470k-row scan stored its row groups out of file order.)
    """

    def __init__(
        self,
        scratch: BaseBackend,
        rows: ibis.Table,
        *,
        rejects_table: str | None = None,
        rejects: pd.DataFrame | None = None,
        cleanup: tuple[str, ...] = (),
        path: Path | None = None,
    ) -> None:
        self.scratch = scratch
        self._path = path
        self.rows = rows
        self._rejects_table = rejects_table
        self._rejects = rejects
        self._cleanup = list(cleanup)
        self._shift_table: ibis.Table | None = None

    def track(self, name: str) -> None:
        """Drop the scratch table ``name`` with this file's other objects on :meth:`close`."""
        self._cleanup.append(name)

    def rejects(self) -> pd.DataFrame:
        """Refused records (``row_no``, ``reason``, ``raw``); call after ``rows`` was scanned."""
        if self._rejects is None:
            errors = self.scratch.table(self._rejects_table).to_pandas()
            self._rejects = _csv_rejects(errors, self._path)
        return self._rejects

    def shifts(self) -> pd.DataFrame:
        """``(_k, _shift)``: parsed records numbered above ``_k`` lie ``_shift`` records further on.

        The largest ``_k`` below a parsed number gives its shift; none, no shift.
        """
        return _shift_frame(self.rejects()["row_no"].to_numpy())

    @property
    def counts_parsed_only(self) -> bool:
        """True when ``_row_no`` skips the refused records (DuckDB's CSV reader).

        Other readers number every record as it stands in the file.
        """
        return self._rejects_table is not None

    def renumber(self, table: ibis.Table) -> ibis.Table:
        """Map ``_row_no`` of parsed records to their record number in the file."""
        if not self.counts_parsed_only or self.rejects().empty:
            return table
        if self._shift_table is None:
            name = f"_ml_shift_{uuid.uuid4().hex[:10]}"
            self._shift_table = self.scratch.create_table(name, self.shifts(), temp=True)
            self.track(name)
        return _renumber(table, self._shift_table)

    def close(self) -> None:
        """Drop the scratch objects this file created."""
        for name in self._cleanup:
            for drop in (self.scratch.drop_view, self.scratch.drop_table):
                try:
                    drop(name, force=True)
                except Exception:  # the object is of the other kind, or already gone
                    pass


def file_kind(path: Path) -> FileKind:
    """Tell CSV, Parquet and JSON Lines apart by extension, then by the first bytes."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in (".parquet", ".pq"):
        return "parquet"
    if last in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if last in (".csv", ".tsv", ".txt"):
        return "csv"
    head = _head_bytes(path, 4)
    if head.startswith(b"PAR1"):
        return "parquet"
    return "jsonl" if head.lstrip()[:1] == b"{" else "csv"


def _open(path: Path) -> io.BufferedIOBase:
    raw = path.open("rb")
    compressed = is_gzip(raw.read(2))
    raw.seek(0)
    if compressed:
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    return raw  # type: ignore[return-value]


def _head_raw(path: Path, n: int) -> bytes:
    """The first ``n`` bytes as stored (compressed files not decompressed)."""
    with path.open("rb") as fh:
        return fh.read(n)


def _head_bytes(path: Path, n: int) -> bytes:
    try:
        with _open(path) as fh:
            return fh.read(n)
    except (OSError, EOFError) as exc:
        raise IngestError(describe(str(path), "a readable file", str(exc))) from None


def content_hash(path: Path) -> str:
    """SHA-256 of the file's bytes, as stored (compressed files are hashed compressed).

    A gzip file is also decompressed on the way (zlib, beside the scan): a truncated or
    corrupt stream raises :class:`IngestError` instead of loading the part before the damage.
    """
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        first = fh.read(1 << 22)
        inflater = zlib.decompressobj(wbits=31) if is_gzip(first) else None
        block = first
        try:
            while block:
                digest.update(block)
                if inflater is not None:
                    inflater.decompress(block, 0)
                    while inflater.eof and inflater.unused_data:  # concatenated members
                        rest = inflater.unused_data
                        inflater = zlib.decompressobj(wbits=31)
                        inflater.decompress(rest, 0)
                block = fh.read(1 << 22)
        except zlib.error as exc:
            raise IngestError(
                describe(str(path), "a valid gzip file", f"corrupt data ({exc})")
            ) from None
    if inflater is not None and not inflater.eof:
        raise IngestError(
            describe(str(path), "a complete gzip file", "a stream that ends early (truncated file)")
        )
    return digest.hexdigest()


def peek_columns(path: Path, kind: FileKind) -> list[str]:
    """The file's column names, read without loading it."""
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        if kind == "jsonl":
            return _jsonl_columns(path)
        head = _head_bytes(path, 4)
        if head[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in head:
            raise IngestError(describe(  # Excel's "Unicode text" is UTF-16
                str(path), "UTF-8 text", "UTF-16 (a byte-order mark or NUL bytes in the header)",
                "Save it as UTF-8 (in Excel: CSV UTF-8), or convert it with "
                "iconv -f UTF-16 -t UTF-8."))
        first = _first_line_text(path)
    except (OSError, EOFError, pa.ArrowException) as exc:
        raise IngestError(
            describe(str(path), f"a readable {kind.upper()} file", str(exc).splitlines()[0])
        ) from None
    if not first.strip():
        raise IngestError(describe(str(path), "a header row naming the columns", "an empty file"))
    try:
        header = next(csv.reader([first.rstrip("\r\n")], delimiter=_delimiter(first)))
    except csv.Error as exc:
        raise IngestError(
            describe(str(path), "a CSV header row", f"unreadable text ({exc})")
        ) from None
    columns = [c.strip() for c in header]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise IngestError(
            describe(str(path), "distinct column names", f"{', '.join(repeated)} repeated")
        )
    return columns


def _first_line_text(path: Path) -> str:
    with _open(path) as fh:
        return fh.readline(1 << 20).decode("utf-8-sig", errors="replace")


def _delimiter(header: str) -> str:
    try:
        return csv.Sniffer().sniff(header, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _jsonl_columns(path: Path) -> list[str]:
    """Every key of the file's objects, in the order first seen.

    All lines are read: exporters often leave out a key whose value is null, so a column
    may first appear far down the file (a probe of the first lines lost such columns).
    """
    columns: dict[str, None] = {}
    with _open(path) as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                record = json.loads(line.removeprefix(b"\xef\xbb\xbf"))
            except ValueError:
                continue
            if isinstance(record, dict):
                columns.update(dict.fromkeys(record))
    if not columns:
        raise IngestError(
            describe(
                str(path),
                "JSON Lines: one JSON object per line",
                "no JSON object on any line",
            )
        )
    return list(columns)


def stage(
    scratch: BaseBackend,
    path: Path,
    kind: FileKind,
    columns: list[str],
    *,
    kinds: Mapping[str, str] | None = None,
) -> Staged:
    """Read ``path`` into a temporary table of ``scratch`` (a DuckDB connection).

    ``kinds`` (column name → contract kind) lets a reader that holds the texts in Arrow add
    the ``_plain_<column>`` flags of :func:`marketloop.data._validate.plain_flags`.
    """
    tag = uuid.uuid4().hex[:10]
    if kind == "csv":
        return _stage_csv(scratch, path, columns, tag, kinds or {})
    if kind == "parquet":
        return _stage_parquet(scratch, path, columns, tag)
    return _stage_jsonl(scratch, path, columns, tag)


def _stage_csv(
    scratch: BaseBackend, path: Path, columns: list[str], tag: str, kinds: Mapping[str, str]
) -> Staged:
    delimiter = _delimiter(_first_line_text(path))
    plain = read_plain_csv(path, columns, delimiter)
    if plain is not None:  # numbered in the file already: nothing to renumber
        table, rejects = plain
        return Staged(scratch, ibis.memtable(plain_flags(table, kinds)), rejects=rejects)
    return _stage_csv_duckdb(scratch, path, columns, tag, delimiter)


def _stage_csv_duckdb(
    scratch: BaseBackend, path: Path, columns: list[str], tag: str, delimiter: str
) -> Staged:
    rejects_table, rejects_scan = f"_ml_rej_{tag}", f"_ml_scan_{tag}"
    try:
        # the dialect is fixed, not sniffed: a dirty file can defeat DuckDB's sniffer
        source = scratch.read_csv(
            str(path),
            table_name=f"_ml_src_{tag}",
            columns={c: "VARCHAR" for c in columns},
            delim=delimiter,
            quote='"',
            escape='"',
            header=True,
            store_rejects=True,
            rejects_table=rejects_table,
            rejects_scan=rejects_scan,
            max_line_size=MAX_RECORD_BYTES,
            # by its bytes, not its name: a gzip file named .csv is still read
            compression="gzip" if is_gzip(_head_raw(path, 2)) else "none",
        )
    except Exception as exc:  # duckdb.Error: the reader could not make sense of the file
        raise IngestError(
            describe(str(path), "a CSV file with a header row", _first_line(exc))
        ) from None
    if list(source.columns) != columns:
        scratch.drop_view(f"_ml_src_{tag}", force=True)
        raise IngestError(
            describe(str(path), f"columns {', '.join(columns)}", ", ".join(source.columns))
        )
    return Staged(
        scratch,
        source.mutate(_row_no=ibis.row_number() + 1),
        rejects_table=rejects_table,
        cleanup=(f"_ml_src_{tag}", rejects_table, rejects_scan),
        path=path,
    )


def _no_rejects() -> pd.DataFrame:
    return pd.DataFrame({"row_no": pd.Series([], dtype="int64"), "reason": [], "raw": []})


def _csv_rejects(errors: pd.DataFrame, path: Path | None = None) -> pd.DataFrame:
    if errors.empty:
        return _no_rejects()
    errors = errors.sort_values(["line", "column_idx"]).drop_duplicates("line")
    reason = errors["error_type"].map(lambda e: CSV_REASONS.get(e, "malformed_row"))
    raw = errors["csv_line"].astype("string")
    if path is not None and "line_byte_position" in errors.columns:
        lost = np.flatnonzero((reason == "invalid_encoding").to_numpy())
        if len(lost):
            raw = raw.copy()
            texts = _lines_at(path, errors["line_byte_position"].to_numpy()[lost])
            raw.iloc[lost] = texts
    return pd.DataFrame(
        {
            "row_no": errors["line"].astype("int64").to_numpy() - 1,  # header is line 1
            "reason": reason.to_numpy(),
            "raw": raw.to_numpy(),
        }
    )


def _lines_at(path: Path, positions: np.ndarray) -> list[str]:
    """The records DuckDB's reject positions point into, undecodable bytes as \\xNN.

    The reader's text of a record that is not UTF-8 has lost its bytes (``M?ller``), so
    they are read again. DuckDB's ``line_byte_position`` is one past the line's start in an
    LF file and at the line feed before it in a CRLF file: each line is taken from the first
    line break at or after two bytes before the position. One read of the file, not a seek
    per row (half a million bad rows cost seconds, not minutes).
    """
    with _open(path) as fh:
        data = fh.read()
    out = []
    for pos in positions.tolist():
        start = max(int(pos) - 2, 0)
        if start:
            start = data.find(b"\n", start) + 1
        end = _record_end(data, start)
        line = data[start : len(data) if end < 0 else end].rstrip(b"\r")
        out.append(line.decode("utf-8", "backslashreplace"))
    return out


def _record_end(data: bytes, start: int) -> int:
    """Where the CSV record at ``start`` ends: the first line feed outside quotes (or -1).

    A quoted field may hold line breaks; a record's quotes are balanced at its end (a
    doubled quote inside a field counts twice). A quote left open for longer than the
    reader's longest record (4 MiB) gives the first physical line only.
    """
    first = end = data.find(b"\n", start)
    quotes = data.count(b'"', start, end) if end >= 0 else 0
    while end >= 0 and quotes % 2:  # each stretch of the record counted once
        after = data.find(b"\n", end + 1)
        quotes += data.count(b'"', end, len(data) if after < 0 else after)
        end = after
        if end - start > MAX_RECORD_BYTES:
            return first
    return end


def _renumber(rows: ibis.Table, shifts: ibis.Table) -> ibis.Table:
    """Give parsed rows their record number in the file, counting the rejected records."""
    # rows numbered k (among good ones) move up by the number of rejects with before < k
    joined = rows.asof_join(shifts, on=rows._row_no > shifts._k)
    return joined.mutate(_row_no=joined._row_no + joined._shift.fill_null(0)).drop("_k", "_shift")


def _shift_frame(rejected: object) -> pd.DataFrame:
    import numpy as np

    rejected = np.sort(np.asarray(rejected, dtype="int64"))
    # the j-th rejected record (0-based) has rejected[j] - j - 1 parsed records before it
    before = rejected - np.arange(rejected.size) - 1
    shift = np.arange(1, rejected.size + 1, dtype="int64")
    last = np.r_[before[1:] != before[:-1], True] if rejected.size else before.astype(bool)
    return pd.DataFrame({"_k": before[last], "_shift": shift[last]})


def _stage_parquet(scratch: BaseBackend, path: Path, columns: list[str], tag: str) -> Staged:
    try:
        source = scratch.read_parquet(str(path), table_name=f"_ml_src_{tag}", file_row_number=True)
        schema = source.schema()
        text = source.select(
            *[_as_text(source[c], schema[c]).name(c) for c in columns],
            _row_no=source.file_row_number + 1,
        )
    except Exception as exc:
        raise IngestError(
            describe(str(path), "a readable Parquet file", _first_line(exc))
        ) from None
    return Staged(scratch, text, rejects=_no_rejects(), cleanup=(f"_ml_src_{tag}",))


def _as_text(column: ibis.Value, dtype: ibis.DataType) -> ibis.Value:
    """A typed Parquet column as the text the contracts parse.

    A float that holds a whole number is written without its ``.0``: pandas stores an
    integer column with a gap as float64 (``2.0``), which an integer field must accept.
    """
    if not dtype.is_floating():
        return column.cast("string")
    # no cast to an integer before the test (Ibis' round(0) is one): NaN, inf or 1e19
    # would refuse the whole file; they are the row's problem (malformed, out of range)
    whole = (column.abs() < 1e15) & ((column % 1) == 0)
    return ibis.cases((whole, column.try_cast("int64").cast("string")),
                      else_=column.cast("string"))


def _stage_jsonl(scratch: BaseBackend, path: Path, columns: list[str], tag: str) -> Staged:
    values: dict[str, list[str | None]] = {c: [] for c in columns}
    row_nos: list[int] = []
    rejects: list[tuple[int, str, str]] = []
    row_no = 0
    with _open(path) as fh:
        for raw in fh:
            if not raw.strip():
                continue  # blank lines are not records
            row_no += 1
            try:  # a byte-order mark may open the file, as in CSV
                text = raw.decode("utf-8-sig" if row_no == 1 else "utf-8")
            except UnicodeDecodeError:
                text = raw.decode("utf-8", "backslashreplace").rstrip("\n")  # \xNN kept
                rejects.append((row_no, "invalid_encoding", text))
                continue
            try:
                record = json.loads(text)
            except ValueError:
                rejects.append((row_no, "malformed_row:json", text.rstrip("\n")))
                continue
            if not isinstance(record, dict):
                rejects.append((row_no, "malformed_row:not_an_object", text.rstrip("\n")))
                continue
            row_nos.append(row_no)
            for c in columns:
                values[c].append(_json_text(record.get(c)))
    table = pa.table(
        {
            **{c: pa.array(v, pa.string()) for c, v in values.items()},
            "_row_no": pa.array(row_nos, pa.int64()),
        }
    )
    rows = scratch.create_table(f"_ml_stage_{tag}", table, temp=True)
    frame = pd.DataFrame(rejects, columns=["row_no", "reason", "raw"]).astype({"row_no": "int64"})
    return Staged(scratch, rows, rejects=frame, cleanup=(f"_ml_stage_{tag}",))


def _json_text(value: object) -> str | None:
    """A JSON value as the text a CSV field would hold: numbers in positional notation
    (``1.0`` is ``1``, ``1e-05`` is ``0.00001``), so they meet the same contracts."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value):
        return np.format_float_positional(value, trim="-")
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
