"""Writing profiles into the warehouse table ``profiles``, one ``as_of`` at a time, atomically.

The table is keyed by ``(customer_id, as_of)``. Re-running an ``as_of`` deletes its rows and
inserts the new ones in one transaction, so readers see the old build or the new one. A
category that appears later adds a ``share_<category>`` column (older rows hold NULL).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import ibis
from ibis.backends import BaseBackend

from marketloop.data.warehouse import (
    backend_of,
    commit,
    execute,
    fetch,
    insert_select,
    quote,
    transaction,
)
from marketloop.exceptions import SchemaError, describe

PROFILES_TABLE = "profiles"


@dataclass(frozen=True)
class ProfileRun:
    """What one :func:`write_profiles` call did."""

    table: str
    as_of: datetime
    rows: int
    replaced: int
    columns: tuple[str, ...]
    categories: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary."""
        return {
            "table": self.table,
            "as_of": self.as_of.isoformat(),
            "customers": self.rows,
            "replaced": self.replaced,
            "features": len(self.columns) - 3,  # less customer_id, as_of, profile_version
            "categories": list(self.categories),
        }


def write_profiles(
    con: BaseBackend,
    *,
    as_of: datetime | date | str,
    windows_days: Sequence[int] = (30, 90, 365),
    categories: Sequence[str] | None = None,
    table: str = PROFILES_TABLE,
) -> ProfileRun:
    """Build the profiles at ``as_of`` and store them in ``table``, replacing that ``as_of``.

    Parameters
    ----------
    con : ibis connection
        The warehouse (DuckDB or PostgreSQL) holding the canonical tables.
    as_of : datetime, date or str
        The cut-off (see :func:`marketloop.data.profiles.build_profiles`).
    windows_days : sequence of int, default=(30, 90, 365)
        Look-back windows.
    categories : sequence of str, optional
        Categories with a spend-share column; default every category in ``products``.
    table : str, default="profiles"
        The table written; created when missing.

    Returns
    -------
    ProfileRun
        Rows written and rows of the same ``as_of`` replaced.
    """
    from marketloop.data.profiles import build_profiles, parse_as_of

    backend_of(con)  # refuses backends without transactions here
    moment = parse_as_of(as_of)
    existing = set(con.list_tables())
    if categories is None:
        categories = _categories(con) if "products" in existing else []
    expr = build_profiles(con, as_of=moment, windows_days=windows_days, categories=categories)
    _ensure_table(con, table, expr.schema(), exists=table in existing)
    stored = ibis.table(expr.schema(), name=table)
    same = stored.filter(stored.as_of == ibis.literal(moment, type="timestamp"))
    count = same.aggregate(n=same.count())
    with transaction(con):
        replaced = int(fetch(con, count)[0][0])  # type: ignore[call-overload]
        execute(
            con,
            f"DELETE FROM {quote(con, table)} WHERE {quote(con, 'as_of')} = "
            f"TIMESTAMP '{moment.isoformat(sep=' ')}'",
        )
        insert_select(con, table, expr)
        rows = int(fetch(con, count)[0][0])  # type: ignore[call-overload]
    return ProfileRun(table, moment, rows, replaced, tuple(expr.columns), tuple(categories))


def _categories(con: BaseBackend) -> list[str]:
    products = con.table("products")
    if "category" not in products.columns:
        return []
    distinct = products.filter(products.category.notnull()).select("category").distinct()
    return sorted(str(v) for v in distinct.to_pyarrow()["category"].to_pylist())


def _ensure_table(con: BaseBackend, table: str, schema: ibis.Schema, *, exists: bool) -> None:
    """Create ``table`` from ``schema``, or add the columns it lacks (type-checked)."""
    if not exists:
        con.create_table(table, schema=schema)
        commit(con)
        return
    have = con.table(table).schema()
    for name, dtype in schema.items():
        if name not in have:
            sql_type = con.compiler.type_mapper.from_ibis(dtype).sql(con.dialect)
            execute(
                con, f"ALTER TABLE {quote(con, table)} ADD COLUMN {quote(con, name)} {sql_type}"
            )
        elif have[name].is_numeric() != dtype.is_numeric() or (
            have[name].is_timestamp() != dtype.is_timestamp()
        ):
            raise SchemaError(
                describe(
                    f"warehouse table {table} column {name}",
                    str(dtype),
                    str(have[name]),
                    f"Drop or rename the table {table!r} and run `marketloop profile` again.",
                )
            )
    commit(con)
