"""The warehouse side of an ingest run: what one prepared file writes, inside the run's transaction.

Each derived table's rows are compared with the warehouse: orphans (a parent missing) go to
the quarantine, rows identical to stored ones are duplicates, rows with a stored key and
other content replace it, the rest are added. Everything here runs through
:mod:`marketloop.data.warehouse` on the raw connection, so it stays inside the transaction
(Ibis would commit on PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING

import ibis
import ibis.expr.types as ir
from ibis.backends import BaseBackend

from marketloop.data import warehouse as wh
from marketloop.data.adapters import Derived
from marketloop.data.schema import QUARANTINE, TableContract

if TYPE_CHECKING:
    from marketloop.data.ingest import FileReport


def publish_file(
    con: BaseBackend,
    report: FileReport,
    derived: list[Derived],
    quarantine: ibis.Table | None,
    shifts: ibis.Table | None,
    *,
    run_id: str,
    started: dt.datetime,
) -> None:
    """Write one prepared file's tables, quarantine and run record; fills in ``report``."""
    for d in derived:
        counts = _write_table(con, d, report, run_id, shifts)
        report.tables[d.contract.name] = counts
        if d.row_table:
            report.accepted += counts["added"] + counts["replaced"]
            report.replaced += counts["replaced"]
            report.duplicates += counts["duplicates"]
    if quarantine is not None:
        _write_quarantine(con, quarantine)
    wh.insert_values(
        con,
        "ingest_runs",
        {
            "run_id": run_id,
            "source": report.path,
            "adapter": report.adapter,
            "content_hash": report.content_hash,
            "started_at": started,
            "finished_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
            "n_read": report.read,
            "n_accepted": report.accepted,
            "n_duplicates": report.duplicates,
            "n_quarantined": report.quarantined,
            "n_replaced": report.replaced,
        },
    )


def _write_table(
    con: BaseBackend, d: Derived, report: FileReport, run_id: str, shifts: ibis.Table | None
) -> dict[str, int]:
    """Write one derived table: orphans to the quarantine, changed rows replaced, new added.

    Shaped for large loads: the rows are read once to be inserted; the warehouse table is
    only joined when it holds rows, and only the (few) orphans and matches are materialised.
    """
    contract, rows, tag = d.contract, d.table, uuid.uuid4().hex[:10]
    names, key = contract.names, list(contract.key)
    temps: list[str] = []
    n_rows = _count(con, rows)

    good, n_orphans = rows, 0
    if contract.parents:
        orphan_sets = []
        for column, parent in contract.parents.items():
            parent_table = wh.ref(parent)
            orphan_sets.append(rows.anti_join(parent_table, rows[column] == parent_table[column]))
        lost = ibis.union(*orphan_sets) if len(orphan_sets) > 1 else orphan_sets[0]
        # the parents go into the hash table when each is smaller than the rows checked
        n_parents = max(_count(con, wh.ref(p)) for p in contract.parents.values())
        with wh.hash_joins_as_written(con, enabled=n_parents < n_rows):
            orphans = wh.create_temp_as(con, f"_ml_orphans_{tag}", lost)
        temps.append(f"_ml_orphans_{tag}")
        n_orphans = _count(con, orphans)
        if n_orphans:
            good = rows.anti_join(orphans, _same_row(rows, orphans))
            if d.row_table:
                _quarantine_orphans(con, orphans, contract, report, run_id, shifts)

    existing = wh.ref(contract.name)
    n_duplicates = n_replaced = 0
    if wh.fetch(con, existing.select(*key).limit(1)):
        if d.earliest or d.known:  # materialised: the stored rows it reads may be replaced
            good = wh.create_temp_as(con, f"_ml_merged_{tag}",
                                     _merge_stored(good, existing, key, d))
            temps.append(f"_ml_merged_{tag}")
        theirs = existing.select(*[existing[c].name(f"_e_{c}") for c in names])
        joined = good.inner_join(theirs, [good[k] == theirs[f"_e_{k}"] for k in key])
        same = ibis.and_(*[joined[c].identical_to(joined[f"_e_{c}"]) for c in names])
        matched = wh.create_temp_as(con, f"_ml_matched_{tag}", joined.select(*key, _same=same))
        temps.append(f"_ml_matched_{tag}")
        counts = dict(wh.fetch(con, matched.group_by("_same").aggregate(n=matched.count())))
        n_duplicates, n_replaced = int(counts.get(True, 0)), int(counts.get(False, 0))
        if n_replaced:
            wh.delete_keys(con, contract.name, matched.filter(~matched._same).select(*key))
        if n_duplicates:
            good = good.anti_join(matched.filter(matched._same), key)
    defaults = {c: good[c].fill_null(v) for c, v in d.known if v is not None}
    wh.insert_select(con, contract.name, good.mutate(**defaults).select(*names))
    for name in temps:
        wh.drop_table(con, name)
    return {
        "added": n_rows - n_orphans - n_duplicates - n_replaced,
        "replaced": n_replaced,
        "duplicates": n_duplicates,
    }


