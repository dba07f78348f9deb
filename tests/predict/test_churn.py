"""Churn and next purchase on the simulator: AUC beside BG/NBD, calibration, SHAP, leakage."""

from __future__ import annotations

import pickle
import re

import ibis
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from marketloop.data.profiles import build_profiles
from marketloop.exceptions import ConfigError, NotFittedError, SchemaError
from marketloop.predict import (
    ChurnModel,
    NextPurchaseModel,
    bgnbd_churn_score,
    churn_labels,
    expected_calibration_error,
    next_purchase_labels,
    profiles_frame,
    reliability_table,
    time_split_cv,
)
from marketloop.predict._labels import alive_at_horizon, window_orders
from marketloop.simulate import Market

AS_OF = "2025-07-01"  # the simulated period is 2025-01-01 .. 2026-01-01
HORIZON = 90
TABLES = ("customers", "orders", "order_lines", "products", "events", "texts")


@pytest.fixture(scope="module")
def shop():
    return Market(n_customers=20_000, n_days=365, random_state=0).simulate(
        TABLES, full_truth=False
    )


@pytest.fixture(scope="module")
def tables(shop):
    return {name: ibis.memtable(getattr(shop, name)) for name in TABLES}


@pytest.fixture(scope="module")
def data(shop, tables):
    """Profiles at AS_OF, observed churn label, true death at the horizon, held-out half."""
    X = profiles_frame(build_profiles(tables, as_of=AS_OF))
    y = churn_labels(shop.orders, X.index, as_of=AS_OF, horizon_days=HORIZON)
    dead = 1 - alive_at_horizon(shop.truth.customers, X.index, as_of=AS_OF, horizon_days=HORIZON)
    test = np.random.default_rng(0).random(len(X)) < 0.5
    return X, y, dead, test


@pytest.fixture(scope="module")
def fitted(data):
    X, y, _, test = data
    return ChurnModel(random_state=0).fit(X[~test], y[~test])


def test_churn_auc_beside_bgnbd_baseline(shop, data, fitted) -> None:
    X, y, dead, test = data
    p = fitted.predict(X[test])
    base = bgnbd_churn_score(shop.orders, X.index[test], as_of=AS_OF)
    ours_obs, bg_obs = roc_auc_score(y[test], p), roc_auc_score(y[test], base)
    ours_true, bg_true = roc_auc_score(dead[test], p), roc_auc_score(dead[test], base)
    print(
        f"\nchurn AUC, held-out half ({int(test.sum()):,} customers), horizon {HORIZON} d:"
        f"\n  observed label (no paid order in window): LightGBM {ours_obs:.4f}, "
        f"BG/NBD 1-P(alive) {bg_obs:.4f}"
        f"\n  true label (dead at as_of + horizon):     LightGBM {ours_true:.4f}, "
        f"BG/NBD 1-P(alive) {bg_true:.4f}"
    )
    # Seed 0 gives 0.810 vs 0.681 (observed) and 0.760 vs 0.824 (truth); seeds 1-3 gave
    # observed gaps of +0.13 to +0.16 and truth gaps of -0.065 to -0.075 (docs/churn.md).
    # The truth gap is structural: the observed label is "no purchase", which a slow but
    # alive buyer also earns, while BG/NBD scores death directly. The bounds below sit
    # about 0.025 beyond the worst of four seeds, several held-out standard errors (~0.006).
    assert ours_obs >= bg_obs + 0.10
    assert ours_true >= bg_true - 0.10
    assert ours_true >= 0.72


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_calibration_error_on_held_out_half(data, method) -> None:
    X, y, _, test = data
    model = ChurnModel(calibration=method, random_state=0).fit(X[~test], y[~test])
    p = model.predict(X[test])
    ece = expected_calibration_error(y[test], p)
    raw = 1.0 / (1.0 + np.exp(-model.predict_raw(X[test])))
    ece_raw = expected_calibration_error(y[test], raw)
    print(f"\n{method}: ECE {ece:.4f} (uncalibrated booster {ece_raw:.4f})")
    assert ece <= 0.03
    table = reliability_table(y[test], p)
    assert table["count"].sum() == test.sum()
    full = table[table["count"] >= 200]  # a bin of 200 has a standard error of ~0.035
    assert (full["gap"].abs() <= 0.1).all()


