"""CLI commands: profile (placeholder until its module lands)."""

from __future__ import annotations
