"""What an adapter is: a shop export layout mapped onto the canonical tables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import ibis
import ibis.expr.types as ir

from marketloop.data.schema import TableContract


@dataclass(frozen=True)
class Derived:
    """A canonical table an adapter derives from the validated rows of one file.

    Attributes
    ----------
    contract : TableContract
        The canonical table the rows go to.
    table : ibis.Table
        Typed rows with the contract's columns; the row table also carries ``_row_no``.
    row_table : bool
        True for the one table whose rows stand 1:1 for the file's rows: its outcome
        (added, duplicate, quarantined) is the file's row accounting.
    earliest : tuple of str
        For rows summarised from events (a customer's first purchase, a product's launch):
        the timestamp column that keeps its earliest value when a stored row has the same
        key, followed by the columns that go with it (the region of that first purchase).
        Empty: the file's row replaces the stored one.
    known : tuple of (str, object)
        Columns a file may not know (a product's price when it sold nothing at a price in
        that file), with the value to write when neither the file nor a stored row does: a
        null in the file keeps the stored value.
    """

    contract: TableContract
    table: ibis.Table
    row_table: bool = False
    earliest: tuple[str, ...] = ()
    known: tuple[tuple[str, object], ...] = ()


class Adapter:
    """Base class: recognise a layout from its header, validate its rows, derive tables."""

    #: The name users pass to ``--format``.
    name: str = ""

    def score(self, columns: list[str], path: Path) -> int:
        """How well ``columns`` fit this layout: 0 for not at all, higher is better."""
        raise NotImplementedError

    def expected(self) -> str:
        """The columns this layout expects, for error messages."""
        raise NotImplementedError

    def row_contract(self, columns: list[str], path: Path) -> TableContract:
        """The rules every input row must keep (may be a layout-specific contract)."""
        raise NotImplementedError

    def dedupe_key(self, contract: TableContract) -> tuple[str, ...]:
        """Columns identifying a row within one file: a repeat is a duplicate or a conflict."""
        return contract.key

    def normalise(self, rows: ibis.Table) -> ibis.Table:
        """The staged text columns rewritten into the contract's spelling, before validation.

        For layouts whose files spell a value in several ways (a date as ``12/1/2010 8:26``);
        a text that cannot be rewritten is left as it was, so a refused row keeps it.
        """
        return rows

    def checks(self, values: dict[str, ir.Value]) -> list[tuple[ir.BooleanValue, str]]:
        """Layout-specific rules on the typed values: ``(broken, reason)`` pairs."""
        return []

    def derive(self, valid: ibis.Table, contract: TableContract) -> list[Derived]:
        """The canonical tables the valid, de-duplicated rows become."""
        raise NotImplementedError

    def warnings(self, tables: dict[str, dict[str, int]]) -> list[str]:
        """What a user should hear about a written file, from its counts per table
        (``{"added", "replaced", "duplicates"}``); ingest shows each as a warning."""
        return []

    def load_order(self, contract: TableContract) -> int:
        """Files load parents first: the position of this file's main table."""
        return 0
