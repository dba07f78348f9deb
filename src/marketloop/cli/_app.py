"""The Typer application every ``marketloop`` command registers on, and the error edge."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    name="marketloop",
    help="Open, auditable AI-driven database marketing for online shops.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: "[service]" is a TOML table, not markup
)

#: Normal output (tables, JSON) goes to stdout; progress and errors to stderr.
#: Lines of text are never wrapped (a path or a message split over two lines breaks the
#: scripts that read them); tables take the terminal's width, or 140 columns in a pipe.
console = Console(highlight=False, soft_wrap=True)
if not console.is_terminal:  # pipes and files get full-width tables, not 80 columns
    console = Console(highlight=False, width=140, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


#: The ``--warehouse`` option every command that reads or writes the warehouse takes.
WarehouseOption = Annotated[
    str | None,
    typer.Option(
        "--warehouse",
        help="Warehouse URL: duckdb:///file.duckdb (a relative path; duckdb:////abs/path for "
        "an absolute one) or postgresql://user@host:port/db (default MARKETLOOP_WAREHOUSE_URL, "
        "else duckdb:///marketloop.duckdb).",
    ),
]


def warehouse_url(url: str | None) -> str:
    """The URL given on the command line, else the settings' (environment or marketloop.toml)."""
    from marketloop.config import load_settings
    from marketloop.data.warehouse import is_in_memory
    from marketloop.exceptions import ConfigError, describe

    chosen = url or load_settings().warehouse_url
    if is_in_memory(chosen):
        raise ConfigError(
            describe(
                "--warehouse",
                "a warehouse that outlives the command (a DuckDB file or PostgreSQL)",
                f"{chosen!r}, an in-memory database that would keep nothing",
                "Example: duckdb:///marketloop.duckdb",
            )
        )
    return chosen


def fail(message: str) -> typer.Exit:
    """Print one line to stderr and return the exit (code 2) for the caller to raise."""
    err_console.print(f"error: {message}", markup=False, soft_wrap=True)
    return typer.Exit(code=2)


def run(argv: list[str] | None = None) -> None:
    """Run the CLI: a :class:`MarketloopError` becomes one line on stderr and exit code 2.

    Usage errors (an unknown option, a missing argument) are Typer's, also exit code 2.
    """
    from marketloop.exceptions import MarketloopError

    _warnings_as_lines()
    try:
        app(args=argv, prog_name="marketloop")
    except MarketloopError as exc:
        err_console.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:
        import os

        if os.environ.get("MARKETLOOP_DEBUG"):
            raise
        err_console.print(
            f"internal error ({type(exc).__name__}): {exc}. This is a bug in marketloop; "
            "run again with MARKETLOOP_DEBUG=1 for the traceback and report it.",
            markup=False,
            soft_wrap=True,
        )
        raise SystemExit(1) from None


def _warnings_as_lines() -> None:
    """marketloop's own warnings as one ``WARNING: ...`` line on stderr each (others as
    Python shows them)."""
    import warnings

    from marketloop.exceptions import MarketloopWarning

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
        if issubclass(category, MarketloopWarning):
            err_console.print(f"WARNING: {message}", markup=False, soft_wrap=True)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    warnings.simplefilter("default", MarketloopWarning)


@app.command()
def version() -> None:
    """Print marketloop's version."""
    from marketloop import __version__

    console.print(__version__)


@app.callback()
def _root() -> None:
    """marketloop: the closed loop data → strategy → execution → feedback, on your shop's data.

    Example: marketloop simulate --customers 2000 --days 180 --seed 1 --out shop/
    """
