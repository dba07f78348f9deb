"""The demo's model stages: CLV with its holdout check, and churn with lift and calibration.

Every figure is computed on the warehouse the demo ingested, the way a shop would, and set
beside what the simulator knows to be true where that is possible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from ibis.backends import BaseBackend

from marketloop.data.profiles import build_profiles
from marketloop.predict import (
    BetaGeoModel,
    ChurnModel,
    GammaGammaModel,
    bgnbd_churn_score,
    churn_labels,
    expected_calibration_error,
    profiles_frame,
    reliability_table,
    summary_from_transactions,
)
from marketloop.predict._labels import alive_at_horizon

HOLDOUT_WEEKS = 13
CHURN_HORIZON_DAYS = 90


@dataclass
class ModelFigures:
    """What the report shows of the models."""

    clv_params: dict[str, float]
    holdout_by_frequency: pd.DataFrame  # frequency group, customers, predicted, actual
    holdout_total: tuple[float, float]  # predicted, actual
    clv: pd.Series  # 12-month CLV per customer at as_of
    truth_correlation: float  # predicted vs true expected purchases, 52 weeks
    churn_auc: float
    churn_auc_bgnbd: float
    churn_auc_true: float  # against the simulator's truth: dead at the horizon
    churn_auc_true_bgnbd: float
    churn_ece: float
    lift: pd.DataFrame  # decile, customers, churn_rate, lift
    reliability: pd.DataFrame


def model_stages(con: BaseBackend, truth: pd.DataFrame, *, as_of: pd.Timestamp) -> ModelFigures:
    """Fit BG/NBD + Gamma-Gamma and a churn model on the warehouse; check them."""
    orders = con.table("orders")
    paid = orders.filter(orders.status == "paid").select(
        "customer_id", "ordered_at", "amount", "status"
    )
    tx = paid.filter(paid.ordered_at < as_of.to_pydatetime()).to_pandas()
    tx["amount"] = tx["amount"].astype(float)
    # the last day with data: a small shop's last order may come days before the period ends
    last_day = min(as_of - pd.Timedelta(days=1),
                   pd.Timestamp(tx["ordered_at"].max()).tz_localize(None).floor("D"))

    # CLV, calibrated 13 weeks before the end and checked on those 13 weeks
    cal_end = last_day - pd.Timedelta(weeks=HOLDOUT_WEEKS)
    held = summary_from_transactions(tx, calibration_end=cal_end, holdout_end=last_day)
    check = BetaGeoModel().fit(held)
    held = held.assign(predicted=check.predict(held, horizon=None))
    group = held["frequency"].clip(upper=7).map(lambda f: "7+" if f >= 7 else str(int(f)))
    by_freq = (
        held.assign(group=group)
        .groupby("group")
        .agg(
            customers=("predicted", "size"),
            predicted=("predicted", "mean"),
            actual=("frequency_holdout", "mean"),
        )
        .reset_index()
    )

    # CLV at the end of the period, on everything before it
    summary = summary_from_transactions(tx, amount_col="amount", calibration_end=last_day)
    repeat = BetaGeoModel().fit(summary)
    buyers = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    spend = GammaGammaModel().fit(buyers).expected_spend(summary)
    clv = repeat.clv(summary, spend, months=12).rename("clv_12m")
    expected = repeat.predict(summary, horizon=52)
    both = pd.concat([expected, truth["expected_purchases_52w"]], axis=1, join="inner")
    correlation = float(np.corrcoef(both.iloc[:, 0], both.iloc[:, 1])[0, 1])

    # churn: profiles 90 days before the end, labels from the last 90 days
    cut = as_of - pd.Timedelta(days=CHURN_HORIZON_DAYS)
    profiles = profiles_frame(build_profiles(con, as_of=cut.to_pydatetime()))
    labels = churn_labels(
        tx, profiles.index, as_of=cut, horizon_days=CHURN_HORIZON_DAYS, observed_until=as_of
    )
    rng = np.random.default_rng(0)
    train = rng.random(len(profiles)) < 0.5
    model = ChurnModel(horizon_days=CHURN_HORIZON_DAYS, random_state=0)
    model.fit(profiles[train], labels[train])
    test, y = profiles[~train], labels[~train]
    p = model.predict(test)
    baseline = bgnbd_churn_score(tx, test.index, as_of=cut)
    dead = 1 - alive_at_horizon(truth, test.index, as_of=cut, horizon_days=CHURN_HORIZON_DAYS)
    from sklearn.metrics import roc_auc_score

    return ModelFigures(
        clv_params=dict(check.params_),
        holdout_by_frequency=by_freq,
        holdout_total=(float(held["predicted"].sum()), float(held["frequency_holdout"].sum())),
        clv=clv,
        truth_correlation=correlation,
        churn_auc=float(roc_auc_score(y, p)),
        churn_auc_bgnbd=float(roc_auc_score(y, baseline.reindex(test.index))),
        churn_auc_true=float(roc_auc_score(dead, p)),
        churn_auc_true_bgnbd=float(roc_auc_score(dead, baseline.reindex(test.index))),
        churn_ece=expected_calibration_error(y, p),
        lift=_lift(y, p),
        reliability=reliability_table(y, p),
    )


def _lift(y: pd.Series, p: pd.Series, n: int = 10) -> pd.DataFrame:
    """Churn rate per decile of predicted risk (1 = riskiest), over the overall rate."""
    ranked = pd.DataFrame({"y": y.to_numpy(), "p": p.to_numpy()}).sort_values("p", ascending=False)
    ranked["decile"] = np.arange(len(ranked)) * n // len(ranked) + 1
    out = ranked.groupby("decile").agg(customers=("y", "size"), churn_rate=("y", "mean"))
    out["lift"] = out["churn_rate"] / ranked["y"].mean()
    return out.reset_index()
