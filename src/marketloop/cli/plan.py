"""The ``marketloop plan`` group: campaign plans (``plan campaign``, ``plan winback``).

Each plan command lives in its own module and registers on :data:`plan_app`.
"""

from __future__ import annotations

import typer

from marketloop.cli._app import app

plan_app = typer.Typer(
    help="Plans: who gets which offer within a budget, and win-back campaigns.",
    no_args_is_help=True,
)
app.add_typer(plan_app, name="plan")
