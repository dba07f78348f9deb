"""Turn canonical frames into text columns and CSV bytes, vectorised in Arrow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from marketloop.simulate._columns import COLUMNS
from marketloop.simulate._util import STR

#: Private-use character standing in for an invalid byte until the bytes are written.
BAD_BYTE_MARKER = "\ue000"
_NEEDS_QUOTES = '[",\r\n]'
_ROWS_PER_BLOCK = 1_000_000


def _money(values: np.ndarray) -> pa.Array:
    """Floats to strings with exactly two decimals (``-0.50``, ``12.00``)."""
    v = np.asarray(values, dtype=np.float64)
    missing = np.isnan(v)
    cents = np.rint(np.nan_to_num(v) * 100).astype(np.int64)
    sign = np.where(cents < 0, "-", "")
    whole = pc.cast(pa.array(np.abs(cents) // 100), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(np.abs(cents) % 100), pa.string()), 2, "0")
    text = pc.binary_join_element_wise(pa.array(sign), whole, ".", frac, "")
    return pc.if_else(pa.array(missing), pa.scalar(None, pa.string()), text)


def _timestamps(values: pd.Series) -> pa.Array:
    arr = pa.array(values.to_numpy(dtype="datetime64[s]"), type=pa.timestamp("s"))
    return pc.strftime(arr, format="%Y-%m-%dT%H:%M:%SZ")


def text_columns(name: str, frame: pd.DataFrame) -> dict[str, pa.Array]:
    """Each canonical column of ``frame`` as a string array (null = missing)."""
    out: dict[str, pa.Array] = {}
    for col, kind in COLUMNS[name]:
        s = frame[col]
        if kind in ("id", "str"):
            arr = pa.array(s if isinstance(s.dtype, pd.StringDtype) else s.astype(STR), pa.string())
        elif kind == "ts":
            arr = _timestamps(s)
        elif kind in ("money", "price"):
            arr = _money(s.to_numpy(dtype=np.float64, na_value=np.nan))
        elif kind == "bool":
            arr = pa.array(np.where(s.to_numpy(dtype=bool), "true", "false"))
        else:  # int, nullable int
            arr = pc.cast(pa.array(s.to_numpy(dtype=np.float64, na_value=np.nan)
                                   if kind == "nint" else s.to_numpy(),
                                   from_pandas=True).cast(pa.int64()), pa.string())
        out[col] = arr
    return out


def _csv_field(arr: pa.Array) -> pa.Array:
    arr = pc.fill_null(arr, "")
    needs = pc.match_substring_regex(arr, _NEEDS_QUOTES)
    if not pc.any(needs).as_py():
        return arr
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(arr, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, arr)


def csv_bytes(columns: dict[str, pa.Array]) -> bytes:
    """The CSV text of the columns: header, then one ``\\n``-terminated line per row."""
    header = (",".join(columns) + "\n").encode()
    n = len(next(iter(columns.values()))) if columns else 0
    parts = [header]
    for lo in range(0, n, _ROWS_PER_BLOCK):
        cols = [_csv_field(c.slice(lo, _ROWS_PER_BLOCK)) for c in columns.values()]
        lines = pc.binary_join_element_wise(*cols, ",")
        lines = pc.cast(pc.binary_join_element_wise(lines, "", "\n"), pa.large_string())
        if isinstance(lines, pa.ChunkedArray):
            lines = lines.combine_chunks()
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset:
                                                                     lines.offset + len(lines) + 1]
        data = lines.buffers()[2]
        parts.append(data.to_pybytes()[offsets[0]:offsets[-1]] if len(lines) else b"")
    return b"".join(parts)
