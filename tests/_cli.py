"""Run the ``marketloop`` command as users do: a real subprocess of this interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def marketloop(
    *args: str, cwd: str | Path | None = None, timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    """``python -m marketloop ARGS``, with its exit code, stdout and stderr as text."""
    return subprocess.run(
        [sys.executable, "-m", "marketloop", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )
