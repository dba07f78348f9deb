"""Files into the warehouse, losing nothing: every row added, a duplicate, or quarantined.

A run reads each file into a scratch DuckDB engine (the warehouse itself when it is DuckDB),
types every row against its table's contract, sets aside repeats within the file, then, in
one transaction on the warehouse, compares the rows with what is there (new, duplicate,
replacing a changed row, or an orphan whose parent is missing), writes them, writes the
refused rows to ``quarantine`` with their reason, and records the counts in ``ingest_runs``.
Killed at any moment, the warehouse holds the whole run or none of it.

For every file: ``read == accepted + duplicates + quarantined``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
from ibis.backends import BaseBackend

from marketloop.data import warehouse as wh
from marketloop.data._publish import publish_file
from marketloop.data._readers import FileKind, Staged, content_hash, file_kind, peek_columns, stage
from marketloop.data._validate import raw_json, validate
from marketloop.data.adapters import Adapter, Derived, detect
from marketloop.data.schema import TABLES, TableContract
from marketloop.exceptions import IngestError, MarketloopWarning, describe

#: Called with a step description as a run moves on; the CLI draws a progress bar from it.
Progress = Callable[[str], None]

SUPPORTED_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq", ".jsonl", ".ndjson", ".json")
#: What a folder's files must end in to count as data: a ``.txt`` there is most often a
#: README, so text files are ingested only when named on the command line.
FOLDER_SUFFIXES = tuple(s for s in SUPPORTED_SUFFIXES if s != ".txt")


@dataclass
class FileReport:
    """The accounting of one file in one run."""

    path: str
    source: str
    adapter: str
    table: str
    content_hash: str
    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    replaced: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    #: Per canonical table written: ``{"added": n, "replaced": n, "duplicates": n}``.
    tables: dict[str, dict[str, int]] = field(default_factory=dict)

    def add_reasons(self, reasons: Iterable[tuple[str, int]]) -> None:
        for reason, n in reasons:
            self.reasons[reason] = self.reasons.get(reason, 0) + int(n)
            self.quarantined += int(n)


@dataclass
class IngestReport:
    """The accounting of a whole run: one :class:`FileReport` per file."""

    run_id: str
    files: list[FileReport]

    def _total(self, name: str) -> int:
        return sum(getattr(f, name) for f in self.files)

    @property
    def read(self) -> int:
        return self._total("read")

    @property
    def accepted(self) -> int:
        return self._total("accepted")

    @property
    def duplicates(self) -> int:
        return self._total("duplicates")

    @property
    def quarantined(self) -> int:
        return self._total("quarantined")

    @property
    def replaced(self) -> int:
        return self._total("replaced")

    @property
    def reasons(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.files:
            for reason, n in f.reasons.items():
                out[reason] = out.get(reason, 0) + n
        return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))

    def to_dict(self) -> dict[str, object]:
        """The run as JSON-ready data: the totals at the top, then each file."""
        return {
            "run_id": self.run_id,
            "read": self.read,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "replaced": self.replaced,
            "reasons": self.reasons,
            "files": [asdict(f) for f in self.files],
        }


@dataclass
class _Plan:
    path: Path
    kind: FileKind
    columns: list[str]
    adapter: Adapter
    contract: TableContract


@dataclass
class _Prepared:
    plan: _Plan
    report: FileReport
    derived: list[Derived]
    quarantine: ibis.Table | None
    cleanup: list[str]
    staged: Staged | None = None
    #: Where the reader refused records: the shifts from parsed to file record numbers.
    shifts: ibis.Table | None = None


def plan_files(paths: Iterable[str | Path], *, format: str = "auto") -> list[_Plan]:
    """Check every input and choose its adapter, before anything is read or written.

    A folder holding a simulator export (``manifest.json``) or data files stands for the
    files in it. Files load parents first (customers and products, then orders, then lines).

    Raises
    ------
    IngestError
        If a path is missing, unreadable, empty or of an unknown layout.
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(_folder_files(path))
        elif not path.exists():
            raise IngestError(
                describe(str(path), "an existing file or folder", "nothing at that path")
            )
        else:
            files.append(path)
    if not files:
        raise IngestError(describe("ingest", "at least one data file", "none"))
    # one file is one source however it is named: a symlink, ./x.csv and x.csv, or the same
    # path given twice (a file's quarantine rows and run record are kept per source)
    files = list(dict.fromkeys(path.resolve() for path in files))
    plans = []
    for path in files:
        if path.stat().st_size == 0:
            raise IngestError(describe(str(path), "a file with a header row", "an empty file"))
        kind = file_kind(path)
        columns = peek_columns(path, kind)
        adapter = detect(columns, path, format)
        plans.append(_Plan(path, kind, columns, adapter, adapter.row_contract(columns, path)))
    return sorted(plans, key=lambda p: p.adapter.load_order(p.contract))


