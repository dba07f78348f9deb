"""How well can any model of a customer's history predict the simulator's true future purchases?

The simulator's truth ``expected_purchases_52w`` is ``(1 - exp(-lambda p t)) / p`` for a customer
alive at the end and 0 for one who has left: it depends on the customer's own rates and on
whether they already dropped out, which no history shows for sure. The best any predictor
of that truth can do from the history is the posterior mean under the true generative
model, computed here by numerical integration over (lambda, p) with the simulator's true
population parameters, from the purchases alone and from the purchases plus every browsing
session (sessions happen only while alive, at a rate rising with lambda: a session after the
last purchase proves the customer alive). Its correlation with the truth is the ceiling for
every model; the fitted BG/NBD must reach the purchases-only ceiling.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from marketloop.predict import BetaGeoModel, summary_from_transactions
from marketloop.simulate import Market

pytestmark = pytest.mark.slow

N_CUSTOMERS, SAMPLE = 20_000, 3_000
#: Browsing sessions per day while alive: BASE + SLOPE * lambda / 7 (simulate/_events.py).
BROWSE_BASE, BROWSE_SLOPE = 0.006, 0.3


def _posterior_means(
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    sessions: np.ndarray,
    after: np.ndarray,
    params: dict[str, float],
    use_sessions: bool,
) -> np.ndarray:
    """E[true 52-week purchases | history] on a 120 x 60 quantile grid of (lambda, p)."""
    lam = stats.gamma(params["r"], scale=1 / params["alpha"]).ppf((np.arange(120) + 0.5) / 120)
    p = stats.beta(params["a"], params["b"]).ppf((np.arange(60) + 0.5) / 60)
    L, P = np.meshgrid(lam, p, indexing="ij")
    future = -np.expm1(-L * P * 52) / P
    rate = (BROWSE_BASE + BROWSE_SLOPE * L / 7) * 7  # sessions per week
    out = np.empty(len(x))
    for i in range(len(x)):
        alive = x[i] * (np.log1p(-P) + np.log(L)) - L * T[i]
        gone = (
            np.log(P) + (x[i] - 1) * np.log1p(-P) + x[i] * np.log(L) - L * t_x[i]
            if x[i] > 0
            else np.full_like(L, -np.inf)
        )
        if use_sessions:
            alive = alive + sessions[i] * np.log(rate) - rate * T[i]
            gone = (
                (gone + sessions[i] * np.log(rate) - rate * t_x[i])
                if not after[i]
                else (np.full_like(L, -np.inf))
            )
        top = max(alive.max(), gone.max())
        wa, wg = np.exp(alive - top), np.exp(gone - top)
        out[i] = (wa * future).sum() / (wa + wg).sum()
    return out


def test_no_model_of_the_history_can_reach_0_9_and_bgnbd_reaches_the_ceiling() -> None:
    shop = Market(n_customers=N_CUSTOMERS, n_days=365, random_state=0).simulate(
        ("customers", "orders", "events")
    )
    summary = summary_from_transactions(
        shop.orders, amount_col="amount", calibration_end="2025-12-31"
    )
    truth = shop.truth.customers.loc[summary.index, "expected_purchases_52w"].to_numpy()
    params = {k: float(shop.truth.params[k]) for k in ("r", "alpha", "a", "b")}
    ours = BetaGeoModel().fit(summary).predict(summary, horizon=52).to_numpy()

    end = pd.Timestamp("2026-01-01")
    events = shop.events
    views = events[(events.ts < end) & events.customer_id.notna() & (events.type == "page_view")]
    sessions = views.groupby("customer_id").ts.agg(["count", "max"]).reindex(summary.index)
    last_order = shop.orders[shop.orders.ordered_at < end].groupby("customer_id").ordered_at.max()
    after = sessions["max"] > last_order.reindex(summary.index) + pd.Timedelta(hours=1)
    rows = np.random.default_rng(0).choice(len(summary), SAMPLE, replace=False)
    args = (
        summary.frequency.to_numpy()[rows],
        summary.recency.to_numpy()[rows],
        summary["T"].to_numpy()[rows],
        sessions["count"].fillna(0).to_numpy()[rows],
        after.fillna(False).to_numpy()[rows],
        params,
    )
    purchases_only = _posterior_means(*args, use_sessions=False)
    with_sessions = _posterior_means(*args, use_sessions=True)

    def corr(a: np.ndarray) -> float:
        return float(np.corrcoef(a, truth[rows])[0, 1])

    # measured (seed 0, 3,000 of 20,000): purchases only 0.74, with sessions 0.76, ours 0.74
    assert corr(with_sessions) < 0.8  # the 0.9 is out of reach of any history model
    assert corr(with_sessions) >= corr(purchases_only)
    assert corr(ours[rows]) >= corr(purchases_only) - 0.01  # the fitted model is at the ceiling
    # and it is the Bayes-optimal forecast of the history, to within the parameter estimates
    assert np.corrcoef(ours[rows], purchases_only)[0, 1] > 0.995


def test_the_ceiling_is_the_bgnbd_process_not_this_simulators_parameters() -> None:
    """Under BG/NBD with the published CDNow estimates the best history model is no closer.

    Draws 3,000 customers from the BG/NBD process itself (numpy, no shop) with r, alpha, a,
    b = 0.243, 4.414, 0.793, 2.426 (Fader, Hardie & Lee 2005) and up to a year of history;
    the truth is 0 for those who dropped out and (1 - e^(-lambda p 52)) / p for the others.
    """
    params = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    rng = np.random.default_rng(0)
    n = SAMPLE
    lam = rng.gamma(params["r"], 1.0 / params["alpha"], n)
    p = rng.beta(params["a"], params["b"], n)
    T = rng.integers(1, 366, n) / 7.0
    N, J = rng.poisson(lam * T), rng.geometric(p)
    x = np.minimum(N, J)
    t_x = np.zeros(n)
    rep = x > 0
    t_x[rep] = T[rep] * rng.beta(x[rep], N[rep] - x[rep] + 1)
    truth = np.where(N < J, -np.expm1(-lam * p * 52) / p, 0.0)
    none = np.zeros(n)
    best = _posterior_means(x, t_x, T, none, none.astype(bool), params, use_sessions=False)
    # measured: 0.70 (seed 0); with this simulator's parameters the same draw gives 0.69
    assert np.corrcoef(best, truth)[0, 1] < 0.8