def test_contributions_sum_to_raw_log_odds(data, fitted) -> None:
    X, _, _, test = data
    contrib = fitted.contributions(X[test].head(500))
    assert list(contrib.columns) == [*fitted.feature_names_in_, "bias"]
    raw = fitted.predict_raw(X[test].head(500))
    np.testing.assert_allclose(contrib.sum(axis=1), raw, atol=1e-9)
    assert contrib.index.equals(raw.index)


def test_labels_read_only_the_window_after_the_cut_off() -> None:
    at = pd.Timestamp(AS_OF)
    orders = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e"],
            "status": ["paid", "paid", "paid", "cancelled", "paid"],
            "ordered_at": [
                at - pd.Timedelta(seconds=1),  # before the cut-off: a feature, not a label
                at,  # first instant of the window
                at + pd.Timedelta(days=HORIZON),  # first instant after the window
                at + pd.Timedelta(days=1),  # not paid
                at + pd.Timedelta(days=HORIZON) - pd.Timedelta(seconds=1),
            ],
        }
    )
    y = churn_labels(orders, list("abcdef"), as_of=AS_OF, horizon_days=HORIZON)
    assert y.to_dict() == {"a": 1, "b": 0, "c": 1, "d": 1, "e": 0, "f": 1}
    assert y.name == "churned"
    nxt = next_purchase_labels(orders, list("abe"), as_of=AS_OF, horizon_days=HORIZON)
    assert nxt["purchased"].tolist() == [0, 1, 1]
    assert nxt["days_to_next"].iloc[0] != nxt["days_to_next"].iloc[0]  # NaN: censored
    assert nxt["days_to_next"].iloc[1] == 0.0
    # the same window through Ibis
    window = window_orders(ibis.memtable(orders), as_of=AS_OF, horizon_days=HORIZON)
    assert sorted(window["customer_id"]) == ["b", "e"]
    with pytest.raises(ConfigError, match="as_of \\+ horizon_days"):
        churn_labels(orders, ["a"], as_of=AS_OF, horizon_days=HORIZON, observed_until="2025-08-01")


def test_no_leakage_future_rows_change_no_prediction(shop, data, fitted) -> None:
    X, _, _, test = data
    cut = pd.Timestamp(AS_OF)
    past = {
        "customers": shop.customers,
        "orders": shop.orders[shop.orders["ordered_at"] < cut],
        "events": shop.events[shop.events["ts"] < cut],
        "texts": shop.texts[shop.texts["ts"] < cut],
        "order_lines": shop.order_lines,
        "products": shop.products,
    }
    X_past = profiles_frame(build_profiles({k: ibis.memtable(v) for k, v in past.items()},
                                           as_of=AS_OF))
    pd.testing.assert_series_equal(fitted.predict(X_past[test]), fitted.predict(X[test]))


def test_estimator_conventions(data, fitted) -> None:
    X, y, _, test = data
    fresh = ChurnModel(horizon_days=60, calibration="sigmoid", random_state=3)
    assert not [k for k in vars(fresh) if k.endswith("_")]
    assert clone(fresh).get_params() == fresh.get_params()
    with pytest.raises(NotFittedError, match="This ChurnModel is not fitted yet"):
        fresh.predict(X)
    sample = X[test].head(300)
    p = fitted.predict(sample)
    assert p.name == "p_churn" and p.index.equals(sample.index)
    shuffled = fitted.predict(sample.sample(frac=1.0, random_state=1))
    pd.testing.assert_series_equal(shuffled.loc[p.index], p)
    pd.testing.assert_series_equal(pickle.loads(pickle.dumps(fitted)).predict(sample), p)
    small = X[~test].head(3000)
    a = ChurnModel(random_state=0, n_estimators=30).fit(small, y).predict(sample)
    b = ChurnModel(random_state=0, n_estimators=30).fit(small.iloc[::-1], y).predict(sample)
    pd.testing.assert_series_equal(a, b)


