"""The ``marketloop`` command line. Each sub-module registers its commands on :data:`app`."""

from __future__ import annotations

from marketloop.cli._app import app, run

# Importing the command modules registers their commands.
from marketloop.cli import simulate as _simulate  # noqa: E402,F401  isort: skip
from marketloop.cli import warehouse as _warehouse  # noqa: E402,F401  isort: skip
from marketloop.cli import demo as _demo  # noqa: E402,F401  isort: skip
from marketloop.cli import clv as _clv  # noqa: E402,F401  isort: skip
from marketloop.cli import profile as _profile  # noqa: E402,F401  isort: skip
from marketloop.cli import train as _train  # noqa: E402,F401  isort: skip
from marketloop.cli import policy as _policy  # noqa: E402,F401  isort: skip
from marketloop.cli import experiment as _experiment  # noqa: E402,F401  isort: skip
from marketloop.cli import recommend as _recommend  # noqa: E402,F401  isort: skip
from marketloop.cli import plan_campaign as _plan_campaign  # noqa: E402,F401  isort: skip
from marketloop.cli import serve as _serve  # noqa: E402,F401  isort: skip
from marketloop.cli import plan_winback as _plan_winback  # noqa: E402,F401  isort: skip


def main() -> None:
    """Entry point of the ``marketloop`` console script."""
    run()


__all__ = ["app", "main"]
