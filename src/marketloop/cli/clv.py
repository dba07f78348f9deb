"""CLI commands ``marketloop clv ...``: fit a customer-lifetime-value model on a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from marketloop.cli._app import app, console
from marketloop.exceptions import ConfigError, SchemaError, describe

clv_app = typer.Typer(
    help="Customer lifetime value: BG/NBD and Pareto/NBD purchase models on a transaction file.",
    no_args_is_help=True,
)
app.add_typer(clv_app, name="clv")

#: Column names of the CDNow text files (whitespace-separated, no header in the sample).
CDNOW_SAMPLE = ["master_id", "customer_id", "date", "quantity", "amount"]
CDNOW_MASTER = ["customer_id", "date", "quantity", "amount"]


def _read(path: Path, fmt: str, sep: str | None, no_header: bool, columns: str | None):  # noqa: ANN202
    """The transaction file as a text-valued DataFrame (dates are parsed later, checked)."""
    import pandas as pd

    try:
        if fmt == "parquet" or (fmt == "auto" and path.suffix == ".parquet"):
            return pd.read_parquet(path)
        if fmt == "cdnow":
            frame = pd.read_csv(path, sep=r"\s+", header=None, dtype=str)
            if not frame.iloc[0, 0].isdigit():  # CDNOW_master.txt has a header line
                frame = frame.iloc[1:].reset_index(drop=True)
            names = {5: CDNOW_SAMPLE, 4: CDNOW_MASTER}.get(frame.shape[1])
            if names is None:
                raise SchemaError(
                    describe(
                        str(path),
                        "4 or 5 whitespace-separated CDNow columns",
                        f"{frame.shape[1]} columns",
                    )
                )
            frame.columns = names
            return frame
        names = [c.strip() for c in columns.split(",")] if columns else None
        return pd.read_csv(
            path,
            sep=r"\s+" if sep == "whitespace" else (sep or ","),
            header=None if no_header else "infer",
            names=names,
            dtype=str,
        )
    except (OSError, EOFError, ValueError, ImportError) as exc:  # EOFError: truncated gzip
        if isinstance(exc, SchemaError):
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        expected = "a readable " + ("" if fmt == "auto" else f"{fmt} ") + "transaction file"
        raise SchemaError(describe(str(path), expected, first)) from None


@clv_app.command("fit")
def fit(
    transactions: Annotated[
        Path, typer.Argument(help="CSV (plain or .gz), Parquet or CDNow text file.")
    ],
    calibration_end: Annotated[str, typer.Option(help="Last day of the calibration period.")],
    customer_col: Annotated[str, typer.Option(help="Customer column.")] = "customer_id",
    date_col: Annotated[str | None, typer.Option(
        help="Purchase date column (default ordered_at; date with --format cdnow).")] = None,
    amount_col: Annotated[
        str | None, typer.Option(help="Purchase value column; adds a Gamma-Gamma spend fit.")
    ] = None,
    holdout_end: Annotated[
        str | None, typer.Option(help="Last day of the holdout; adds predicted vs actual.")
    ] = None,
    model: Annotated[str, typer.Option(help="bgnbd or pareto-nbd.")] = "bgnbd",
    date_format: Annotated[
        str | None, typer.Option(help="strptime format of the dates, e.g. %Y%m%d.")
    ] = None,
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="auto (by suffix: csv, csv.gz, parquet), csv, "
            "parquet, or cdnow (CDNOW_sample.txt / CDNOW_master.txt).",
        ),
    ] = "auto",
    sep: Annotated[
        str | None, typer.Option(help="CSV field separator; 'whitespace' for runs of blanks.")
    ] = None,
    no_header: Annotated[
        bool, typer.Option("--no-header", help="The CSV has no header line; see --columns.")
    ] = False,
    columns: Annotated[
        str | None, typer.Option(help="Comma-separated column names for a headerless CSV.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Fit BG/NBD or Pareto/NBD (and Gamma-Gamma with --amount-col) on a transaction file.

    Prints the parameters as the papers name them, the log-likelihood and, with
    --holdout-end, the predicted vs actual repeat purchases in the holdout. Same-day
    purchases count as one; recency and T are in weeks.

    Example: marketloop clv fit CDNOW_sample.txt --format cdnow --amount-col amount
    --calibration-end 1997-09-30 --holdout-end 1998-06-30
    """
    from marketloop.predict import (
        BetaGeoModel,
        GammaGammaModel,
        ParetoNBDModel,
        summary_from_transactions,
    )

    models = {"bgnbd": BetaGeoModel, "pareto-nbd": ParetoNBDModel}
    if model not in models:
        raise ConfigError(describe("--model", "bgnbd or pareto-nbd", repr(model)))
    if format not in ("auto", "csv", "parquet", "cdnow"):
        raise ConfigError(describe("--format", "auto, csv, parquet or cdnow", repr(format)))
    if format == "cdnow" and date_format is None:
        date_format = "%Y%m%d"
    if date_col is None:  # the CDNow layout names its own columns
        date_col = "date" if format == "cdnow" else "ordered_at"
    frame = _read(transactions, format, sep, no_header, columns)
    summary = summary_from_transactions(
        frame,
        customer_col=customer_col,
        date_col=date_col,
        amount_col=amount_col,
        calibration_end=calibration_end,
        holdout_end=holdout_end,
        date_format=date_format,
    )
    fitted = models[model]().fit(summary)
    result: dict[str, object] = {
        "model": model,
        "n_customers": len(summary),
        "params": fitted.params_,
        "log_likelihood": fitted.log_likelihood_,
    }
    if amount_col:
        spend = GammaGammaModel().fit(summary)
        result["spend_params"] = spend.params_
        result["spend_log_likelihood"] = spend.log_likelihood_
    if holdout_end is not None:
        predicted = fitted.predict(summary, horizon=None)
        result["holdout_predicted"] = float(predicted.sum())
        result["holdout_actual"] = int(summary["frequency_holdout"].sum())
        groups = summary["frequency"].clip(upper=7)
        by = summary.assign(predicted=predicted).groupby(groups)
        result["holdout_by_frequency"] = [
            {
                "frequency": f"{int(k)}+" if k == 7 else str(int(k)),
                "customers": int(len(g)),
                "predicted": float(g["predicted"].sum()),
                "actual": int(g["frequency_holdout"].sum()),
            }
            for k, g in by
        ]
    _print(result, as_json)


def _print(result: dict[str, object], as_json: bool) -> None:
    if as_json:
        console.print(json.dumps(result), markup=False, soft_wrap=True)
        return
    params = ", ".join(f"{k}={v:.4f}" for k, v in result["params"].items())  # type: ignore[attr-defined]
    console.print(
        f"{result['model']} on {result['n_customers']:,} customers: {params}; "
        f"log-likelihood {result['log_likelihood']:.2f}",
        markup=False,
    )
    if "spend_params" in result:
        spend = ", ".join(f"{k}={v:.4f}" for k, v in result["spend_params"].items())  # type: ignore[attr-defined]
        console.print(f"gamma-gamma spend: {spend}", markup=False)
    if "holdout_actual" in result:
        console.print(
            f"holdout repeat purchases: predicted {result['holdout_predicted']:.1f}, "
            f"actual {result['holdout_actual']:,}",
            markup=False,
        )
