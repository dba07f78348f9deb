"""Writing per-customer predictions into the warehouse table ``predictions``, atomically.

The table is long: one row per ``(customer_id, as_of, model, quantity)`` with the ``value``
(float64), the ``model_version`` that produced it and ``created_at``. Writing a model's
predictions at an ``as_of`` deletes that ``(as_of, model)`` pair's rows and inserts the new
ones in one transaction, so readers see the old scores or the new ones, never a mix.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime

import ibis
import pandas as pd
from ibis.backends import BaseBackend

from marketloop.data.warehouse import (
    backend_of,
    check_columns,
    commit,
    drop_staging,
    execute,
    fetch,
    insert_select,
    quote,
    stage_table,
    transaction,
)
from marketloop.exceptions import SchemaError, describe

__all__ = ["PREDICTIONS_SCHEMA", "PREDICTIONS_TABLE", "PredictionRun", "write_predictions"]

PREDICTIONS_TABLE = "predictions"

#: Columns of the ``predictions`` table; the key is the first four.
PREDICTIONS_SCHEMA = ibis.schema(
    {
        "customer_id": "string",
        "as_of": "timestamp",
        "model": "string",
        "quantity": "string",
        "value": "float64",
        "model_version": "string",
        "created_at": "timestamp",
    }
)


@dataclass(frozen=True)
class PredictionRun:
    """What one :func:`write_predictions` call did."""

    table: str
    as_of: datetime
    model: str
    model_version: str
    rows: int
    replaced: int
    customers: int
    quantities: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary."""
        return {
            "table": self.table,
            "as_of": self.as_of.isoformat(),
            "model": self.model,
            "model_version": self.model_version,
            "rows": self.rows,
            "replaced": self.replaced,
            "customers": self.customers,
            "quantities": list(self.quantities),
        }


def write_predictions(
    con: BaseBackend,
    predictions: pd.DataFrame,
    *,
    as_of: datetime | date | str,
    model: str,
    model_version: str,
    table: str = PREDICTIONS_TABLE,
) -> PredictionRun:
    """Store one model's predictions at ``as_of``, replacing that ``(as_of, model)``.

    Parameters
    ----------
    con : ibis connection
        The warehouse (DuckDB or PostgreSQL).
    predictions : pandas.DataFrame
        Indexed by ``customer_id``, one float column per quantity (``p_churn``, ...).
    as_of : datetime, date or str
        The cut-off the predictions were made at.
    model : str
        The model kind (``clv``, ``churn``, ``next-purchase``).
    model_version : str
        The version of the fitted model, stored in every row.
    table : str, default="predictions"
        The table written; created when missing.

    Returns
    -------
    PredictionRun
        Rows written and rows of the same ``(as_of, model)`` replaced.

    Raises
    ------
    SchemaError
        ``predictions`` has duplicate customers or no quantity, or ``table`` exists with
        other columns.
    """
    from marketloop.data.profiles import parse_as_of

    backend_of(con)
    moment = parse_as_of(as_of)
    where = "write_predictions(predictions)"
    frame = _long(predictions, where)
    quantities = tuple(str(c) for c in predictions.columns)
    _ensure_table(con, table)
    stamp = datetime.now(UTC).replace(tzinfo=None)
    staging = f"_ml_predictions_{uuid.uuid4().hex[:12]}"
    staged = stage_table(con, staging, frame)
    rows_expr = staged.select(
        "customer_id",
        as_of=ibis.literal(moment, type="timestamp"),
        model=ibis.literal(model, type="string"),
        quantity="quantity",
        value="value",
        model_version=ibis.literal(model_version, type="string"),
        created_at=ibis.literal(stamp, type="timestamp"),
    )
    stored = ibis.table(PREDICTIONS_SCHEMA, name=table)
    same = stored.filter(
        (stored.as_of == ibis.literal(moment, type="timestamp"))
        & (stored.model == ibis.literal(model, type="string"))
    )
    count = same.aggregate(n=same.count())
    try:
        with transaction(con):
            replaced = int(fetch(con, count)[0][0])  # type: ignore[call-overload]
            execute(
                con,
                f"DELETE FROM {quote(con, table)} WHERE {quote(con, 'as_of')} = "
                f"TIMESTAMP '{moment.isoformat(sep=' ')}' AND {quote(con, 'model')} = "
                f"'{model.replace(chr(39), chr(39) * 2)}'",
            )
            insert_select(con, table, rows_expr)
            rows = int(fetch(con, count)[0][0])  # type: ignore[call-overload]
    finally:
        drop_staging(con, [staging])
    return PredictionRun(
        table, moment, model, model_version, rows, replaced, len(predictions), quantities
    )


def _long(predictions: pd.DataFrame, where: str) -> pd.DataFrame:
    """``customer_id, quantity, value`` rows from a wide frame indexed by customer."""
    if not isinstance(predictions, pd.DataFrame) or predictions.shape[1] == 0:
        raise SchemaError(
            describe(where, "a DataFrame with one column per quantity", type(predictions).__name__)
        )
    if predictions.index.has_duplicates:
        dup = predictions.index[predictions.index.duplicated()][0]
        raise SchemaError(describe(where, "one row per customer_id", f"{dup!r} twice"))
    wide = predictions.astype("float64")
    wide.index = wide.index.astype(str).rename("customer_id")
    long = wide.reset_index().melt(id_vars="customer_id", var_name="quantity", value_name="value")
    long["quantity"] = long["quantity"].astype(str)
    return long[["customer_id", "quantity", "value"]]


def _ensure_table(con: BaseBackend, table: str) -> None:
    """Create ``table`` when missing; refuse one whose columns differ from the layout."""
    if table not in set(con.list_tables()):
        con.create_table(table, schema=PREDICTIONS_SCHEMA)
        commit(con)
        return
    check_columns(
        con,
        table,
        list(PREDICTIONS_SCHEMA.names),
        hint=f"Drop or rename the table {table!r} and run `marketloop predict` again.",
    )
    commit(con)