def test_bad_input_errors(data) -> None:
    X, y, _, _ = data
    model = ChurnModel(features=["recency_days", "frequency"], n_estimators=10, random_state=0)
    model.fit(X.head(2000), y)
    message = (
        "ChurnModel.predict: expected columns recency_days, frequency; "
        "found recency_days (frequency missing)."
    )
    with pytest.raises(SchemaError, match=re.escape(message)):
        model.predict(X[["recency_days"]])
    with pytest.raises(SchemaError, match="a churned label for every profile row"):
        ChurnModel().fit(X.head(100), y.iloc[200:])
    with pytest.raises(SchemaError, match="churned labels 0 or 1"):
        ChurnModel().fit(X.head(100), y.head(100) * 2)
    with pytest.raises(ConfigError, match="'calibration' parameter of ChurnModel"):
        ChurnModel(calibration="platt").fit(X.head(100), y)
    with pytest.raises(ConfigError, match="'horizon_days' parameter of ChurnModel"):
        ChurnModel(horizon_days=0).fit(X.head(100), y)
    with pytest.raises(ConfigError, match="labels 0 or 1"):
        expected_calibration_error([0, 2], [0.1, 0.2])


def test_time_split_cv_reports_model_and_baseline(tables) -> None:
    folds = time_split_cv(
        ChurnModel(random_state=0),
        tables,
        cutoffs=["2025-04-01", "2025-06-01"],
        observed_until="2026-01-01",
    )
    print("\n" + folds.to_string())
    assert list(folds["test_as_of"]) == [pd.Timestamp("2025-06-30"), pd.Timestamp("2025-08-30")]
    assert (folds["auc"] > folds["auc_bgnbd"] + 0.08).all()
    with pytest.raises(ConfigError, match="as_of \\+ horizon_days"):
        time_split_cv(ChurnModel(), tables, cutoffs=["2025-09-01"], observed_until="2026-01-01")


def test_next_purchase_model(shop, data) -> None:
    X, _, _, test = data
    labels = next_purchase_labels(shop.orders, X.index, as_of=AS_OF, horizon_days=30)
    model = NextPurchaseModel(random_state=0).fit(X[~test], labels[~test])
    held = labels[test]
    p = model.predict(X[test])
    auc = model.score(X[test], held["purchased"])
    ece = expected_calibration_error(held["purchased"], p)
    days = model.expected_days(X[test])
    bought = held["days_to_next"].notna()
    mae = (days[bought] - held.loc[bought, "days_to_next"]).abs().mean()
    const = (held.loc[bought, "days_to_next"] - labels.loc[~test, "days_to_next"].median())
    print(f"\nnext purchase in 30 d: AUC {auc:.4f}, ECE {ece:.4f}; days to it, MAE "
          f"{mae:.2f} (constant median {const.abs().mean():.2f})")
    assert p.name == "p_purchase" and days.name == "days_to_next"
    assert auc >= 0.75 and ece <= 0.03
    assert days.between(0, 30).all()
    # given a purchase in 30 days a Poisson buyer's timing is near uniform: the regressor
    # loses to the median in cross-validation (it did on the held-out half too: 7.27 vs
    # 7.05 days), so the model answers the median
    assert model.days_model_ == "median" and days.nunique() == 1
    assert model.days_cv_mae_["lightgbm"] > model.days_cv_mae_["median"]
    assert mae <= const.abs().mean() + 1e-9
    # over 90 days the rate shows in the timing: the regressor wins and is kept
    long = next_purchase_labels(shop.orders, X.index, as_of=AS_OF, horizon_days=90)
    model90 = NextPurchaseModel(horizon_days=90, random_state=0).fit(X[~test], long[~test])
    held90 = long[test].dropna(subset=["days_to_next"])
    days90 = model90.expected_days(X[test]).loc[held90.index]
    median90 = long.loc[~test, "days_to_next"].median()
    assert model90.days_model_ == "lightgbm"
    assert ((days90 - held90["days_to_next"]).abs().mean()
            < (median90 - held90["days_to_next"]).abs().mean())
    # a model pickled before the choice existed answers with its regressor, as it did
    older = pickle.loads(pickle.dumps(model90))
    for name in ("days_model_", "days_median_", "days_cv_mae_"):
        delattr(older, name)
    assert older.expected_days(X[test]).equals(model90.expected_days(X[test]))
