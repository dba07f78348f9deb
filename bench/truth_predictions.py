"""CLV and churn against the simulator's truth, in the setting the predictions issue names.

Fixed seed, 50,000 customers, one year of calibration, a 52-week horizon. The shop runs two
years (2025-01-01 .. 2027-01-01) so the horizon's orders exist to label churn; everything is
fitted on data strictly before ``as_of = 2026-01-01`` and judged on what happened after it.

Printed, for the customers acquired before ``as_of``:

- BG/NBD: predicted purchases over the next 52 weeks, correlated with the truth
  ``alive(as_of) x (1 - exp(-lambda p 52)) / p`` (docs/simulator.md), beside the same
  forecast made with each customer's *true* lambda and p but only the observed history
  (the ceiling discussed in docs/clv.md), and with the purchases actually made.
- Churn: a calibrated LightGBM model on point-in-time profiles, labelled by "no paid order
  in the 52 weeks", fitted on a random half and scored on the other, beside the BG/NBD
  ``1 - P(alive)`` baseline: AUC on the observed label and on the true label (dead at
  ``as_of + 52 weeks``, from ``truth.customers.dropout_at``), and the calibration error.

Not a speed bench; it takes a few minutes (the simulation is most of it).
Run: .venv/bin/python bench/truth_predictions.py [n_customers] [seed]
"""

from __future__ import annotations

import sys
import time

import ibis
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from marketloop.data.profiles import build_profiles
from marketloop.predict import (
    BetaGeoModel,
    ChurnModel,
    bgnbd_churn_score,
    churn_labels,
    expected_calibration_error,
    profiles_frame,
    summary_from_transactions,
)
from marketloop.predict._labels import alive_at_horizon
from marketloop.simulate import Market

AS_OF = pd.Timestamp("2026-01-01")
HORIZON_WEEKS = 52
TABLES = ("customers", "orders", "order_lines", "products", "events", "texts")


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def clv_figures(shop, tx: pd.DataFrame, after: pd.DataFrame) -> dict[str, float]:
    """BG/NBD forecast vs true expected purchases at ``AS_OF``."""
    summary = summary_from_transactions(
        tx, amount_col="amount", calibration_end=AS_OF - pd.Timedelta(days=1)
    )
    model = BetaGeoModel().fit(summary)
    predicted = model.predict(summary, horizon=HORIZON_WEEKS).to_numpy()
    truth = shop.truth.customers.loc[summary.index]
    lam, p = truth["lambda"].to_numpy(), truth["p"].to_numpy()
    dropout = pd.to_datetime(truth["dropout_at"])
    alive = (dropout.isna() | (dropout >= AS_OF)).to_numpy()
    future = -np.expm1(-lam * p * HORIZON_WEEKS) / p
    true_expected = np.where(alive, future, 0.0)
    # the same forecast from each customer's own lambda and p, but only the observed history
    x, t_x, T = (summary[c].to_numpy() for c in ("frequency", "recency", "T"))
    with np.errstate(over="ignore"):
        p_alive = np.where(x > 0, 1.0 / (1.0 + p / (1.0 - p) * np.exp(lam * (T - t_x))), 1.0)
    own_params = p_alive * future
    made = (
        after.groupby("customer_id").size().reindex(summary.index, fill_value=0).to_numpy()
    )
    return {
        "customers": len(summary),
        "params": {k: round(v, 4) for k, v in model.params_.items()},
        "corr_truth": _corr(predicted, true_expected),
        "corr_truth_own_params": _corr(own_params, true_expected),
        "corr_own_params_forecast": _corr(predicted, own_params),
        "corr_purchases_made": _corr(predicted, made),
        "total_predicted": float(predicted.sum()),
        "total_true_expected": float(true_expected.sum()),
    }


def churn_figures(shop, tx_all: pd.DataFrame) -> dict[str, float]:
    """Calibrated LightGBM churn vs BG/NBD 1 - P(alive), observed and true labels."""
    tables = {name: ibis.memtable(getattr(shop, name)) for name in TABLES}
    X = profiles_frame(build_profiles(tables, as_of=AS_OF.to_pydatetime()))
    days = HORIZON_WEEKS * 7
    y = churn_labels(tx_all, X.index, as_of=AS_OF, horizon_days=days)
    dead = 1 - alive_at_horizon(shop.truth.customers, X.index,
                                as_of=AS_OF, horizon_days=days)  # fmt: skip
    test = np.random.default_rng(0).random(len(X)) < 0.5
    model = ChurnModel(horizon_days=days, random_state=0).fit(X[~test], y[~test])
    p = model.predict(X[test])
    base = bgnbd_churn_score(tx_all, X.index[test], as_of=AS_OF)
    return {
        "customers_scored": int(test.sum()),
        "observed_churn_rate": float(y[test].mean()),
        "true_dead_rate": float(dead[test].mean()),
        "auc_observed": float(roc_auc_score(y[test], p)),
        "auc_observed_bgnbd": float(roc_auc_score(y[test], base)),
        "auc_true": float(roc_auc_score(dead[test], p)),
        "auc_true_bgnbd": float(roc_auc_score(dead[test], base)),
        "ece": expected_calibration_error(y[test], p),
    }


def main(n_customers: int = 50_000, seed: int = 0) -> None:
    start = time.perf_counter()
    shop = Market(n_customers=n_customers, n_days=730, random_state=seed).simulate(
        TABLES, full_truth=False
    )
    print(f"simulated {n_customers:,} customers x 730 days in {time.perf_counter() - start:.0f}s")
    paid = shop.orders[shop.orders.status == "paid"][["customer_id", "ordered_at", "amount"]]
    tx, after = paid[paid.ordered_at < AS_OF], paid[paid.ordered_at >= AS_OF]
    end = AS_OF + pd.Timedelta(weeks=HORIZON_WEEKS)
    clv = clv_figures(shop, tx, after[after.ordered_at < end])
    print(f"CLV (BG/NBD fitted on paid orders before {AS_OF.date()}, {clv['customers']:,} "
          f"customers): params {clv['params']}")  # fmt: skip
    for label, key in (
        ("predicted 52w, true expected 52w", "corr_truth"),
        ("own-lambda-p forecast, true expected 52w", "corr_truth_own_params"),
        ("predicted, own-lambda-p forecast", "corr_own_params_forecast"),
        ("predicted, purchases made in the 52 weeks", "corr_purchases_made"),
    ):
        print(f"  corr({label})".ljust(51) + f"{clv[key]:.3f}")
    print(f"  total predicted {clv['total_predicted']:,.0f}, "
          f"true expected {clv['total_true_expected']:,.0f}")  # fmt: skip
    churn = churn_figures(shop, shop.orders)
    print(f"churn (52-week horizon, {churn['customers_scored']:,} held-out customers; "
          f"observed churn {churn['observed_churn_rate']:.1%}, truly dead "
          f"{churn['true_dead_rate']:.1%}):")  # fmt: skip
    print(f"  AUC observed label: LightGBM {churn['auc_observed']:.3f}, "
          f"BG/NBD 1-P(alive) {churn['auc_observed_bgnbd']:.3f}")  # fmt: skip
    print(f"  AUC true label:     LightGBM {churn['auc_true']:.3f}, "
          f"BG/NBD 1-P(alive) {churn['auc_true_bgnbd']:.3f}")  # fmt: skip
    print(f"  ECE after calibration: {churn['ece']:.4f}")
    print(f"total {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    main(*args)
