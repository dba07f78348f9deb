"""CLI commands: clv (placeholder until its module lands)."""

from __future__ import annotations
