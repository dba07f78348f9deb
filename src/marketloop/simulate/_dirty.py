"""Dirty mode: break a share of rows in known ways and record each one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from marketloop.simulate._format import BAD_BYTE_MARKER

#: table -> [(kind, column)]; duplicate_row has no column.
KINDS: dict[str, list[tuple[str, str]]] = {
    "customers": [("missing_id", "customer_id"), ("malformed_id", "customer_id"),
                  ("bad_date", "first_seen"), ("bad_encoding", "region"), ("duplicate_row", "")],
    "products": [("missing_id", "product_id"), ("malformed_id", "product_id"),
                 ("bad_date", "launched"), ("negative_price", "price"),
                 ("unknown_currency", "currency"), ("bad_encoding", "name"),
                 ("duplicate_row", "")],
    "orders": [("missing_id", "order_id"), ("malformed_id", "order_id"),
               ("bad_date", "ordered_at"), ("unknown_currency", "currency"),
               ("bad_enum", "status"), ("duplicate_row", "")],
    "order_lines": [("missing_id", "order_id"), ("malformed_id", "product_id"),
                    ("negative_quantity", "quantity"), ("absurd_quantity", "quantity"),
                    ("negative_price", "unit_price"), ("orphan_line", "order_id"),
                    ("duplicate_row", "")],
    "events": [("missing_id", "event_id"), ("malformed_id", "session_id"),
               ("bad_date", "ts"), ("bad_enum", "type"), ("duplicate_row", "")],
    "texts": [("missing_id", "text_id"), ("malformed_id", "customer_id"), ("bad_date", "ts"),
              ("bad_enum", "kind"), ("bad_encoding", "body"), ("duplicate_row", "")],
    "consents": [("missing_id", "customer_id"), ("malformed_id", "customer_id"),
                 ("bad_date", "ts"), ("bad_enum", "channel"), ("duplicate_row", "")],
}
_BAD_DATES = np.array(["2025-13-45", "yesterday", "31/02/2025 25:61", "2025-02-30T10:00:00Z"])
_BAD_ENUM = {"status": ["shipped?", "PAYED!", "unknown"], "type": ["click", "scroll", "???"],
             "kind": ["complaint", "tweet"], "channel": ["fax", "pigeon", "e-mail"]}
#: Kinds a typed Parquet file cannot carry (it stores valid UTF-8 and whole records).
NOT_IN_PARQUET = ("bad_encoding",)


def _bad_value(kind: str, column: str, value: str | None, i: int,
               rng: np.random.Generator) -> str | None:
    v = value or "x"
    if kind == "missing_id":
        return None
    if kind == "malformed_id":
        return [f"{v[:2]} {v[2:]}", f"{v}#", v + "x" * (200 - len(v))][i % 3]
    if kind == "bad_date":
        return str(_BAD_DATES[rng.integers(len(_BAD_DATES))])
    if kind == "negative_quantity":
        return "-3"
    if kind == "absurd_quantity":
        return "1000000"
    if kind == "negative_price":
        return "-" + v
    if kind == "unknown_currency":
        return ["XXX", "EURO"][i % 2]
    if kind == "bad_enum":
        options = _BAD_ENUM[column]
        return options[i % len(options)]
    if kind == "orphan_line":
        return f"o{8_000_000_000 + i}"
    if kind == "bad_encoding":
        return v[:2] + BAD_BYTE_MARKER + v[2:]
    raise ValueError(kind)


def corrupt(name: str, columns: dict[str, pa.Array], rate: float, rng: np.random.Generator,
            *, parquet: bool = False) -> tuple[dict[str, pa.Array], pd.DataFrame]:
    """Break about ``rate`` of the rows; returns the new columns and the dirty-row records.

    The last row is never broken (CSV truncates it). Duplicates are exact copies of clean
    rows, inserted right after their original; ``row_no`` is 1-based in the written file.
    """
    n = len(next(iter(columns.values())))
    kinds = [k for k in KINDS[name] if not (parquet and k[0] in NOT_IN_PARQUET)]
    n_bad = min(int(round(rate * n)), max(n - 1, 0))
    empty = pd.DataFrame({"row": pd.Series([], dtype=np.int64), "kind": [], "column": [],
                          "orig": pd.Series([], dtype=np.int64)})
    if n_bad == 0:
        return columns, empty
    pick = rng.integers(0, len(kinds), n_bad)
    is_dup = np.array([kinds[j][0] == "duplicate_row" for j in pick])
    n_dup = int(is_dup.sum())
    rows = rng.choice(n - 1, size=n_bad, replace=False)  # distinct, never the last row
    broken_rows, dup_src = rows[~is_dup], rows[is_dup]
    pick = pick[~is_dup]
    out = dict(columns)
    records = []
    for j, (kind, col) in enumerate(kinds):
        if kind == "duplicate_row":
            continue
        target = np.sort(broken_rows[pick == j])
        if not len(target):
            continue
        old = out[col].take(pa.array(target)).to_pylist()
        new = [_bad_value(kind, col, v, i, rng) for i, v in enumerate(old)]
        mask = np.zeros(n, dtype=bool)
        mask[target] = True
        new_full = np.full(n, None, dtype=object)
        new_full[target] = new
        out[col] = pc.if_else(pa.array(mask), pa.array(new_full, pa.string()), out[col])
        records.append(pd.DataFrame({"row": target, "kind": kind, "column": col,
                                     "orig": target}))
    copies = np.zeros(n, dtype=np.int64)
    copies[dup_src] = 1
    take = pa.array(np.repeat(np.arange(n), 1 + copies))
    out = {c: a.take(take) for c, a in out.items()}
    shift = np.cumsum(copies) - copies  # copies inserted before each original row
    rec = pd.concat(records, ignore_index=True) if records else empty
    rec["orig"] = rec["row"].to_numpy()
    rec["row"] = rec["row"].to_numpy() + shift[rec["row"].to_numpy()] + 1  # 1-based
    dups = pd.DataFrame({"row": np.sort(dup_src) + shift[np.sort(dup_src)] + 2,
                         "kind": "duplicate_row", "column": "", "orig": np.sort(dup_src)})
    rec = pd.concat([rec, dups], ignore_index=True) if n_dup else rec
    return out, rec.sort_values("row", ignore_index=True)
