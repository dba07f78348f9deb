"""BG/NBD and Pareto/NBD on the UCI Online Retail file: a time-split holdout against a naive rate.

Transactions are built here from the raw file with plain pandas: invoice lines with a
``CustomerID``, on invoices not starting with ``C`` (credit notes) or ``A`` (bad-debt
adjustments), with ``Quantity > 0`` and ``UnitPrice > 0``. This mirrors the accepted *paid*
orders of the ingest mapping in docs/ingest.md ("Online Retail mapping": ``C`` invoices become
``returned`` orders, ``A`` invoices and negative quantities on ordinary invoices are
quarantined), less guest orders (no customer) and free lines (price 0). One difference: the
ingest's ±10,000-unit outlier rule also quarantines two single-line paid invoices, 541431
(customer 12346) and 581483 (customer 16446), each cancelled by a credit note minutes later;
they are kept here as purchases (the rule's other three lines are dropped here anyway).
One transaction per invoice: its customer, its earliest ``InvoiceDate``, the sum of
``Quantity * UnitPrice``.

Split: calibration from 2010-12-01 to 2011-09-09 (that day included, about 9 months; 40
weeks 6 days), holdout 2011-09-10 to 2011-12-09 (both included): 91 days, exactly 13 weeks,
the last day of the data. As in ``summary_from_transactions``, purchases on one day are one
purchase, and only customers who bought in the calibration period are scored.

Naive baseline ("last-period rate"): each customer's repeat-purchase rate over the
calibration period, ``frequency / T`` per week (repeat purchases over the weeks from the first
purchase to the calibration end), times the 13 holdout weeks; 0 for the 8 customers with
``T = 0`` (first purchase on the calibration end: no period to measure a rate over).

Measured result: BG/NBD's aggregate error is smaller than the naive rate's (-24.5 % vs
-28.0 %, both under because the holdout holds the pre-Christmas peak) and so is its RMSE
(1.515 vs 1.673), but its per-customer MAE is *not* below the naive rate's (0.9397 vs
0.9263). The tests state and assert exactly that; see docs/clv.md "Online Retail".
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from marketloop.predict import BetaGeoModel, ParetoNBDModel, summary_from_transactions

pytestmark = pytest.mark.external

FILE = Path("online_retail") / "online_retail.csv.gz"
CALIBRATION_END = "2011-09-09"
HOLDOUT_END = "2011-12-09"
HOLDOUT_WEEKS = 13.0  # 2011-09-10 .. 2011-12-09: 91 days

# Measured once with the code below on online_retail.csv.gz (SHA-256 0d6f2c5b983b...).
# The transaction table: kept lines, invoices (= transactions), customers.
EXPECTED_TRANSACTIONS = {"lines": 397_884, "invoices": 18_532, "customers": 4_338}
# The split: customers scored (first purchase up to the calibration end) and their repeat
# purchases (distinct purchase days) in the calibration period and in the holdout.
EXPECTED_SPLIT = {"customers": 3_370, "calibration_repeats": 7_437, "holdout_actual": 4_482}
# Same source: per-customer MAE, RMSE and the holdout total, per forecast.
MEASURED = {
    "bgnbd": {"mae": 0.93974, "rmse": 1.51466, "total": 3_384.18},
    "pareto_nbd": {"mae": 0.93974, "rmse": 1.51466, "total": 3_384.18},
    "naive": {"mae": 0.92629, "rmse": 1.67300, "total": 3_228.72},
}
# The figures are deterministic up to the optimiser's last digits: 1e-4 relative is far
# below the smallest gap the ordering assertions rely on (MAE, model vs naive: 1.5 %).
REL = 1e-4


@dataclass
class Holdout:
    transactions: pd.DataFrame  # one row per invoice: customer_id, ordered_at, amount
    lines: int
    summary: pd.DataFrame
    forecasts: dict[str, pd.Series]  # expected holdout repeat purchases per customer
    bgnbd: BetaGeoModel
    pareto_nbd: ParetoNBDModel

    @property
    def actual(self) -> pd.Series:
        return self.summary["frequency_holdout"]

    def figures(self, name: str) -> dict[str, float]:
        error = self.forecasts[name] - self.actual
        return {
            "mae": float(error.abs().mean()),
            "rmse": float(np.sqrt((error**2).mean())),
            "total": float(self.forecasts[name].sum()),
        }

    def aggregate_error(self, name: str) -> float:
        """(sum predicted - sum actual) / sum actual."""
        return float(self.forecasts[name].sum() / self.actual.sum() - 1.0)


@pytest.fixture(scope="module")
def retail_path(shared_data: Path) -> Path:
    path = shared_data / FILE
    if not path.is_file():
        pytest.skip(f"{path} not found under MARKETLOOP_DATA")
    return path


def _paid_transactions(path: Path) -> tuple[pd.DataFrame, int]:
    raw = pd.read_csv(
        path,
        usecols=["InvoiceNo", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"],
        dtype={"InvoiceNo": str, "CustomerID": "Int64"},
    )
    invoice = raw.InvoiceNo.str.strip()
    keep = (
        raw.CustomerID.notna()
        & ~invoice.str.startswith(("C", "A"))
        & (raw.Quantity > 0)
        & (raw.UnitPrice > 0)
    )
    lines = raw[keep].assign(
        value=raw.Quantity * raw.UnitPrice,
        at=pd.to_datetime(raw.InvoiceDate, format="%Y-%m-%d %H:%M:%S"),
    )
    by_invoice = lines.groupby(invoice[keep])
    assert (by_invoice.CustomerID.nunique() == 1).all()  # one customer per invoice
    transactions = pd.DataFrame(
        {
            "customer_id": by_invoice.CustomerID.first().astype("int64"),
            "ordered_at": by_invoice["at"].min(),
            "amount": by_invoice.value.sum(),
        }
    ).reset_index(drop=True)
    return transactions, int(keep.sum())


@pytest.fixture(scope="module")
def holdout(retail_path: Path) -> Holdout:
    transactions, lines = _paid_transactions(retail_path)
    summary = summary_from_transactions(
        transactions,
        customer_col="customer_id",
        date_col="ordered_at",
        amount_col="amount",
        calibration_end=CALIBRATION_END,
        holdout_end=HOLDOUT_END,
    )
    bgnbd = BetaGeoModel().fit(summary)
    pareto_nbd = ParetoNBDModel().fit(summary)
    T = summary["T"]
    rate = (summary["frequency"] / T.where(T > 0)).fillna(0.0)  # repeat purchases per week
    forecasts = {
        "bgnbd": bgnbd.predict(summary, horizon=None),
        "pareto_nbd": pareto_nbd.predict(summary, horizon=None),
        "naive": rate * HOLDOUT_WEEKS,
    }
    result = Holdout(transactions, lines, summary, forecasts, bgnbd, pareto_nbd)
    print(
        f"\nOnline Retail, calibration to {CALIBRATION_END}, holdout to {HOLDOUT_END}: "
        f"{len(summary):,} customers, {int(result.actual.sum()):,} holdout repeat purchases"
    )
    print(f"{'forecast':<11} {'MAE':>7} {'RMSE':>7} {'total':>9} {'aggregate':>9}")
    for name in forecasts:
        f = result.figures(name)
        print(
            f"{name:<11} {f['mae']:7.4f} {f['rmse']:7.4f} {f['total']:9.1f} "
            f"{result.aggregate_error(name):+9.1%}"
        )
    print(f"BG/NBD {bgnbd.params_}\nPareto/NBD {pareto_nbd.params_}")
    return result


def _independent_holdout_actual(transactions: pd.DataFrame) -> int:
    """Distinct (customer, day) in the holdout, for customers who bought by the calibration end."""
    day = transactions.ordered_at.dt.normalize()
    cal_end, end = pd.Timestamp(CALIBRATION_END), pd.Timestamp(HOLDOUT_END)
    known = set(transactions.customer_id[day <= cal_end])
    inside = (day > cal_end) & (day <= end) & transactions.customer_id.isin(known)
    return len(pd.DataFrame({"c": transactions.customer_id, "d": day})[inside].drop_duplicates())


def test_transactions_and_split_give_the_stated_counts(holdout: Holdout) -> None:
    tx = holdout.transactions
    assert {
        "lines": holdout.lines,
        "invoices": len(tx),
        "customers": tx.customer_id.nunique(),
    } == EXPECTED_TRANSACTIONS
    assert tx.ordered_at.min() == pd.Timestamp("2010-12-01 08:26:00")
    assert tx.ordered_at.max().normalize() == pd.Timestamp(HOLDOUT_END)  # the data's last day
    assert (tx.amount > 0).all()
    summary = holdout.summary
    assert (summary["duration_holdout"] == HOLDOUT_WEEKS).all()
    assert {
        "customers": len(summary),
        "calibration_repeats": int(summary["frequency"].sum()),
        "holdout_actual": int(holdout.actual.sum()),
    } == EXPECTED_SPLIT
    assert _independent_holdout_actual(tx) == EXPECTED_SPLIT["holdout_actual"]


def test_holdout_errors_match_the_measured_figures(holdout: Holdout) -> None:
    for name, expected in MEASURED.items():
        got = holdout.figures(name)
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, rel=REL), (name, key)


def test_bgnbd_beats_the_naive_rate_in_aggregate_and_rmse_but_not_mae(holdout: Holdout) -> None:
    model, naive = holdout.figures("bgnbd"), holdout.figures("naive")
    # Aggregate: both forecast too few (the holdout holds the pre-Christmas peak of a
    # gift-ware wholesaler), the model less so: -24.5 % vs -28.0 %.
    assert holdout.aggregate_error("naive") < holdout.aggregate_error("bgnbd") < 0
    assert holdout.aggregate_error("bgnbd") == pytest.approx(-0.2449, abs=5e-4)
    assert holdout.aggregate_error("naive") == pytest.approx(-0.2796, abs=5e-4)
    # RMSE: the conditional expectation is the squared-error forecast; 1.515 vs 1.673.
    assert model["rmse"] < 0.95 * naive["rmse"]
    # MAE: measured 0.9397 vs 0.9263, the model 1.5 % worse. The naive rate forecasts exactly
    # 0 for the 1,414 customers without a repeat purchase, most of whom buy nothing in the
    # holdout (MAE rewards the median, here 0); the model forecasts 0.39 each for them.
    assert naive["mae"] < model["mae"] < 1.02 * naive["mae"]


def test_both_models_find_no_dropout_and_agree(holdout: Holdout) -> None:
    # BG/NBD's dropout probability a/(a+b) and Pareto/NBD's mean dropout rate s/beta are both
    # ~0 here: 9 months of a wholesaler's history show no sign of customers leaving, so both
    # models reduce to the NBD (r, alpha equal to 5 digits) and forecast the same.
    bg, pnbd = holdout.bgnbd.params_, holdout.pareto_nbd.params_
    assert bg["a"] / (bg["a"] + bg["b"]) < 1e-6
    assert pnbd["s"] / pnbd["beta"] < 1e-6
    assert bg["r"] == pytest.approx(pnbd["r"], rel=1e-4)
    assert bg["alpha"] == pytest.approx(pnbd["alpha"], rel=1e-4)
    diff = (holdout.forecasts["bgnbd"] - holdout.forecasts["pareto_nbd"]).abs().max()
    assert diff < 1e-3


def test_cli_holdout_actual_matches_the_pandas_count(holdout: Holdout, tmp_path: Path) -> None:
    csv = tmp_path / "retail_transactions.csv"
    out = holdout.transactions.rename(columns={"ordered_at": "date"})
    out.assign(date=out.date.dt.strftime("%Y-%m-%d %H:%M:%S")).to_csv(csv, index=False)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "marketloop",
            "clv",
            "fit",
            str(csv),
            "--customer-col",
            "customer_id",
            "--date-col",
            "date",
            "--calibration-end",
            CALIBRATION_END,
            "--holdout-end",
            HOLDOUT_END,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["model"] == "bgnbd"
    assert report["n_customers"] == EXPECTED_SPLIT["customers"]
    assert report["holdout_actual"] == _independent_holdout_actual(holdout.transactions)
    assert report["holdout_actual"] == EXPECTED_SPLIT["holdout_actual"]
    assert report["holdout_predicted"] == pytest.approx(MEASURED["bgnbd"]["total"], rel=REL)