def _merge_stored(rows: ibis.Table, existing: ibis.Table, key: list[str],
                  d: Derived) -> ibis.Table:
    """``rows`` with what the stored rows of the same key know better.

    Where a stored row is earlier in ``d.earliest[0]``, that column and the ones after it
    take the stored values (a later file does not move a customer's first purchase); a
    null in a ``d.known`` column takes the stored value.
    """
    known = [c for c, _ in d.known]
    theirs = existing.select(*[existing[k].name(f"_k_{k}") for k in key],
                             *[existing[c].name(f"_e_{c}") for c in (*d.earliest, *known)])
    joined = rows.left_join(theirs, [rows[k] == theirs[f"_k_{k}"] for k in key])
    older = ibis.literal(False)
    if d.earliest:
        stamp = d.earliest[0]
        older = joined[f"_e_{stamp}"].notnull() & (joined[f"_e_{stamp}"] < joined[stamp])

    def merged(c: str) -> ir.Value:
        if c in d.earliest:
            return ibis.ifelse(older, joined[f"_e_{c}"], joined[c]).name(c)
        if c in known:
            return joined[c].fill_null(joined[f"_e_{c}"]).name(c)
        return joined[c]

    return joined.select(*[merged(c) for c in rows.columns])


def _count(con: BaseBackend, table: ibis.Table) -> int:
    return int(wh.fetch(con, table.count().as_table())[0][0])


def _same_row(rows: ibis.Table, other: ibis.Table) -> list[ir.BooleanValue]:
    """Join predicates that pair a row with itself (by record number, else by every column)."""
    if "_row_no" in rows.columns:
        return [rows._row_no == other._row_no]
    return [rows[c].identical_to(other[c]) for c in rows.columns]


def _quarantine_orphans(
    con: BaseBackend,
    orphans: ibis.Table,
    contract: TableContract,
    report: FileReport,
    run_id: str,
    shifts: ibis.Table | None,
) -> None:
    orphans = _file_row_numbers(orphans, shifts)
    parent_cols = "|".join(contract.parents)
    # the same text on every backend: the row's values joined by commas, in column order
    text = ibis.literal(",").join([orphans[c].cast("string").fill_null("") for c in contract.names])
    _write_quarantine(
        con,
        orphans.select(
            source=ibis.literal(report.source),
            row_no=orphans._row_no.cast("int64"),
            table_name=ibis.literal(contract.name),
            reason=ibis.literal(f"orphan:{parent_cols}"),
            raw=text,
            run_id=ibis.literal(run_id),
        ),
    )
    n = _count(con, orphans)
    report.add_reasons([(f"orphan:{parent_cols}", n)])


def _file_row_numbers(rows: ibis.Table, shifts: ibis.Table | None) -> ibis.Table:
    """Move parsed-record numbers past the records the reader refused (few rows only)."""
    if shifts is None:
        return rows
    joined = rows.left_join(shifts, rows._row_no > shifts._k)
    moved = joined.group_by(*rows.columns).aggregate(_by=joined._shift.max())
    return moved.mutate(_row_no=moved._row_no + moved._by.fill_null(0)).drop("_by")


def _write_quarantine(con: BaseBackend, rows: ibis.Table) -> None:
    """Add refused rows not already quarantined under the same (source, row_no)."""
    existing = wh.ref(QUARANTINE.name)
    fresh = rows.anti_join(
        existing, [rows.source == existing.source, rows.row_no == existing.row_no]
    )
    wh.insert_select(con, QUARANTINE.name, fresh.select(*QUARANTINE.names))
