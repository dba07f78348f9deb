"""CLI commands ``marketloop policy ...``: judge a candidate policy on a logged policy's data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from marketloop.cli._app import app, console
from marketloop.exceptions import ConfigError, describe

policy_app = typer.Typer(
    help="Bandit policies: off-policy evaluation and the promotion gate.", no_args_is_help=True
)
app.add_typer(policy_app, name="policy")


@policy_app.command("evaluate")
def evaluate(
    log: Annotated[
        Path, typer.Option("--log", help="Logged feedback: CSV (plain or .gz) or Parquet.")
    ],
    candidate: Annotated[
        str,
        typer.Option(help="'uniform' (uniform random policy) or a saved policy file (JSON)."),
    ],
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="decisions (columns action, reward, propensity[, position], context...) "
            "or obd (Open Bandit Dataset logs as published).",
        ),
    ] = "decisions",
    n_bootstrap: Annotated[
        int, typer.Option(help="Bootstrap resamples for the 95% intervals.")
    ] = 200,
    seed: Annotated[
        int, typer.Option(min=0, max=2**32 - 1, help="Seed of folds and resamples.")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Estimate a candidate policy's value from another policy's log, with every estimator.

    Prints IPS, self-normalised IPS, the direct method and doubly robust (shrinkage chosen
    by SLOPE), each with a 95% bootstrap interval, the logging policy's own mean reward,
    and whether the candidate passes the gate: the lower bound of its DR interval above
    the logging policy's value.

    Example: marketloop policy evaluate --log random/all/all.csv.gz --format obd
    --candidate bts.json --json
    """
    from marketloop.strategy.ope import evaluate_policy, load_candidate, read_log

    if format not in ("decisions", "obd"):
        raise ConfigError(describe("--format", "decisions or obd", repr(format)))
    if n_bootstrap < 10:
        raise ConfigError(describe("--n-bootstrap", "at least 10 resamples", str(n_bootstrap)))
    logged = read_log(log, format)
    policy = load_candidate(candidate, logged)
    result = evaluate_policy(logged, policy, n_bootstrap=n_bootstrap, random_state=seed)
    if as_json:
        console.print(json.dumps(result.to_dict()), markup=False, soft_wrap=True)
        return
    table = Table(title=f"{candidate} on {log.name} ({result.n_rounds:,} logged rows)")
    for column in ("estimator", "value", "95% interval", "effective rows"):
        table.add_column(column, justify="left" if column == "estimator" else "right")
    for name, est in result.estimates.items():
        ess = "" if est.ess is None else f"{est.ess:,.0f}"
        table.add_row(name, f"{est.value:.5f}", f"[{est.ci[0]:.5f}, {est.ci[1]:.5f}]", ess)
    lo, hi = result.logging_ci
    table.add_row("logging policy", f"{result.logging_value:.5f}", f"[{lo:.5f}, {hi:.5f}]", "")
    console.print(table)
    verdict = "PROMOTE" if result.promote else "KEEP the logging policy"
    console.print(
        f"gate (DR lower bound > logging value): {verdict}; "
        f"DR shrinkage lambda={result.estimates['dr'].info['lambda']:.4g}",
        markup=False,
    )
    for note in result.notes:
        console.print(f"note: {note}", markup=False)
