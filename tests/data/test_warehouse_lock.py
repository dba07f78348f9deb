"""A DuckDB file another process holds: refused at once by default, waited for on request."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from marketloop.data.warehouse import connect
from marketloop.exceptions import ConfigError

HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("held", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def _hold(file: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(file), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_locked_file_is_refused_at_once_with_the_reason(tmp_path: Path) -> None:
    file = tmp_path / "w.duckdb"
    proc = _hold(file, 30)
    try:
        started = time.monotonic()
        with pytest.raises(ConfigError, match="lock"):
            connect(f"duckdb:///{file}")
        assert time.monotonic() - started < 5
        with pytest.raises(ConfigError, match="lock"):  # a wait shorter than the hold
            connect(f"duckdb:///{file}", lock_wait_s=0.3)
    finally:
        proc.kill()
        proc.wait()


def test_lock_wait_opens_the_file_once_the_other_process_lets_go(tmp_path: Path) -> None:
    file = tmp_path / "w.duckdb"
    proc = _hold(file, 1.0)
    try:
        con = connect(f"duckdb:///{file}", lock_wait_s=30)
        assert con.raw_sql("SELECT 42").fetchone() == (42,)
        con.disconnect()
        assert proc.wait(timeout=30) == 0  # it held the lock until it closed
    finally:
        proc.kill()
        proc.wait()
