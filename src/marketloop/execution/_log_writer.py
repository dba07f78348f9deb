"""The decision log's writer process: requests in on stdin, one answer each on stdout.

:class:`WriterProcess` starts ``python -m marketloop.execution._log_writer`` (a plain
subprocess, not :mod:`multiprocessing`: nothing of the service's own main module is run
again in it) in a session of its own, so a Ctrl-C or a signal to the service's process
group leaves it to finish the batch in hand; it ends when its input closes, which is also
what the service's death does. Each message is an 8-byte length and a pickle:
``(op, warehouse_url, argument)`` in, ``("ok", value)`` or ``("error", text)`` out. The
ops are ``"write"`` (a batch of rows), ``"find"`` (a decision id; the value is its row or
``None``) and ``"ping"`` (can the warehouse be opened).

The process keeps its warehouse connection open from one batch to the next, since opening
and closing a DuckDB file (a checkpoint) costs more CPU than a 500-row insert, but for at
most :data:`HOLD_S` seconds, and closes it as soon as no request has come for
:data:`IDLE_S` seconds: a DuckDB file admits one writing process, and the other workers'
writers, ``marketloop ingest`` and the reports need their turn.
"""

from __future__ import annotations

import os
import pickle
import select
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

_HEAD = 8

#: Longest time the process keeps one warehouse connection open (seconds).
HOLD_S = 2.0
#: A connection no request has used for this long is closed (seconds).
IDLE_S = 1.0


class WriterGone(Exception):
    """The writer process is not there to answer (it died or could not start)."""


class WriterProcess:
    """A running writer process and the pipe to it (one request at a time)."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[2])  # where ``marketloop`` is importable
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": root if not path else f"{root}{os.pathsep}{path}"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "marketloop.execution._log_writer"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=env, start_new_session=True)
        self._lock = threading.Lock()  # the log's thread writes, a request thread finds

    def write(self, warehouse_url: str, rows: list[tuple[str, dict]]) -> None:
        """Have the process write ``rows``; raises what it raised (as text), or WriterGone."""
        self.call("write", warehouse_url, rows)

    def call(self, op: str, warehouse_url: str, argument: object = None) -> Any:
        """Send one request and wait for its answer; the answer's value, or raises
        RuntimeError with the process's error text, or WriterGone."""
        assert self.process.stdin is not None and self.process.stdout is not None
        with self._lock:
            try:
                _send(self.process.stdin, (op, warehouse_url, argument))
                status, value = _receive(self.process.stdout)  # type: ignore[misc]
            except (OSError, EOFError, pickle.UnpicklingError) as exc:
                raise WriterGone(f"the decision log's writer process ended ({exc})") from None
        if status != "ok":
            raise RuntimeError(value)
        return value

    def close(self) -> None:
        """Close its input (it exits after the batch in hand) and wait for it."""
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()


def _send(pipe: IO[bytes], message: object) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    pipe.write(len(data).to_bytes(_HEAD, "big") + data)
    pipe.flush()


def _receive(pipe: IO[bytes]) -> object:
    head = pipe.read(_HEAD)
    if len(head) < _HEAD:
        raise EOFError("no answer")
    size = int.from_bytes(head, "big")
    data = pipe.read(size)
    if len(data) < size:
        raise EOFError("a truncated answer")
    return pickle.loads(data)


def main() -> None:
    """The process: answer each request until its input closes."""
    import marketloop.data.warehouse  # noqa: F401 - imported before the first batch comes
    from marketloop.execution.log import HeldConnection, find_row, write_rows

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    held: HeldConnection | None = None
    while True:
        # the service sends one request and waits for its answer, so nothing of the next
        # one is ever left in ``inp``'s buffer: select on the pipe sees every request
        if held is not None and held.is_open and not select.select([inp], [], [], IDLE_S)[0]:
            held.close()  # idle: let other processes have the file
            continue
        try:
            op, warehouse_url, argument = _receive(inp)  # type: ignore[misc]
        except EOFError:
            if held is not None:
                held.close()
            return
        if held is None or held.url != warehouse_url:
            if held is not None:
                held.close()
            held = HeldConnection(warehouse_url, hold_s=HOLD_S)
        try:
            if op == "write":
                value = write_rows(warehouse_url, argument, connection=held)
            elif op == "find":
                value = find_row(warehouse_url, str(argument), connection=held)
            elif op == "ping":
                value = held.run(lambda con: None)
            else:
                raise ValueError(f"unknown request {op!r}")
            reply: tuple[str, object] = ("ok", value)
        except Exception as exc:  # told to the service, which keeps the batch and retries
            reply = ("error", f"{type(exc).__name__}: {exc}")
        _send(out, reply)


if __name__ == "__main__":
    main()
