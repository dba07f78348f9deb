"""Shop export layouts mapped onto the canonical tables."""

from __future__ import annotations

from pathlib import Path

from marketloop.data.adapters._base import Adapter, Derived
from marketloop.data.adapters.canonical import CanonicalAdapter
from marketloop.data.adapters.online_retail import OnlineRetailAdapter
from marketloop.exceptions import ConfigError, IngestError, describe

#: Every adapter, by the name ``--format`` takes.
ADAPTERS: dict[str, Adapter] = {a.name: a for a in (CanonicalAdapter(), OnlineRetailAdapter())}


def detect(columns: list[str], path: Path, format: str = "auto") -> Adapter:
    """The adapter for a file with these ``columns``.

    Raises
    ------
    ConfigError
        If ``format`` names no adapter.
    IngestError
        If no adapter (or not the one named) recognises the columns.
    """
    if format != "auto":
        if format not in ADAPTERS:
            raise ConfigError(
                describe("--format", f"auto or one of {', '.join(ADAPTERS)}", repr(format))
            )
        adapter = ADAPTERS[format]
        if adapter.score(columns, path) == 0:
            raise IngestError(
                describe(str(path), f"the columns of {adapter.expected()}", ", ".join(columns))
            )
        return adapter
    scored = sorted(((a.score(columns, path), a.name) for a in ADAPTERS.values()), reverse=True)
    if scored[0][0] == 0:
        expected = " | ".join(a.expected() for a in ADAPTERS.values())
        raise IngestError(
            describe(
                str(path),
                f"the columns of a known layout ({expected})",
                ", ".join(columns) or "no columns",
                "Name the layout with --format or rename the columns.",
            )
        )
    return ADAPTERS[scored[0][1]]


__all__ = ["ADAPTERS", "Adapter", "CanonicalAdapter", "Derived", "OnlineRetailAdapter", "detect"]
