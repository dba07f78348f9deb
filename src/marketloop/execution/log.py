"""The decision log: decisions, outcomes and site events into the warehouse, off the request path.

The request path only appends to an in-memory queue (microseconds); a writer thread takes
what has queued every ``flush_s`` seconds (or at 2,000 rows) and inserts it into the
warehouse's ``decisions``, ``outcomes`` and ``events`` tables in one transaction per batch. A DuckDB
file admits one writing process at a time, so the writer thread opens its connection per
batch, the writer process holds one for at most a few seconds (:class:`HeldConnection`),
and both retry while another worker holds the file (each worker of ``marketloop serve
--workers N`` has its own writer); PostgreSQL takes them concurrently. On shutdown the queue
is drained. A batch that cannot be written after retries is kept and retried with the next
one; :attr:`pending` says how many rows wait.

With ``writer="process"`` (the service's default) the thread hands each batch to a writer
*process* (:mod:`marketloop.execution._log_writer`) and waits for its answer: building the
frames and the insert (~80 ms of CPU for 500 rows on DuckDB, most of it holding the
interpreter lock) then never competes with the event loop for the lock, which only pays
for pickling the batch (~1.5 ms). Should that process die, the log writes in its own
thread from then on; nothing queued is lost.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

import ibis
import pandas as pd

from marketloop.execution._log_writer import WriterGone, WriterProcess
from marketloop.execution.decide import Decision

#: uvicorn's error log: rows lost or set aside are reported there, whole.
_logger = logging.getLogger("uvicorn.error")

DECISION_COLUMNS = ["decision_id", "customer_id", "ts", "policy", "action", "propensity",
                    "reasons"]
OUTCOME_COLUMNS = ["decision_id", "kind", "ts", "value"]
EVENT_COLUMNS = ["event_id", "customer_id", "anonymous_id", "session_id", "ts", "type",
                 "product_id", "dwell_ms"]
CONSENT_COLUMNS = ["customer_id", "channel", "purpose", "granted", "ts", "source"]
_COLUMNS = {"decisions": DECISION_COLUMNS, "outcomes": OUTCOME_COLUMNS, "events": EVENT_COLUMNS,
            "consents": CONSENT_COLUMNS}


class DecisionLog:
    """Batched writer of decisions and outcomes (see the module docstring).

    Parameters
    ----------
    warehouse_url : str or None
        Where to write; ``None`` keeps the rows in memory only (tests, benchmarks).
    flush_s : float, default=0.5
        Longest time a row waits in memory.
    recent : int, default=10_000
        Decisions kept in memory for ``GET /v1/decisions/{id}``.
    writer : {"thread", "process"}, default="thread"
        Where batches are written: in the writer thread, or by a writer process that the
        thread hands them to (see the module docstring).
    """

    def __init__(self, warehouse_url: str | None, *, flush_s: float = 0.5,
                 recent: int = 10_000, writer: Literal["thread", "process"] = "thread") -> None:
        self.warehouse_url = warehouse_url
        self.flush_s = flush_s
        self.writer = writer
        self._process: WriterProcess | None = None
        self._queue: queue.SimpleQueue[tuple[str, dict]] = queue.SimpleQueue()
        self._recent: dict[str, tuple[Decision, dict | None]] = {}
        self._order: deque[str] = deque(maxlen=recent)
        self._carry: list[tuple[str, dict]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.errors = 0
        self.rejected = 0
        self.last_error: str | None = None
        self._failed = False

    def start(self) -> None:
        """Start the writer thread, and the writer process if asked for (idempotent);
        creates missing warehouse tables."""
        if self.warehouse_url is not None:
            _with_connection(self.warehouse_url, _ensure)
            if self.writer == "process" and self._process is None:
                self._process = WriterProcess()  # its imports are done by the first batch
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Write what is queued and stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        while self.pending:  # every queued row, not one batch of them
            before = self.pending
            self._flush()
            if self.pending >= before:  # the warehouse refuses: say what is lost
                _logger.error("decision log: %d rows not written at shutdown (%s)",
                              self.pending, self.last_error)
                break
        if self._process is not None:
            self._process.close()
            self._process = None

    def decision(self, d: Decision, context: dict | None = None) -> None:
        """Queue a decision (and keep it for lookups)."""
        row = _as_row(d, context)
        self._recent[d.decision_id] = (d, context)  # answered as JSON only when looked up
        if len(self._order) == self._order.maxlen:
            self._recent.pop(self._order[0], None)
        self._order.append(d.decision_id)
        self._queue.put(("decisions", row))

    def outcome(self, decision_id: str, kind: str, value: float | None, ts: dt.datetime) -> None:
        """Queue an outcome of a decision."""
        self._queue.put(("outcomes", {"decision_id": decision_id, "kind": kind,
                                      "ts": ts.astimezone(dt.UTC).replace(tzinfo=None),
                                      "value": value}))

    def event(self, row: dict) -> None:
        """Queue a site event (the ``events`` table's columns, ``ts`` in UTC)."""
        self._queue.put(("events", row))

    def consent(self, customer_id: str, channel: str, purpose: str, granted: bool,
                ts: dt.datetime, source: str = "api") -> None:
        """Queue a consent change: it replaces the warehouse's row for its key."""
        self._queue.put(("consents", {"customer_id": customer_id, "channel": channel,
                                      "purpose": purpose, "granted": bool(granted),
                                      "ts": ts.astimezone(dt.UTC).replace(tzinfo=None),
                                      "source": source}))

    def lookup(self, decision_id: str) -> dict | None:
        """A recent decision as answered, or ``None`` (then the warehouse may have it)."""
        found = self._recent.get(decision_id)
        if found is None:
            return None
        decision, context = found
        return {**decision.to_json(), "context": context or {}}

    def find(self, decision_id: str) -> dict | None:
        """A decision from the warehouse's ``decisions`` table, in the answer's shape.

        For decisions no longer among the recent ones (an earlier run of the service, or
        older than the last ``recent``); ``None`` if the warehouse has none by that id.
        """
        if self.warehouse_url is None:
            return None
        row = self._call("find", decision_id)
        return _as_answer(row) if row is not None else None

    @property
    def failing(self) -> bool:
        """Whether the last write failed (its rows wait for the next flush)."""
        return self._failed

    @property
    def pending(self) -> int:
        """Rows not yet written."""
        return self._queue.qsize() + len(self._carry)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            self._flush()

    def _flush(self) -> None:
        rows = self._carry
        self._carry = []
        while len(rows) < 2_000:
            try:
                rows.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if not rows or self.warehouse_url is None:
            self.written += len(rows)
            return
        try:
            self._write(rows)
            self.written += len(rows)
            self._failed = False
        except Exception as exc:  # kept for the next flush; reported by /healthz
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            if self._failed:  # the second failure of these rows: one of them may be bad
                rows = self._set_bad_rows_aside(rows)
            self._failed = bool(rows)
            self._carry = rows

    def _set_bad_rows_aside(self, rows: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
        """Write ``rows`` in halves down to single rows; the rows the warehouse refuses on
        their own are set aside (counted in ``rejected`` and logged whole), so one bad row
        does not hold back every later one. Returns the rows to keep for later: all of
        them when the warehouse cannot be reached at all."""
        assert self.warehouse_url is not None
        try:
            self._call("ping")
        except Exception:
            return rows  # down, not refusing: keep everything
        bad: list[tuple[str, dict]] = []

        def write(part: list[tuple[str, dict]]) -> None:
            try:
                self._write(part)
                self.written += len(part)
            except Exception as exc:
                if len(part) == 1:
                    bad.append(part[0])
                    _logger.error("decision log: a %s row the warehouse refuses, set aside "
                                  "(%s: %s): %s", part[0][0], type(exc).__name__, exc,
                                  json.dumps(part[0][1], default=str))
                    return
                write(part[: len(part) // 2])
                write(part[len(part) // 2 :])

        write(rows)
        self.rejected += len(bad)
        return []

    def _write(self, rows: list[tuple[str, dict]]) -> None:
        self._call("write", rows)

    def _call(self, op: Literal["write", "find", "ping"], argument: object = None) -> Any:
        """Do ``op`` in the writer process, or here when there is none (or it died)."""
        assert self.warehouse_url is not None
        process = self._process
        if process is not None:
            try:
                return process.call(op, self.warehouse_url, argument)
            except WriterGone:  # the writer process died: work here from now on
                process.close()
                self._process = None
        if op == "write":
            return write_rows(self.warehouse_url, argument)  # type: ignore[arg-type]
        if op == "find":
            return find_row(self.warehouse_url, str(argument))
        return _with_connection(self.warehouse_url, lambda con: None)


def _as_row(d: Decision, context: dict | None) -> dict:
    """A decision as the ``decisions`` table keeps it: what :func:`_as_answer` reads back."""
    return {"decision_id": d.decision_id, "customer_id": d.customer_id,
            "ts": d.ts.astimezone(dt.UTC).replace(tzinfo=None), "policy": d.policy,
            "action": d.action, "propensity": d.propensity,
            "reasons": {"reasons": d.reasons, "context": context or {},
                        "campaign": d.campaign, "degraded": d.degraded,
                        "chosen": d.chosen, "chosen_propensity": d.chosen_propensity,
                        "refused": d.refused, "format": d.format,
                        "product_id": d.product_id, "dispatch": d.dispatch}}


def _as_answer(row: dict) -> dict:
    """A ``decisions`` row (:func:`_as_row`) as ``POST /v1/decide`` answered it, with its
    context: the decision is rebuilt, so the answer's shape is :meth:`Decision.to_json`'s."""
    extra = row.get("reasons")
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError:
            extra = {"reasons": [extra]}
    extra = extra if isinstance(extra, dict) else {}
    offer, _, channel = str(row["action"]).partition("@")
    chosen_propensity = extra.get("chosen_propensity")
    decision = Decision(
        row["decision_id"], row["customer_id"], row["ts"].replace(tzinfo=dt.UTC),
        row["policy"], offer if channel else None, channel or None, row["propensity"],
        list(extra.get("reasons") or []), extra.get("campaign") or "default",
        degraded=bool(extra.get("degraded")), format=extra.get("format"),
        product_id=extra.get("product_id"), dispatch=extra.get("dispatch") or "caller",
        chosen=extra.get("chosen"),
        chosen_propensity=(row["propensity"] if chosen_propensity is None
                           else chosen_propensity))
    return {**decision.to_json(), "context": extra.get("context") or {}}


def write_rows(warehouse_url: str, rows: list[tuple[str, dict]], *,
               connection: HeldConnection | None = None) -> None:
    """Insert queued ``(table, row)`` pairs into the warehouse in one transaction, on
    ``connection`` if given, else on a connection opened for this batch."""
    for table, row in rows:  # JSON made here, off the request path
        if table == "decisions" and isinstance(row["reasons"], dict):
            row["reasons"] = json.dumps(row["reasons"], default=str)
    frames = {table: pd.DataFrame([r for t, r in rows if t == table], columns=columns)
              for table, columns in _COLUMNS.items()}
    if connection is not None:
        connection.run(lambda con: _insert(con, frames))
    else:
        _with_connection(warehouse_url, lambda con: _insert(con, frames))


def find_row(warehouse_url: str, decision_id: str, *,
             connection: HeldConnection | None = None) -> dict | None:
    """The ``decisions`` row of ``decision_id`` (:func:`_as_row`'s shape), or ``None``."""
    found: list[dict] = []

    def work(con: object) -> None:
        if "decisions" not in set(con.list_tables()):  # type: ignore[attr-defined]
            return
        t = con.table("decisions")  # type: ignore[attr-defined]
        found.extend(t.filter(t.decision_id == decision_id).limit(1).to_pyarrow().to_pylist())

    if connection is not None:
        connection.run(work)
    else:
        _with_connection(warehouse_url, work)
    return found[0] if found else None


class HeldConnection:
    """A warehouse connection kept open from one piece of work to the next, for at most
    ``hold_s`` seconds: the writer process's (see :mod:`marketloop.execution._log_writer`).

    Opening a DuckDB file and closing it (a checkpoint) costs ~50 ms of CPU, more than
    inserting a 500-row batch (~20 ms); holding the file shuts other processes out of it,
    so the connection is closed once it has been open ``hold_s`` seconds, when a piece of
    work fails (the next one starts on a fresh connection) and when the holder calls
    :meth:`close` (idle). An open that had to wait for another process's lock (another
    worker's writer) means the file is shared: for ``share_s`` seconds after it, every
    connection is closed after its piece of work, as :func:`_with_connection` does.
    """

    def __init__(self, url: str, *, hold_s: float, share_s: float = 60.0) -> None:
        self.url = url
        self.hold_s = hold_s
        self.share_s = share_s
        self._con: object | None = None
        self._opened = 0.0
        self._shared_until = 0.0

    @property
    def is_open(self) -> bool:
        """Whether a connection is held now."""
        return self._con is not None

    def run(self, work: Callable[[object], None]) -> None:
        """Do ``work(connection)``, opening one first if none is held (waiting, as
        :func:`_with_connection` does, while another process holds a DuckDB file)."""
        if self._con is None:
            self._con, waited = _open(self.url)
            self._opened = time.monotonic()
            if waited:
                self._shared_until = self._opened + self.share_s
        try:
            work(self._con)
        except BaseException:
            self.close()
            raise
        now = time.monotonic()
        if now - self._opened >= self.hold_s or now < self._shared_until:
            self.close()

    def close(self) -> None:
        """Close the held connection, if any."""
        con, self._con = self._con, None
        if con is not None:
            try:
                con.disconnect()  # type: ignore[attr-defined]
            except Exception:  # a connection that broke: nothing more to release
                pass


#: How long a connection waits while another process holds a DuckDB file (seconds).
LOCK_WAIT_S = 10.0


def _open(warehouse_url: str) -> tuple[object, bool]:
    """A connection to the warehouse, and whether it had to wait while another process
    held a DuckDB file (up to :data:`LOCK_WAIT_S`; other errors are raised at once)."""
    from marketloop.data.warehouse import connect

    waited: list[bool] = []
    con = connect(warehouse_url, lock_wait_s=LOCK_WAIT_S, on_lock_wait=lambda: waited.append(True))
    return con, bool(waited)


def _with_connection(warehouse_url: str, work: Callable[[object], None]) -> None:
    """Do ``work`` on a connection opened for it (see :func:`_open`) and closed after."""
    con, _ = _open(warehouse_url)
    try:
        work(con)
    finally:
        con.disconnect()  # type: ignore[attr-defined]


def _ensure(con: object) -> None:
    """Create missing tables; another worker creating them at the same moment is fine."""
    from marketloop.data.schema import TABLES
    from marketloop.data.warehouse import ensure_warehouse

    try:
        ensure_warehouse(con)  # type: ignore[arg-type]
    except Exception:
        if not set(TABLES) <= set(con.list_tables()):  # type: ignore[attr-defined]
            raise


#: Tables whose rows are kept once per key: a retried request (the same ``event_id``, a
#: second ``conversion`` of one decision) adds nothing. The first row of a key stays.
_ONCE = {"events": ["event_id"], "outcomes": ["decision_id", "kind"]}


def _new_keys(con: object, table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame``'s rows whose key is neither repeated before them nor in ``table`` already."""
    key = _ONCE[table]
    frame = frame.drop_duplicates(key, keep="first")
    if frame.empty:
        return frame
    stored = con.table(table)  # type: ignore[attr-defined]
    first = key[0]
    held = stored.filter(stored[first].isin(frame[first].unique().tolist())).select(key)
    have = held.to_pandas()
    if have.empty:
        return frame
    seen = pd.MultiIndex.from_frame(have[key].astype(str))
    mine = pd.MultiIndex.from_frame(frame[key].astype(str))
    return frame[~mine.isin(seen)]


def _typed(table: str, frame: pd.DataFrame) -> ibis.Table:
    """``frame`` typed by the table's contract: a column null in every row keeps its type
    (PostgreSQL refuses a batch whose column ibis can only call null)."""
    from marketloop.data.schema import TABLES

    types = TABLES[table].ibis_schema()
    return ibis.memtable(frame, schema=ibis.schema({c: types[c] for c in frame.columns}))


def _insert(con: object, frames: dict[str, pd.DataFrame]) -> None:
    import uuid

    from marketloop.data.warehouse import (
        delete_keys,
        drop_staging,
        serialise_writes,
        stage_table,
        transaction,
    )

    consents = frames["consents"].drop_duplicates(["customer_id", "channel", "purpose"],
                                                  keep="last")
    staged = []
    if len(consents):  # staged before the transaction: PostgreSQL commits a create
        staged.append(f"_ml_consent_keys_{uuid.uuid4().hex[:12]}")
        keys = stage_table(con, staged[0],  # type: ignore[arg-type]
                           consents[["customer_id", "channel", "purpose"]])
    try:
        with transaction(con):  # type: ignore[arg-type]
            # other workers' writers and ingest runs check the same keys: one at a time
            serialise_writes(con, [t for t in _ONCE if len(frames[t])])  # type: ignore[arg-type]
            if staged:  # the latest consent per key replaces the stored one
                delete_keys(con, "consents", keys)  # type: ignore[arg-type]
            for table, frame in {**frames, "consents": consents}.items():
                if table in _ONCE and len(frame):
                    frame = _new_keys(con, table, frame)
                if len(frame):
                    con.insert(table, _typed(table, frame))  # type: ignore[attr-defined]
    finally:
        if staged:
            drop_staging(con, staged)  # type: ignore[arg-type]


__all__ = ["DecisionLog"]