def _folder_files(folder: Path) -> list[Path]:
    manifest = folder / "manifest.json"
    if manifest.exists():
        import json

        try:
            files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        except (ValueError, KeyError, TypeError) as exc:
            raise IngestError(
                describe(str(manifest), "a manifest with a 'files' map", str(exc))
            ) from None
        if not isinstance(files, dict) or not all(isinstance(n, str) for n in files.values()):
            raise IngestError(describe(str(manifest), "'files' as a map of table to file name",
                                       repr(files)[:200]))
        missing = [n for n in files.values() if not (folder / n).is_file()]
        if missing:
            raise IngestError(describe(str(manifest), "the files it names beside it",
                                       f"no {', '.join(missing)} in {folder}"))
        return [folder / name for name in files.values()]
    found = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith((".", "~"))  # hidden, editor's lock files
        and p.name != "manifest.json" and any(s in FOLDER_SUFFIXES for s in p.suffixes)
    )
    if not found:
        raise IngestError(describe(str(folder), "data files (.csv, .parquet, .jsonl)", "none"))
    return found


def ingest(
    paths: Iterable[str | Path],
    *,
    con: BaseBackend,
    format: str = "auto",
    progress: Progress | None = None,
) -> IngestReport:
    """Load files into the warehouse ``con`` in one atomic run.

    Parameters
    ----------
    paths : iterable of str or Path
        Files (CSV plain or gzip-compressed, Parquet, JSON Lines) or folders of them.
    con : ibis.backends.BaseBackend
        The warehouse (DuckDB or PostgreSQL); its tables are created if missing.
    format : str, default="auto"
        ``"auto"`` recognises each file's layout by its header, or an adapter's name.
    progress : callable, optional
        Told a short description at each step.

    Returns
    -------
    IngestReport
        Counts per file: read, accepted (added or replacing), duplicates, quarantined.

    Raises
    ------
    IngestError
        If a file cannot be read at all; nothing is written then.
    """
    say = progress or (lambda _msg: None)
    plans = plan_files(paths, format=format)
    wh.ensure_warehouse(con)
    run_id = uuid.uuid4().hex
    started = _now()
    scratch = con if wh.backend_of(con) == "duckdb" else _scratch_engine()
    prepared: list[_Prepared] = []
    # hashing runs beside the scans (hashlib releases the GIL): the run record needs it
    hasher = ThreadPoolExecutor(max_workers=1)
    hashes = {plan.path: hasher.submit(content_hash, plan.path) for plan in plans}
    try:
        with _malloc_pool():
            for plan in plans:
                say(f"reading {plan.path.name}")
                prepared.append(_prepare(scratch, con, plan, run_id, hashes[plan.path]))
        say("writing to the warehouse")
        with wh.unordered_writes(con), wh.transaction(con):
            # another run's (or the decision log's) comparisons with the warehouse must see
            # this one's rows, or both add them (PostgreSQL; a DuckDB file has one writer)
            wh.serialise_writes(con, TABLES)
            for item in prepared:
                publish_file(
                    con,
                    item.report,
                    item.derived,
                    item.quarantine,
                    item.shifts,
                    run_id=run_id,
                    started=started,
                )
                _check_accounting(item.report)
                for note in item.plan.adapter.warnings(item.report.tables):
                    warnings.warn(f"{item.report.path}: {note}", MarketloopWarning,
                                  stacklevel=2)
    finally:
        hasher.shutdown(cancel_futures=True)
        for item in prepared:
            if item.staged is not None:
                item.staged.close()
        wh.drop_staging(con, [n for item in prepared for n in item.cleanup])
    return IngestReport(run_id, [item.report for item in prepared])


