"""The invoice-line layout of the UCI Online Retail export (``--format online-retail``).

``InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID, Country``:
one row per invoice line. Each mapping decision is listed in ``docs/ingest.md``; in short:

- an invoice becomes an order; ``C``-invoices (credit notes) become orders with status
  ``returned``, positive line quantities and a negative amount;
- ``A``-invoices (bad-debt adjustments) are not sales and are quarantined;
- a negative quantity on an ordinary invoice (a stock write-off) is quarantined;
- guest invoices (no ``CustomerID``) are kept as orders without a customer;
- zero prices are kept (free items); negative prices and quantities beyond 10,000 are
  quarantined as out of range;
- postage, fee, discount and manual lines are kept as lines of non-merchandise products;
- line numbers follow the file order within an invoice; times are read as UTC.
"""

from __future__ import annotations

from pathlib import Path

import ibis
import ibis.expr.types as ir

from marketloop.data.adapters._base import Adapter, Derived
from marketloop.data.schema import (
    CUSTOMERS,
    ID_PATTERN,
    ORDER_LINES,
    ORDERS,
    PRODUCTS,
    Column,
    TableContract,
)

COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)
CURRENCY = "GBP"

#: Stock codes that are not merchandise, and the category they get.
SPECIAL_CODES = {
    "POST": "postage",
    "DOT": "postage",
    "C2": "postage",
    "M": "manual",
    "m": "manual",
    "D": "discount",
    "S": "samples",
    "B": "adjustment",
    "BANK_CHARGES": "fee",
    "AMAZONFEE": "fee",
    "CRUK": "fee",
    "PADS": "fee",
}

#: ``M/D/YYYY H:MM[:SS]``, the date of the data set's spreadsheet export.
_US_DATE = r"^([0-9]{1,2})/([0-9]{1,2})/([0-9]{4}) ([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?$"

ROWS = TableContract(
    "online_retail_lines",
    (
        Column("InvoiceNo", "id"),
        Column("StockCode", "string"),
        Column("Description", "text", required=False),
        Column("Quantity", "int", low=-10_000, high=10_000),
        Column("InvoiceDate", "timestamp"),
        Column("UnitPrice", "price", low=0, high=1_000_000),
        Column("CustomerID", "id", required=False),
        Column("Country", "string", required=False),
    ),
    key=("InvoiceNo", "StockCode"),
    description="One invoice line of the Online Retail export.",
)


