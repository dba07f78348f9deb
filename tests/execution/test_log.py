"""The decision log: every queued row lands in the warehouse, written by a thread or a process.

The writer process is a real subprocess; the test that kills it with SIGKILL checks the log
goes on writing in its own thread and loses nothing; another checks a killed service leaves
no writer behind.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from marketloop.execution.config import load_service_config
from marketloop.execution.decide import Decider, Request
from marketloop.execution.log import DecisionLog
from marketloop.execution.state import make_state

TS = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)


def _decisions(n: int) -> list:
    config = load_service_config(None, state="memory", epsilon=0.0)
    decider = Decider(config, make_state("memory", config.limits))

    async def run() -> list:
        return [await decider.decide(Request(f"c{i}", True, {"dwell_ms": 45_000}, now=TS))
                for i in range(n)]
    return asyncio.run(run())


def _queue(log: DecisionLog, decisions: list) -> None:
    for d in decisions:
        log.decision(d, {"dwell_ms": 45_000})
        log.outcome(d.decision_id, "conversion", 1.0, TS)
    log.event({"event_id": "e1", "customer_id": "c0", "anonymous_id": None, "session_id": "s1",
               "ts": TS.replace(tzinfo=None), "type": "product_view", "product_id": "p1",
               "dwell_ms": 45_000})


def _tables(path: Path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {"decisions": con.sql("SELECT decision_id, action, propensity, reasons FROM "
                                     "decisions ORDER BY decision_id").fetchall(),
                "outcomes": con.sql("SELECT decision_id, kind, value FROM outcomes "
                                    "ORDER BY decision_id").fetchall(),
                "events": con.sql("SELECT event_id, dwell_ms FROM events").fetchall()}
    finally:
        con.close()


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_every_queued_row_lands_once(tmp_path: Path, writer: str) -> None:
    decisions = _decisions(300)
    log = DecisionLog(f"duckdb:///{tmp_path / 'w.duckdb'}", flush_s=0.05, writer=writer)
    log.start()
    _queue(log, decisions[:150])
    _queue(log, decisions[150:])
    log.stop()
    assert log.errors == 0 and log.pending == 0 and log.written == 2 * 300 + 2
    tables = _tables(tmp_path / "w.duckdb")
    assert [r[0] for r in tables["decisions"]] == sorted(d.decision_id for d in decisions)
    assert {r[1] for r in tables["decisions"]} == {"pct10@app"}
    assert json.loads(tables["decisions"][0][3])["reasons"][0] == "rule dwell: pct10"
    # the event e1 was queued twice: a retry of one event_id is stored once
    assert len(tables["outcomes"]) == 300 and tables["events"] == [("e1", 45_000)]


def test_a_killed_writer_process_loses_nothing(tmp_path: Path) -> None:
    decisions = _decisions(200)
    log = DecisionLog(f"duckdb:///{tmp_path / 'w.duckdb'}", flush_s=60, writer="process")
    log.start()
    try:
        _queue(log, decisions[:100])
        log._flush()  # through the writer process
        assert log._process is not None
        os.kill(log._process.process.pid, signal.SIGKILL)
        log._process.process.wait()
        _queue(log, decisions[100:])
    finally:
        log.stop()  # the process is gone: the last batch is written by the thread
    assert log._process is None and log.errors == 0 and log.pending == 0
    tables = _tables(tmp_path / "w.duckdb")
    assert [r[0] for r in tables["decisions"]] == sorted(d.decision_id for d in decisions)
    assert len(tables["outcomes"]) == 200


def test_the_writer_process_ends_with_the_service(tmp_path: Path) -> None:
    script = tmp_path / "service.py"  # no __main__ guard: nothing of it may run again
    script.write_text(
        "import sys, time\n"
        "from marketloop.execution.log import DecisionLog\n"
        f"log = DecisionLog('duckdb:///{tmp_path / 'w.duckdb'}', writer='process')\n"
        "log.start()\n"
        "print(log._process.process.pid, flush=True)\n"
        "time.sleep(60)\n")
    service = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert service.stdout is not None
    writer = int(service.stdout.readline())
    service.kill()
    service.wait()
    for _ in range(100):  # its input closed: it exits
        if not _alive(writer):
            break
        time.sleep(0.05)
    assert not _alive(writer)


def test_the_writer_process_holds_the_file_while_busy_and_lets_go_when_idle(
        tmp_path: Path) -> None:
    """The writer keeps its connection from batch to batch (opening a DuckDB file costs more
    than the insert) and closes it once no batch has come for IDLE_S: then another process
    can open the warehouse. A decision is found through the writer while it holds the file."""
    from marketloop.execution._log_writer import IDLE_S

    path = tmp_path / "w.duckdb"
    decisions = _decisions(20)
    log = DecisionLog(f"duckdb:///{path}", flush_s=60, writer="process")
    log.start()
    try:
        _queue(log, decisions)
        log._flush()
        with pytest.raises(duckdb.IOException, match="lock"):
            duckdb.connect(str(path)).close()  # held by the writer process
        found = log.find(decisions[3].decision_id)
        assert found is not None and found["decision_id"] == decisions[3].decision_id
        assert found["context"] == {"dwell_ms": 45_000}
        assert log.find("no-such-decision") is None
        deadline = time.monotonic() + IDLE_S + 10
        while True:
            try:
                duckdb.connect(str(path)).close()
                break
            except duckdb.IOException:
                assert time.monotonic() < deadline, "the idle writer kept the file"
                time.sleep(0.1)
        _queue(log, _decisions(1))  # the next batch opens the file again
        log._flush()
        assert log.errors == 0
    finally:
        log.stop()
    assert len(_tables(path)["decisions"]) == 21


def test_a_held_connection_that_had_to_wait_for_the_file_stops_holding_it(
        tmp_path: Path) -> None:
    """Unshared, the writer's connection stays open between pieces of work; once an open
    had to wait for another process's lock, it is closed after each piece (for share_s)."""
    from marketloop.execution.log import HeldConnection

    path = tmp_path / "w.duckdb"
    duckdb.connect(str(path)).close()
    held = HeldConnection(f"duckdb:///{path}", hold_s=60, share_s=60)
    held.run(lambda con: None)
    assert held.is_open
    held.close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, duckdb; c = duckdb.connect(sys.argv[1]); "
         "print('held', flush=True); time.sleep(0.5); c.close()", str(path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        held.run(lambda con: None)  # waits for the holder to let go
        assert time.monotonic() - started > 0.1 and not held.is_open
        held.run(lambda con: None)
        assert not held.is_open  # still shared: closed after each piece of work
    finally:
        holder.kill()
        holder.wait()


def test_two_workers_writer_processes_share_one_duckdb_file(tmp_path: Path) -> None:
    """Two workers' logs write one DuckDB file at once: each writer waits for the other's
    lock, neither holds the file for long, and every row lands."""
    import threading

    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    decisions = _decisions(400)
    logs = [DecisionLog(url, flush_s=0.05, writer="process") for _ in range(2)]
    for log in logs:
        log.start()

    def feed(log: DecisionLog, part: list) -> None:
        for k in range(0, len(part), 20):
            _queue(log, part[k : k + 20])
            time.sleep(0.02)

    feeders = [threading.Thread(target=feed, args=(log, decisions[i::2]))
               for i, log in enumerate(logs)]
    for t in feeders:
        t.start()
    for t in feeders:
        t.join()
    for log in logs:
        log.stop()
    assert [(log.errors, log.pending, log.written) for log in logs] == [(0, 0, 2 * 200 + 10)] * 2
    tables = _tables(tmp_path / "w.duckdb")
    assert [r[0] for r in tables["decisions"]] == sorted(d.decision_id for d in decisions)
    assert len(tables["outcomes"]) == 400 and tables["events"] == [("e1", 45_000)]


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for its new parent to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _view(i: int) -> tuple[str, dict]:
    return ("events", {"event_id": f"e{i}", "customer_id": f"c{i}", "anonymous_id": None,
                       "session_id": "s1", "ts": TS.replace(tzinfo=None), "type": "page_view",
                       "product_id": None, "dwell_ms": None})


def test_stop_writes_every_queued_row_not_one_batch(tmp_path: Path) -> None:
    log = DecisionLog(f"duckdb:///{tmp_path / 'w.duckdb'}", flush_s=60, writer="thread")
    log.start()
    for i in range(5_000):  # more than a batch (2,000), nothing flushed before the stop
        log.event(_view(i)[1])
    log.stop()
    assert log.pending == 0 and log.written == 5_000
    assert len(_tables(tmp_path / "w.duckdb")["events"]) == 5_000


def test_a_row_the_warehouse_refuses_is_set_aside_not_retried_forever(tmp_path: Path) -> None:
    log = DecisionLog(f"duckdb:///{tmp_path / 'w.duckdb'}", flush_s=60, writer="thread")
    log.start()
    for i in range(300):
        log.event(_view(i)[1])
    log.event({**_view(300)[1], "dwell_ms": "not a number"})  # the contract says int
    for i in range(301, 600):
        log.event(_view(i)[1])
    log._flush()  # fails: the row stays with its batch
    assert log.failing and log.pending == 600
    log._flush()  # fails again: the batch is written in halves, the bad row set aside
    assert not log.failing and log.pending == 0 and log.rejected == 1
    log.stop()
    assert len(_tables(tmp_path / "w.duckdb")["events"]) == 599


def test_workers_writing_the_same_retries_to_postgresql_store_each_once(pg_url: str) -> None:
    """Several workers' log writers flush the same retried events and outcomes at the same
    moment: each event_id and each (decision_id, kind) is stored once."""
    import threading

    import psycopg

    from marketloop.data.warehouse import connect, ensure_warehouse
    from marketloop.execution.log import write_rows

    con = connect(pg_url)
    ensure_warehouse(con)
    con.disconnect()
    n_workers, rounds = 6, 4
    for r in range(rounds):
        rows = [_view(r * 1_000 + i) for i in range(40)]
        rows += [("outcomes", {"decision_id": f"d{r}-{i}", "kind": "conversion", "value": 1.0,
                               "ts": TS.replace(tzinfo=None)}) for i in range(40)]
        start = threading.Barrier(n_workers)
        errors: list[BaseException] = []

        def worker(rows: list = rows, start: threading.Barrier = start,
                   errors: list = errors) -> None:
            try:
                start.wait()
                write_rows(pg_url, [(t, dict(row)) for t, row in rows])
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(n_workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
    schema = pg_url.split("search_path%3D")[1]
    with psycopg.connect(pg_url.split("?")[0]) as raw:
        events = raw.execute(f'SELECT count(*), count(DISTINCT event_id) FROM "{schema}".events'
                             ).fetchone()
        outcomes = raw.execute(f'SELECT count(*), count(DISTINCT (decision_id, kind)) FROM '
                               f'"{schema}".outcomes').fetchone()
    assert events == (40 * rounds, 40 * rounds)
    assert outcomes == (40 * rounds, 40 * rounds)


def test_a_log_writer_waits_for_an_ingest_writing_the_same_events(pg_url: str) -> None:
    """Ingest holds the canonical tables' write locks to its commit; a writer flushing an
    event the ingest is adding waits, then finds it stored and adds nothing."""
    import threading

    import psycopg

    from marketloop.data import warehouse as wh
    from marketloop.data.schema import TABLES
    from marketloop.execution.log import write_rows

    con = wh.connect(pg_url)
    wh.ensure_warehouse(con)
    table, row = _view(1)
    done = threading.Event()
    with wh.transaction(con):
        wh.serialise_writes(con, TABLES)  # what an ingest run takes
        writer = threading.Thread(target=lambda: (write_rows(pg_url, [(table, dict(row))]),
                                                  done.set()))
        writer.start()
        assert not done.wait(1.5), "the writer did not wait for the ingest's commit"
        wh.insert_values(con, "events", row)
    writer.join(30)
    assert done.is_set()
    con.disconnect()
    schema = pg_url.split("search_path%3D")[1]
    with psycopg.connect(pg_url.split("?")[0]) as raw:
        n = raw.execute(f'SELECT count(*) FROM "{schema}".events WHERE event_id = %s',
                        (row["event_id"],)).fetchone()[0]
    assert n == 1
