"""CLI commands ``marketloop experiment design|analyse``: plan and read randomised tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from marketloop.cli._app import WarehouseOption, app, console, err_console, warehouse_url
from marketloop.cli._files import read_frame
from marketloop.exceptions import ConfigError, SchemaError, describe

experiment_app = typer.Typer(
    help="Randomised experiments: sample size, and the analysis of a finished test.",
    no_args_is_help=True,
)
app.add_typer(experiment_app, name="experiment")


@experiment_app.command("design")
def design(
    baseline: Annotated[float, typer.Option(help="Control conversion rate (or mean with --sd).")],
    mde: Annotated[float, typer.Option(help="Smallest effect worth detecting (absolute).")],
    relative: Annotated[bool, typer.Option(help="Read --mde as a share of --baseline.")] = False,
    sd: Annotated[
        float | None, typer.Option(help="Standard deviation of a continuous outcome.")
    ] = None,
    alpha: Annotated[float, typer.Option(help="Significance level (two-sided).")] = 0.05,
    power: Annotated[float, typer.Option(help="Power at the smallest effect.")] = 0.8,
    arms: Annotated[int, typer.Option(help="Number of arms, control included.")] = 2,
    correction: Annotated[str, typer.Option(
        help="With several treatments: bonferroni tests each against control at "
        "alpha / treatments, so any false positive stays within alpha; none at alpha.")
    ] = "bonferroni",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Customers per arm needed to detect --mde with the given power.

    Example: marketloop experiment design --baseline 0.05 --mde 0.01
    """
    from marketloop.strategy.experiments import comparison_alpha, sample_size

    if arms < 2:
        raise ConfigError(describe("--arms", "at least 2 (a control and a treatment)", str(arms)))
    if correction not in ("bonferroni", "none"):
        raise ConfigError(describe("--correction", "bonferroni or none", repr(correction)))
    level = comparison_alpha(alpha, arms, correction) if 0 < alpha < 1 else alpha
    per_arm = sample_size(baseline, mde, alpha=level, power=power, sd=sd, relative=relative)
    result = {"per_arm": per_arm, "arms": arms, "total": per_arm * arms,
              "comparisons": arms - 1, "correction": correction, "alpha": alpha,
              "alpha_per_comparison": level}
    if as_json:
        console.print(json.dumps(result), markup=False, soft_wrap=True)
    else:
        each = ("" if arms == 2 else f"; each of {arms - 1} treatments against control at "
                f"alpha {level:.3g}" + (" (Bonferroni)" if correction == "bonferroni" else
                                       ", no correction for the several comparisons"))
        console.print(
            f"{per_arm:,} customers per arm, {per_arm * arms:,} in all ({arms} arms){each}",
            markup=False, soft_wrap=True)


@experiment_app.command("analyse")
def analyse(
    file: Annotated[
        Path | None,
        typer.Argument(help="A finished test: CSV (plain or .gz) or Parquet, one row per unit."),
    ] = None,
    arm_col: Annotated[str, typer.Option(help="Column of arm labels.")] = "arm",
    outcome_col: Annotated[str, typer.Option(help="Column of outcomes.")] = "outcome",
    control: Annotated[str, typer.Option(help="Label of the control arm.")] = "control",
    pre_col: Annotated[
        str | None, typer.Option(help="Pre-period covariate for CUPED (e.g. past spend).")
    ] = None,
    weights: Annotated[
        str | None, typer.Option(help="Planned split for the ratio check, e.g. 'a=1,b=1'.")
    ] = None,
    experiment: Annotated[
        str | None, typer.Option(help="Without FILE: the experiment (decisions' policy).")
    ] = None,
    outcome: Annotated[
        str, typer.Option(help="Without FILE: the outcome kind summed per decision.")
    ] = "conversion",
    warehouse: WarehouseOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Per-arm n and mean, and each arm's difference from control with a 95% interval.

    From a file (--arm-col, --outcome-col, --control), or without one from the warehouse's
    decisions and outcomes (--experiment KEY --outcome KIND). A binary outcome may be 0/1,
    true/false or yes/no in any case; labels are compared after trimming white space.

    Example: marketloop experiment analyse hillstrom.csv.gz --arm-col segment
    --outcome-col visit --control "No E-Mail" --json
    """
    from marketloop.strategy.experiments import analyse as run_analysis
    from marketloop.strategy.experiments import parse_outcome

    planned = _weights(weights)
    if file is not None and (experiment is not None or warehouse is not None):
        raise ConfigError(describe("experiment analyse", "a FILE, or --experiment KEY with "
                                   "the warehouse", "both (the file would be used alone)"))
    if file is not None:
        frame = read_frame(file)
        for col in [arm_col, outcome_col, *([pre_col] if pre_col else [])]:
            if col not in frame.columns:
                raise SchemaError(
                    describe(str(file), f"a column {col!r}", ", ".join(map(str, frame.columns)))
                )
        y = parse_outcome(frame[outcome_col], f"{file} column {outcome_col}")
        pre = parse_outcome(frame[pre_col], f"{file} column {pre_col}") if pre_col else None
        arm = frame[arm_col]
    else:
        if experiment is None:
            raise ConfigError(
                describe("experiment analyse", "a FILE or --experiment KEY", "neither")
            )
        from marketloop.data.warehouse import connect
        from marketloop.strategy.experiments import experiment_frame

        con = connect(warehouse_url(warehouse), must_exist=True)
        data = experiment_frame(con, experiment, outcome)
        arm, y, pre = data["arm"], data["outcome"].to_numpy(float), None
    import warnings

    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        result = run_analysis(arm, y, control, pre=pre, weights=planned)
    if as_json:
        console.print(json.dumps(result.to_dict()), markup=False, soft_wrap=True)
    else:
        _table(result)
    for note in result.notes:
        err_console.print(f"WARNING: {note}", markup=False, soft_wrap=True)


def _weights(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    out = {}
    for part in text.split(","):
        label, _, value = part.partition("=")
        try:
            out[label.strip()] = float(value)
        except ValueError:
            raise ConfigError(describe("--weights", "label=number pairs", repr(part))) from None
    return out


def _table(result) -> None:  # noqa: ANN001 - an ExperimentResult
    table = Table(title=f"experiment against control {result.control!r}")
    for column in ("arm", "n", "mean", "difference", "95% interval", "p", "p (Holm)"):
        table.add_column(column, justify="left" if column == "arm" else "right")
    for label, arm in result.arms.items():
        effect = result.effects.get(label)
        row = [label, f"{arm.n:,}", f"{arm.mean:.5g}"]
        if effect is None:
            row += ["(control)", "", "", ""]
        else:
            row += [
                f"{effect.diff:+.5g}",
                f"[{effect.ci[0]:+.5g}, {effect.ci[1]:+.5g}]",
                f"{effect.p_value:.3g}",
                f"{effect.p_adjusted:.3g}",
            ]
        table.add_row(*row)
    console.print(table)
    if result.cuped_theta is not None:
        console.print(f"CUPED: theta={result.cuped_theta:.4g}", markup=False)
