"""``write_export``: the files a shop would export (optionally dirty), a manifest and the truth."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from marketloop.simulate._dirty import corrupt
from marketloop.simulate._format import BAD_BYTE_MARKER, csv_bytes, text_columns
from marketloop.simulate._market import TABLES, Shop
from marketloop.simulate._truth import write_truth

_BAD_BYTE = b"\xe9"


@dataclass(frozen=True)
class Export:
    """What :func:`write_export` wrote: file per table, data records per file, dirty rows."""

    out_dir: Path
    files: dict[str, Path]
    rows: dict[str, int]
    dirty_rows: pd.DataFrame


def _truncate(data: bytes) -> tuple[bytes, int]:
    """Cut the last record inside its third field; no trailing newline. Returns cut column."""
    body_end = len(data) - 1  # the final "\n"
    start = data.rfind(b"\n", 0, body_end) + 1
    record = data[start:body_end]
    first = record.find(b",")
    second = record.find(b",", first + 1)
    cut = min(second + 4, len(record) - 1)
    return data[: start + cut], 2


def _cascade(cols: dict[str, pa.Array], rec: pd.DataFrame, broken: set[str],
             file: str) -> pd.DataFrame:
    """Clean order lines whose order row is broken (ingest will find no valid parent)."""
    ids = np.asarray(cols["order_id"].to_pylist(), dtype=object)
    hit = np.flatnonzero(pd.Series(ids).isin(broken).to_numpy()) + 1
    hit = np.setdiff1d(hit, rec["row"].to_numpy())
    return pd.DataFrame({"file": file, "row_no": hit, "reason": "parent_order_broken"})


def write_export(
    shop: Shop,
    out_dir: str | Path,
    *,
    format: Literal["csv", "parquet"] = "csv",
    dirty_rate: float = 0.0,
    random_state: int | None = None,
    tables: Sequence[str] | None = None,
    truth: bool = True,
) -> Export:
    """Write one file per table, ``manifest.json`` and ``truth/``.

    Parameters
    ----------
    shop : Shop
        A simulated shop.
    out_dir : str or Path
        Folder to write (created).
    format : {"csv", "parquet"}, default="csv"
        CSV: header of canonical names, ISO 8601 UTC timestamps (``...Z``), money with 2
        decimals, ``true``/``false``, empty for missing. Parquet: the same text values in
        string columns when dirty, typed columns when clean.
    dirty_rate : float, default=0.0
        Share in [0, 0.5] of each file's rows to break (see docs/simulator.md).
    random_state : int or None, default=None
        Seed of the dirty draws.
    tables : sequence of str, optional
        Tables to write; default all seven.
    truth : bool, default=True
        Also write ``truth/`` (parquet) — never inside the export files.

    Returns
    -------
    Export
        Paths, records per file, and the dirty rows (also in ``truth/dirty_rows.csv``).
    """
    if format not in ("csv", "parquet"):
        raise ValueError(f"write_export format: expected 'csv' or 'parquet'; found {format!r}.")
    if isinstance(dirty_rate, bool) or not isinstance(dirty_rate, (int, float, np.number)) \
            or not 0.0 <= dirty_rate <= 0.5:
        raise ValueError(f"write_export dirty_rate: expected a number in [0, 0.5]; "
                         f"found {dirty_rate!r}.")
    unknown = sorted(set(TABLES if tables is None else tables) - set(TABLES))
    if unknown or isinstance(tables, str):
        raise ValueError(f"write_export tables: expected a list of any of {TABLES}; "
                         f"found {tables!r}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(random_state)
    files, rows, dirty = {}, {}, []
    broken_orders: set[str] = set()
    cascade = pd.DataFrame(columns=["file", "row_no", "reason"])
    for name in TABLES if tables is None else tables:
        frame = getattr(shop, name)
        path = out / f"{name}.{format}"
        dirty_now = dirty_rate > 0 and len(frame) > 1
        if format == "parquet" and not dirty_now:
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
            files[name], rows[name] = path, len(frame)
            continue
        cols = text_columns(name, frame)
        rec = None
        if dirty_now:
            original_key = cols[next(iter(cols))]
            cols, rec = corrupt(name, cols, dirty_rate, rng, parquet=format == "parquet")
            if name == "orders":
                own = rec.loc[rec["kind"] != "duplicate_row", "orig"].to_numpy()
                broken_orders = set(original_key.take(pa.array(own)).to_pylist())
            elif name == "order_lines" and broken_orders:
                cascade = _cascade(cols, rec, broken_orders, f"order_lines.{format}")
        n_rows = len(next(iter(cols.values())))
        if format == "parquet":
            pq.write_table(pa.table(cols), path)
        else:
            data = csv_bytes(cols)
            if dirty_now:
                data = data.replace(BAD_BYTE_MARKER.encode(), _BAD_BYTE)
                data, cut_col = _truncate(data)
                last = pd.DataFrame({"row": [n_rows], "kind": ["truncated_last_line"],
                                     "column": [list(cols)[cut_col]]})
                rec = pd.concat([rec, last], ignore_index=True)
                if name == "orders":  # the cut order is lost too: its lines become orphans
                    broken_orders.add(cols["order_id"][n_rows - 1].as_py())
                elif name == "order_lines":  # the cut line is broken itself, not an orphan
                    cascade = cascade[cascade["row_no"] != n_rows]
            path.write_bytes(data)
        if rec is not None and len(rec):
            dirty.append(rec.drop(columns="orig").assign(file=path.name)
                         .rename(columns={"row": "row_no"}))
        files[name], rows[name] = path, n_rows
    dirty_rows = (pd.concat(dirty, ignore_index=True)[["file", "row_no", "kind", "column"]]
                  if dirty else pd.DataFrame(columns=["file", "row_no", "kind", "column"]))
    params = shop.truth.params
    manifest = {
        "format": "marketloop-sim", "version": 1, "seed": params.get("seed"),
        "n_customers": params.get("n_customers"), "n_days": params.get("n_days"),
        "start": params.get("start"), "end": params.get("end"), "currency": "EUR",
        "dirty_rate": dirty_rate, "files": {k: v.name for k, v in files.items()},
        "rows": rows,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    if truth:
        write_truth(shop.truth, out / "truth")
    (out / "truth").mkdir(exist_ok=True)
    dirty_rows.to_csv(out / "truth" / "dirty_rows.csv", index=False)
    cascade.to_csv(out / "truth" / "dirty_cascade.csv", index=False)
    return Export(out, files, rows, dirty_rows)