@contextlib.contextmanager
def _malloc_pool() -> Iterator[None]:
    """Arrow allocates from the C library's malloc while files are read, then as before.

    Reading a 337 MB CSV file took 4.8 s with pyarrow's default allocator (mimalloc) on the
    development machine, against 1.5 s with malloc: ``perf`` put 44% of it in the kernel
    zeroing the fresh (huge) pages mimalloc asked for (docs/benchmarks.md, "Ingest"). A
    buffer remembers the pool it came from, so switching back is safe.
    """
    before = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(before)


def _scratch_engine() -> BaseBackend:
    scratch = ibis.duckdb.connect()
    scratch.raw_sql("SET TimeZone = 'UTC'")
    scratch.raw_sql("SET enable_progress_bar = false")
    return scratch


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _prepare(
    scratch: BaseBackend, con: BaseBackend, plan: _Plan, run_id: str, digest_of: Future[str]
) -> _Prepared:
    """Read, type and de-duplicate one file in the scratch engine."""
    kinds = {c.name: c.kind for c in plan.contract.columns}
    staged = stage(scratch, plan.path, plan.kind, plan.columns, kinds=kinds)
    tag = uuid.uuid4().hex[:10]
    key = plan.adapter.dedupe_key(plan.contract)
    checked = validate(plan.adapter.normalise(staged.rows), plan.contract,
                       checks=plan.adapter.checks)
    try:
        # the key's hash is computed in the same parallel pass (see _split_repeats)
        stored = scratch.create_table(
            f"_ml_typed_{tag}", checked.mutate(_h=_key_hash(checked, key)), temp=True
        )
    except Exception as exc:  # duckdb.Error while scanning: the file is not what it says
        staged.close()
        raise IngestError(
            describe(str(plan.path), f"a readable {plan.kind.upper()} file", _first_line(exc))
        ) from None
    staged.track(f"_ml_typed_{tag}")
    typed = stored
    digest = digest_of.result()
    report = FileReport(
        path=str(plan.path.resolve()),
        source=f"{plan.path.name}#{digest[:12]}",
        adapter=plan.adapter.name,
        table=plan.contract.name,
        content_hash=digest,
    )
    rejects = staged.rejects()
    n_parsed = _scalar(typed.count())
    report.read = n_parsed + len(rejects)
    report.add_reasons(rejects["reason"].value_counts().items())
    bad = typed.filter(typed._reason.notnull())
    report.add_reasons(_fetch_pairs(bad.group_by("_reason").aggregate(n=bad.count())))
    bad = staged.renumber(
        bad.select("_row_no", reason=bad._reason, raw=raw_json(bad, plan.contract))
    )

    valid = typed.filter(typed._reason.isnull()).select(*plan.contract.names, "_row_no", "_h")
    valid, repeats = _split_repeats(scratch, valid, key, tag)
    valid = valid.drop("_h")
    quarantine_parts = [bad.rename(row_no="_row_no")]
    if repeats is not None:
        report.duplicates += _scalar(repeats.filter(repeats._same).count())
        conflicts = repeats.filter(~repeats._same)
        report.add_reasons(
            _fetch_pairs(conflicts.group_by("reason").aggregate(n=conflicts.count()))
        )
        quarantine_parts.append(
            staged.renumber(conflicts.select("_row_no", "reason", "raw")).rename(row_no="_row_no")
        )
    quarantine = _quarantine_rows(scratch, quarantine_parts, rejects, report, run_id, tag)
    for name in (f"_ml_repeats_{tag}", f"_ml_quarantine_{tag}"):
        staged.track(name)
    derived = plan.adapter.derive(valid, plan.contract)
    cleanup: list[str] = []
    if scratch is not con:  # PostgreSQL: bring the typed rows and the refused ones over
        derived, quarantine, cleanup = _upload(con, derived, quarantine, tag)
    shifts = None
    if len(rejects) and staged.counts_parsed_only:
        shifts = wh.stage_table(con, f"_ml_shifts_{tag}", staged.shifts())
        cleanup.append(f"_ml_shifts_{tag}")
    return _Prepared(plan, report, derived, quarantine, cleanup, staged, shifts)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0].rstrip(".") if lines else type(exc).__name__


def _scalar(expr: ibis.Scalar) -> int:
    return int(expr.to_pyarrow().as_py())


def _fetch_pairs(expr: ibis.Table) -> list[tuple[str, int]]:
    frame = expr.to_pyarrow()
    return list(zip(frame.column(0).to_pylist(), frame.column(1).to_pylist(), strict=True))


