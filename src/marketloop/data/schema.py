"""Canonical warehouse tables and their contracts (DESIGN.md section 3).

A contract names each column, its type, whether it may be empty, and the values it may
take. Ingest validates every input row against the contract of its table; the warehouse
creates its tables from the same contracts, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal[
    "id", "string", "text", "timestamp", "money", "price", "int", "float", "bool", "json"
]

#: Ibis type of each column kind. Money is a decimal in the shop's currency.
IBIS_TYPES: dict[str, str] = {
    "id": "string",
    "string": "string",
    "text": "string",
    "json": "string",
    "timestamp": "timestamp",
    "money": "decimal(18, 2)",
    "price": "decimal(18, 4)",
    "int": "int64",
    "float": "float64",
    "bool": "boolean",
}

#: Identifiers: letters, digits and ``_ . : - @ /``, 1 to 128 characters, no spaces.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@/\-]{0,127}$"

#: ISO 4217 codes accepted as currencies.
CURRENCIES = frozenset(
    "EUR USD GBP CHF SEK NOK DKK PLN CZK HUF RON BGN JPY CNY AUD CAD NZD SGD HKD INR BRL MXN "
    "ZAR TRY ILS AED SAR KRW TWD THB MYR IDR PHP ISK".split()
)

ORDER_STATUSES = ("paid", "cancelled", "returned")
EVENT_TYPES = ("page_view", "product_view", "add_to_cart", "checkout", "purchase")
TEXT_KINDS = ("review", "support")
CHANNELS = ("email", "sms", "push", "app")
PURPOSES = ("marketing", "personalisation")

#: Timestamps outside these years are rejected as implausible.
MIN_YEAR, MAX_YEAR = 1990, 2100


@dataclass(frozen=True)
class Column:
    """One column of a canonical table.

    Parameters
    ----------
    name : str
        Column name, as in the warehouse and in canonical files.
    kind : str
        One of :data:`IBIS_TYPES`' keys.
    required : bool
        Whether a canonical file must carry the column and a row must fill it.
    allowed : tuple of str, optional
        The only values a string column may take (compared in lower case).
    low, high : float, optional
        Inclusive bounds for numeric columns.
    """

    name: str
    kind: Kind
    required: bool = True
    allowed: tuple[str, ...] | None = None
    low: float | None = None
    high: float | None = None

    @property
    def ibis_type(self) -> str:
        return IBIS_TYPES[self.kind]


@dataclass(frozen=True)
class TableContract:
    """A canonical table: its columns, its key and the tables its rows must refer to."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    #: ``column -> table`` for references that must resolve (a line's order must exist).
    parents: dict[str, str] = field(default_factory=dict)
    #: Set of columns of which at least one must be filled.
    one_of: tuple[str, ...] = ()
    description: str = ""

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_names(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    def ibis_schema(self) -> dict[str, str]:
        return {c.name: c.ibis_type for c in self.columns}


def _c(name: str, kind: Kind, required: bool = True, **kw: object) -> Column:
    return Column(name, kind, required, **kw)  # type: ignore[arg-type]


CUSTOMERS = TableContract(
    "customers",
    (
        _c("customer_id", "id"),
        _c("first_seen", "timestamp"),
        _c("region", "string", False),
        _c("age_band", "string", False),
        _c("device", "string", False),
        _c("income_band", "string", False),
    ),
    key=("customer_id",),
    description="One row per known customer.",
)

PRODUCTS = TableContract(
    "products",
    (
        _c("product_id", "id"),
        _c("category", "string"),
        _c("name", "text", False),
        _c("price", "price", low=0, high=1_000_000),
        _c("cost", "price", False, low=0, high=1_000_000),
        _c("currency", "string", allowed=tuple(sorted(CURRENCIES))),
        _c("launched", "timestamp", False),
    ),
    key=("product_id",),
    description="The catalogue; price and cost in the shop's currency.",
)

ORDERS = TableContract(
    "orders",
    (
        _c("order_id", "id"),
        _c("customer_id", "id", False),  # empty for guest orders
        _c("ordered_at", "timestamp"),
        _c("currency", "string", allowed=tuple(sorted(CURRENCIES))),
        _c("status", "string", allowed=ORDER_STATUSES),
        _c("amount", "money", low=-10_000_000, high=10_000_000),
    ),
    key=("order_id",),
    description="Order headers; amount is the total after discounts, in ``currency``.",
)

ORDER_LINES = TableContract(
    "order_lines",
    (
        _c("order_id", "id"),
        _c("line_no", "int", low=1, high=100_000),
        _c("product_id", "id"),
        _c("quantity", "int", low=1, high=10_000),
        _c("unit_price", "price", low=0, high=1_000_000),
        _c("discount", "money", False, low=0, high=10_000_000),
    ),
    key=("order_id", "line_no"),
    parents={"order_id": "orders"},
    description="Order lines; discount is the money taken off the line.",
)

EVENTS = TableContract(
    "events",
    (
        _c("event_id", "id"),
        _c("customer_id", "id", False),
        _c("anonymous_id", "id", False),
        _c("session_id", "id"),
        _c("ts", "timestamp"),
        _c("type", "string", allowed=EVENT_TYPES),
        _c("product_id", "id", False),
        _c("dwell_ms", "int", False, low=0, high=86_400_000),
    ),
    key=("event_id",),
    one_of=("customer_id", "anonymous_id"),
    description="Web and app events; a visitor is known (customer_id) or anonymous.",
)

TEXTS = TableContract(
    "texts",
    (
        _c("text_id", "id"),
        _c("customer_id", "id"),
        _c("ts", "timestamp"),
        _c("kind", "string", allowed=TEXT_KINDS),
        _c("body", "text"),
        _c("rating", "int", False, low=1, high=5),
        _c("product_id", "id", False),
    ),
    key=("text_id",),
    description="Reviews and support messages.",
)

CONSENTS = TableContract(
    "consents",
    (
        _c("customer_id", "id"),
        _c("channel", "string", allowed=CHANNELS),
        _c("purpose", "string", allowed=PURPOSES),
        _c("granted", "bool"),
        _c("ts", "timestamp"),
        _c("source", "string", False),
    ),
    key=("customer_id", "channel", "purpose"),
    description="The latest consent per customer, channel and purpose.",
)

DECISIONS = TableContract(
    "decisions",
    (
        _c("decision_id", "id"),
        _c("customer_id", "id"),
        _c("ts", "timestamp"),
        _c("policy", "string"),
        _c("action", "string"),
        _c("propensity", "float", low=0, high=1),
        _c("reasons", "json", False),
    ),
    key=("decision_id",),
    description="Every decision, with the propensity of the action chosen.",
)

OUTCOMES = TableContract(
    "outcomes",
    (
        _c("decision_id", "id"),
        _c("kind", "string"),
        _c("ts", "timestamp"),
        _c("value", "float", False),
    ),
    key=("decision_id", "kind"),
    description="What followed a decision: conversion, revenue, complaint, unsubscribe.",
)

QUARANTINE = TableContract(
    "quarantine",
    (
        _c("source", "string"),
        _c("row_no", "int"),
        _c("table_name", "string"),
        _c("reason", "string"),
        _c("raw", "text", False),
        _c("run_id", "string"),
    ),
    key=("source", "row_no"),
    description="Input rows refused by ingest, with a machine-readable reason and the raw row.",
)

INGEST_RUNS = TableContract(
    "ingest_runs",
    (
        _c("run_id", "string"),
        _c("source", "string"),
        _c("adapter", "string"),
        _c("content_hash", "string"),
        _c("started_at", "timestamp"),
        _c("finished_at", "timestamp"),
        _c("n_read", "int"),
        _c("n_accepted", "int"),
        _c("n_duplicates", "int"),
        _c("n_quarantined", "int"),
        _c("n_replaced", "int"),
    ),
    key=("run_id", "source"),
    description="One row per file per ingest run; read = accepted + duplicates + quarantined.",
)

#: Tables a shop's data lands in, in the order ingest loads them (parents first).
DATA_TABLES: tuple[TableContract, ...] = (
    CUSTOMERS,
    PRODUCTS,
    ORDERS,
    ORDER_LINES,
    EVENTS,
    TEXTS,
    CONSENTS,
)

#: Every canonical table.
TABLES: dict[str, TableContract] = {
    t.name: t for t in (*DATA_TABLES, DECISIONS, OUTCOMES, QUARANTINE, INGEST_RUNS)
}
