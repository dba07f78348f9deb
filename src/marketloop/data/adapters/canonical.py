"""The canonical layout: one file per table, columns named as in the warehouse."""

from __future__ import annotations

from pathlib import Path

import ibis

from marketloop.data.adapters._base import Adapter, Derived
from marketloop.data.schema import DATA_TABLES, TableContract


class CanonicalAdapter(Adapter):
    """Files whose header holds every required column of one canonical table.

    The table is recognised by the header; where two tables fit, the one named by the
    file (``orders.csv`` → ``orders``) or with more matching columns wins. Columns the
    table does not know are ignored; optional columns may be absent.
    """

    name = "canonical"

    def _table(self, columns: list[str], path: Path) -> tuple[int, TableContract | None]:
        have = set(columns)
        stem = path.name.split(".")[0].lower()
        best: tuple[int, TableContract | None] = (0, None)
        for contract in DATA_TABLES:
            if not set(contract.required_names) <= have:
                continue
            score = 10 * len(have & set(contract.names)) + (5 if stem == contract.name else 0)
            if score > best[0]:
                best = (score, contract)
        return best

    def score(self, columns: list[str], path: Path) -> int:
        return self._table(columns, path)[0]

    def expected(self) -> str:
        return "; ".join(f"{t.name}: {', '.join(t.required_names)}" for t in DATA_TABLES)

    def row_contract(self, columns: list[str], path: Path) -> TableContract:
        contract = self._table(columns, path)[1]
        assert contract is not None, "row_contract called for a file that does not match"
        return contract

    def derive(self, valid: ibis.Table, contract: TableContract) -> list[Derived]:
        return [Derived(contract, valid.select(*contract.names, "_row_no"), row_table=True)]

    def load_order(self, contract: TableContract) -> int:
        return [t.name for t in DATA_TABLES].index(contract.name)
