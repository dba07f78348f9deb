"""Start a real ``marketloop serve`` in a subprocess on a free port, and stop it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(tmp: Path, *args: str, key: str = "test-key-0123456789",
           config: str | None = None, timeout: float = 60.0,
           ready: str = "/healthz") -> Iterator[str]:
    """Yield the base URL of a running service once ``ready`` answers 200; SIGTERM on exit."""
    port = free_port()
    cmd = [sys.executable, "-m", "marketloop", "serve", "--port", str(port), *args]
    if config is None or "warehouse_url" not in config:  # --warehouse wins over the config
        cmd += ["--warehouse", f"duckdb:///{tmp / 'warehouse.duckdb'}"]
    if config is not None:
        path = tmp / "service.toml"
        path.write_text(config, encoding="utf-8")
        cmd += ["--config", str(path)]
    env = {**os.environ, "MARKETLOOP_API_KEY": key, "OPENBLAS_NUM_THREADS": "1"}
    log = (tmp / f"serve-{port}.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"marketloop serve exited {proc.returncode}: "
                                   f"{(tmp / f'serve-{port}.log').read_text()}")
            try:
                if httpx.get(f"{url}{ready}", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"marketloop serve did not answer {ready} in time")
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
