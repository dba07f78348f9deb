"""marketloop: open, auditable AI-driven database marketing for online shops.

Importing the package does no work: no settings are read, no connection is opened.
"""

from __future__ import annotations

from marketloop.exceptions import (
    ConfigError,
    IngestError,
    MarketloopError,
    MarketloopWarning,
    NotFittedError,
    PolicyViolation,
    SchemaError,
    UnsupportedBackendError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "IngestError",
    "MarketloopError",
    "MarketloopWarning",
    "NotFittedError",
    "PolicyViolation",
    "SchemaError",
    "UnsupportedBackendError",
    "__version__",
]
