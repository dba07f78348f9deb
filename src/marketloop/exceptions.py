"""The errors and warnings marketloop raises on purpose."""

from __future__ import annotations


class MarketloopError(Exception):
    """Root of every error marketloop raises on purpose."""


class ConfigError(MarketloopError, ValueError):
    """A setting, config file or command-line option is invalid."""


class SchemaError(MarketloopError, ValueError):
    """A table, file or frame lacks a column, or a column has the wrong type."""


class IngestError(MarketloopError, OSError):
    """An input file cannot be read at all (missing, unreadable, not the expected layout)."""


class NotFittedError(MarketloopError, AttributeError):
    """A model was used before ``fit``."""


class UnsupportedBackendError(MarketloopError, NotImplementedError):
    """The warehouse backend cannot run this operation."""


class PolicyViolation(MarketloopError):
    """Acting would break consent, a contact cap or a budget."""


class MarketloopWarning(UserWarning):
    """Root of marketloop's warnings: a silent conversion or a questionable input."""


def describe(where: str, expected: str, found: str, hint: str = "") -> str:
    """Format an error message: the place, what was expected, what was found, the remedy.

    Examples
    --------
    >>> describe("orders.csv header", "column ordered_at", "date", "Rename the column.")
    'orders.csv header: expected column ordered_at; found date. Rename the column.'
    """
    message = f"{where}: expected {expected}; found {found}."
    return f"{message} {hint}" if hint else message