def _split_repeats(
    scratch: BaseBackend, valid: ibis.Table, key: tuple[str, ...], tag: str
) -> tuple[ibis.Table, ibis.Table | None]:
    """Rows whose key appeared earlier in the file: same content (duplicate) or not (conflict).

    ``valid`` carries ``_h``, a 64-bit hash of the key (:func:`_key_hash`). Candidates are
    found by sorting the hashes in numpy (a hash aggregate with one group per row cost
    several times as much); the rows with a repeated hash are then grouped on the key
    itself, so a collision of two keys only adds a candidate and the result is exact.
    """
    repeated = _repeated_values(scratch.to_pyarrow(valid.select("_h")).column(0).to_numpy())
    if not len(repeated):
        return valid, None
    candidates = ibis.memtable(pa.table({"_h": repeated}))
    multi = valid.filter(valid._h.isin(candidates._h))
    content = [c for c in valid.columns if c not in ("_row_no", "_h")]
    fingerprint = ibis.struct({c: multi[c] for c in content}).cast("json").cast("string")
    window = ibis.window(group_by=list(key), order_by="_row_no")
    ranked = multi.mutate(
        _rank=ibis.row_number().over(window),
        _print=fingerprint,
        _first=fingerprint.first().over(window),
    )
    later = ranked.filter(ranked._rank > 0)
    repeats = scratch.create_table(
        f"_ml_repeats_{tag}",
        later.select(
            "_row_no",
            _same=later._print == later._first,
            reason=ibis.literal(f"conflicting_duplicate:{'|'.join(key)}"),
            raw=later._print,
        ),
        temp=True,
    )
    if _scalar(repeats.count()) == 0:
        return valid, None
    return valid.anti_join(repeats, "_row_no"), repeats


def _repeated_values(values: np.ndarray) -> np.ndarray:
    """The values that occur more than once in ``values`` (int64), sorted, each once.

    The negative and the other values are sorted in two threads (numpy releases the GIL
    while it sorts): a key hash splits about evenly, and on 10 M hashes this takes 0.65 s
    against 1.1 s for one sort of them all.
    """
    halves = [values[values < 0], values[values >= 0]]
    with ThreadPoolExecutor(max_workers=2) as pool:
        ordered = list(pool.map(np.sort, halves))
    return np.concatenate([np.unique(h[1:][h[1:] == h[:-1]]) for h in ordered])


def _key_hash(table: ibis.Table, key: tuple[str, ...]) -> ir.IntegerValue:
    """A 64-bit hash of the key columns (equal keys, nulls included, hash alike)."""
    return ibis.struct({k: table[k] for k in key}).hash()


def _quarantine_rows(
    scratch: BaseBackend,
    parts: list[ibis.Table],
    rejects: pd.DataFrame,
    report: FileReport,
    run_id: str,
    tag: str,
) -> ibis.Table:
    frames = [p.select("row_no", "reason", "raw") for p in parts]
    if len(rejects):
        frames.append(
            ibis.memtable(rejects.astype({"raw": "string"})).select("row_no", "reason", "raw")
        )
    rows = ibis.union(*frames) if len(frames) > 1 else frames[0]
    rows = rows.select(
        source=ibis.literal(report.source),
        row_no=rows.row_no.cast("int64"),
        table_name=ibis.literal(report.table),
        reason=rows.reason.cast("string"),
        raw=rows.raw.cast("string"),
        run_id=ibis.literal(run_id),
    )
    return scratch.create_table(f"_ml_quarantine_{tag}", rows, temp=True)


def _upload(
    con: BaseBackend, derived: list[Derived], quarantine: ibis.Table, tag: str
) -> tuple[list[Derived], ibis.Table, list[str]]:
    names, moved = [], []
    for i, d in enumerate(derived):
        name = f"_ml_stage_{tag}_{i}"
        moved.append(
            replace(d, table=wh.stage_table(con, name, d.table.to_pyarrow()))
        )
        names.append(name)
    qname = f"_ml_stage_{tag}_q"
    q = wh.stage_table(con, qname, quarantine.to_pyarrow())
    return moved, q, [*names, qname]


def _check_accounting(report: FileReport) -> None:
    total = report.accepted + report.duplicates + report.quarantined
    if total != report.read:  # pragma: no cover - a bug, never a user error
        raise AssertionError(
            f"{report.path}: read {report.read} != accepted {report.accepted} + duplicates "
            f"{report.duplicates} + quarantined {report.quarantined}"
        )
