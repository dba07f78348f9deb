"""The canonical export columns (mirrors marketloop.data.schema, which we may not import).

``tests/simulate/test_export.py`` checks this table against the schema column by column.
"""

from __future__ import annotations

import pandas as pd

from marketloop.simulate._util import STR

#: table -> [(column, kind)]; kinds: id, str, ts, money, price, int, bool.
COLUMNS: dict[str, list[tuple[str, str]]] = {
    "customers": [("customer_id", "id"), ("first_seen", "ts"), ("region", "str"),
                  ("age_band", "str"), ("device", "str"), ("income_band", "str")],
    "products": [("product_id", "id"), ("category", "str"), ("name", "str"), ("price", "price"),
                 ("cost", "price"), ("currency", "str"), ("launched", "ts")],
    "orders": [("order_id", "id"), ("customer_id", "id"), ("ordered_at", "ts"),
               ("currency", "str"), ("status", "str"), ("amount", "money")],
    "order_lines": [("order_id", "id"), ("line_no", "int"), ("product_id", "id"),
                    ("quantity", "int"), ("unit_price", "price"), ("discount", "money")],
    "events": [("event_id", "id"), ("customer_id", "id"), ("anonymous_id", "id"),
               ("session_id", "id"), ("ts", "ts"), ("type", "str"), ("product_id", "id"),
               ("dwell_ms", "nint")],
    "texts": [("text_id", "id"), ("customer_id", "id"), ("ts", "ts"), ("kind", "str"),
              ("body", "str"), ("rating", "nint"), ("product_id", "id")],
    "consents": [("customer_id", "id"), ("channel", "str"), ("purpose", "str"),
                 ("granted", "bool"), ("ts", "ts"), ("source", "str")],
}

_DTYPES = {"id": STR, "str": STR, "ts": "datetime64[s]", "money": "float64",
           "price": "float64", "int": "int64", "nint": "Int64", "bool": "bool"}


def empty_table(name: str) -> pd.DataFrame:
    """A zero-row frame with the table's columns and dtypes."""
    return pd.DataFrame({c: pd.Series([], dtype=_DTYPES[k]) for c, k in COLUMNS[name]})
