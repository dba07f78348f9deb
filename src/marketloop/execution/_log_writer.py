"""The decision log's writer process: batches in on stdin, one answer each on stdout.

:class:`WriterProcess` starts ``python -m marketloop.execution._log_writer`` (a plain
subprocess, not :mod:`multiprocessing`: nothing of the service's own main module is run
again in it) in a session of its own, so a Ctrl-C or a signal to the service's process
group leaves it to finish the batch in hand; it ends when its input closes, which is also
what the service's death does. Each message is an 8-byte length and a pickle:
``(warehouse_url, rows)`` in, ``None`` (written) or the error's text out.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import IO

_HEAD = 8


class WriterGone(Exception):
    """The writer process is not there to answer (it died or could not start)."""


class WriterProcess:
    """A running writer process and the pipe to it."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[2])  # where ``marketloop`` is importable
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": root if not path else f"{root}{os.pathsep}{path}"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "marketloop.execution._log_writer"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=env, start_new_session=True)

    def write(self, warehouse_url: str, rows: list[tuple[str, dict]]) -> None:
        """Have the process write ``rows``; raises what it raised (as text), or WriterGone."""
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            _send(self.process.stdin, (warehouse_url, rows))
            reply = _receive(self.process.stdout)
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            raise WriterGone(f"the decision log's writer process ended ({exc})") from None
        if reply is not None:
            raise RuntimeError(reply)

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
    """The process: write each batch it is sent until its input closes."""
    import marketloop.data.warehouse  # noqa: F401 - imported before the first batch comes
    from marketloop.execution.log import write_rows

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            warehouse_url, rows = _receive(inp)
        except EOFError:
            return
        try:
            write_rows(warehouse_url, rows)
            reply = None
        except Exception as exc:  # told to the service, which keeps the batch and retries
            reply = f"{type(exc).__name__}: {exc}"
        _send(out, reply)


if __name__ == "__main__":
    main()