class OnlineRetailAdapter(Adapter):
    """UCI Online Retail invoice lines → customers, products, orders and order lines."""

    name = "online-retail"

    def score(self, columns: list[str], path: Path) -> int:
        return 1_000 if set(COLUMNS) <= set(columns) else 0

    def expected(self) -> str:
        return f"online-retail: {', '.join(COLUMNS)}"

    def row_contract(self, columns: list[str], path: Path) -> TableContract:
        return ROWS

    def dedupe_key(self, contract: TableContract) -> tuple[str, ...]:
        return COLUMNS  # only an exact repeat of a line is a duplicate

    def normalise(self, rows: ibis.Table) -> ibis.Table:
        """The spellings of the data set's circulated copies, as the contract reads them.

        - ``InvoiceDate`` as ``12/1/2010 8:26`` (month/day/year, as the spreadsheet
          export writes it) becomes ``2010-12-01 08:26:00``;
        - ``CustomerID`` as ``17850.0`` (a spreadsheet's number) becomes ``17850``;
        - ``StockCode`` loses surrounding spaces (``" 85123A "`` is ``85123A``).
        """
        date = rows.InvoiceDate.cast("string").strip()
        parts = [date.re_extract(_US_DATE, i) for i in range(1, 6)]
        month, day, year, hour, minute = parts
        iso = (year + "-" + month.lpad(2, "0") + "-" + day.lpad(2, "0") + " "
               + hour.lpad(2, "0") + ":" + minute + ":" + date.re_extract(_US_DATE, 6)
               .nullif("").fill_null("00"))
        usable = date.re_search(_US_DATE) & iso.try_cast("timestamp").notnull()
        changes = {"InvoiceDate": ibis.ifelse(usable, iso, rows.InvoiceDate),
                   "StockCode": rows.StockCode.cast("string").strip()}
        if "CustomerID" in rows.columns:
            cid = rows.CustomerID.cast("string")
            changes["CustomerID"] = ibis.ifelse(cid.re_search(r"^[0-9]+\.0+$"),
                                                cid.re_replace(r"\.0+$", ""), cid)
        return rows.mutate(**changes)

    def checks(self, values: dict[str, ir.Value]) -> list[tuple[ir.BooleanValue, str]]:
        invoice, quantity = values["InvoiceNo"], values["Quantity"]
        credit = invoice.startswith("C")
        # the product id it becomes must be an id like any other (BANK CHARGES: BANK_CHARGES)
        product = values["StockCode"].replace(" ", "_")
        return [
            (~product.re_search(ID_PATTERN), "malformed:StockCode"),
            (invoice.startswith("A"), "not_a_sale:adjustment_invoice"),
            (quantity == 0, "out_of_range:Quantity"),
            (~credit & (quantity < 0), "negative_quantity:not_a_credit_note"),
            (credit & (quantity > 0), "positive_quantity:credit_note"),
        ]

    def warnings(self, tables: dict[str, dict[str, int]]) -> list[str]:
        """Lines that replaced stored lines with other content: most likely an invoice split
        across files (line numbers restart in each file, docs/ingest.md)."""
        replaced = tables.get("order_lines", {}).get("replaced", 0)
        if not replaced:
            return []
        return [f"{replaced:,} line{'s' if replaced != 1 else ''} replaced stored lines of "
                "the same invoice and line number with other content. If the files split an "
                "invoice, its lines are now those of the last file: load each invoice's lines "
                "in one file (a split by date never splits one)."]

    def derive(self, valid: ibis.Table, contract: TableContract) -> list[Derived]:
        credit = valid.InvoiceNo.startswith("C")
        rows = valid.mutate(
            product_id=valid.StockCode.replace(" ", "_"),
            _credit=credit,
            _net=(valid.Quantity.cast("decimal(18, 4)") * valid.UnitPrice),
        )
        by_invoice = ibis.window(group_by="InvoiceNo", order_by="_row_no")
        lines = rows.select(
            order_id=rows.InvoiceNo,
            line_no=(ibis.row_number().over(by_invoice) + 1).cast("int64"),
            product_id=rows.product_id,
            quantity=rows.Quantity.abs().cast("int64"),
            unit_price=rows.UnitPrice,
            discount=ibis.literal(0).cast("decimal(18, 2)"),
            _row_no=rows._row_no,
        )
        orders = rows.group_by(order_id=rows.InvoiceNo).aggregate(
            customer_id=rows.CustomerID.max(),
            ordered_at=rows.InvoiceDate.min(),
            currency=ibis.literal(CURRENCY),
            status=ibis.ifelse(rows._credit.any(), "returned", "paid"),
            amount=rows._net.sum().round(2).cast("decimal(18, 2)"),
        )
        known = rows.filter(rows.CustomerID.notnull())
        customers = known.group_by(customer_id=known.CustomerID).aggregate(
            first_seen=known.InvoiceDate.min(),
            region=known.Country.argmin(known._row_no),
            age_band=ibis.null("string"),
            device=ibis.null("string"),
            income_band=ibis.null("string"),
        )
        sale = ~rows._credit & (rows.UnitPrice > 0)
        category = rows.product_id.substitute(SPECIAL_CODES, else_=ibis.null("string"))
        category = ibis.ifelse(
            rows.product_id.lower().startswith("gift_"), "gift_voucher", category
        ).fill_null("merchandise")
        rows = rows.mutate(_category=category)
        products = rows.group_by("product_id").aggregate(
            category=rows._category.max(),
            name=rows.Description.argmax(rows._row_no, where=rows.Description.notnull()),
            price=rows.UnitPrice.argmax(rows._row_no, where=sale),  # null: no sale here
            cost=ibis.null("decimal(18, 4)"),
            currency=ibis.literal(CURRENCY),
            launched=rows.InvoiceDate.min(),
        )
        return [
            # a customer first seen in an earlier file keeps that day and its country
            Derived(CUSTOMERS, customers.select(*CUSTOMERS.names),
                    earliest=("first_seen", "region")),
            # ... and a product its first day; a file without its name or a sale at a price
            # keeps the stored ones (price 0 if never sold at one)
            Derived(PRODUCTS, products.select(*PRODUCTS.names), earliest=("launched",),
                    known=(("name", None), ("price", 0))),
            Derived(ORDERS, orders.select(*ORDERS.names)),
            Derived(ORDER_LINES, lines.select(*ORDER_LINES.names, "_row_no"), row_table=True),
        ]
