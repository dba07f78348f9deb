"""The simulator's truth about a win-back plan: who reactivates, and with what in the basket.

The simulator's response to a contact depends on the channel, offer, hour and format but
not on the products named in the message, so a bundle's worth is measured by what the
customer would buy: *bundle reactivation* is the chance of an order within the 14-day
response window (``true_response``'s ``p_convert``, or ``p_baseline`` without contact) that
holds at least one product of the bundle. An order has ``1 + Poisson(mu)`` lines,
``mu = 0.6 min(mean_spend / 60, 4)``, each drawn from ``softmax_j(pop_j + u_i . v_j +
season_c(j)(t))`` (docs/simulator.md), so with ``q`` the bundle's share of that softmax the
chance that the order holds a bundle product is ``1 - (1 - q) exp(-mu q)``.

Intervals are 95 % bootstrap intervals over the dormant customers (their exact
probabilities resampled), and the difference of two plans is paired by customer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from marketloop.simulate import Truth, true_response
from marketloop.simulate._params import SEASON_WEIGHT, TASTE_DIMS, TASTE_SCALE

#: Days in the response window; the season is read at its middle.
WINDOW_DAYS = 14


def bundle_share(truth: Truth, bundles: pd.DataFrame, *, day: float) -> pd.Series:
    """Each customer's true chance that one order line at ``day`` is a product of the bundle.

    ``bundles`` is indexed by ``customer_id`` with a ``product_id`` column (several rows per
    customer); ``day`` counts from the simulation's start.
    """
    tc, tp = truth.customers, truth.products
    ids = pd.Index(bundles.index.unique(), name="customer_id")
    u = tc.loc[ids, [f"taste_{k}" for k in range(TASTE_DIMS)]].to_numpy()
    v = tp[[f"item_{k}" for k in range(TASTE_DIMS)]].to_numpy()
    season = SEASON_WEIGHT * tp["season_amplitude"].to_numpy() * np.sin(
        2 * np.pi * day / 365.0 + tp["season_phase"].to_numpy())
    logit = tp["popularity"].to_numpy()[None, :] + TASTE_SCALE * (u @ v.T) + season[None, :]
    prob = np.exp(logit - logit.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    rows = ids.get_indexer(bundles.index)
    cols = tp.index.get_indexer(bundles["product_id"].astype(str))
    pairs = pd.DataFrame({"r": rows, "c": cols}).drop_duplicates()
    pairs = pairs[pairs.c >= 0]
    share = np.bincount(pairs.r, weights=prob[pairs.r, pairs.c], minlength=len(ids))
    return pd.Series(share, index=ids, name="bundle_share")


def bundle_hit(truth: Truth, bundles: pd.DataFrame, *, day: float) -> pd.Series:
    """Chance that an order at ``day`` holds at least one product of the customer's bundle."""
    q = bundle_share(truth, bundles, day=day)
    spend = truth.customers.loc[q.index, "mean_spend"].to_numpy()
    mu = 0.6 * np.minimum(spend / 60.0, 4.0)
    return pd.Series(1 - (1 - q.to_numpy()) * np.exp(-mu * q.to_numpy()), index=q.index,
                     name="bundle_hit")


def p_order(truth: Truth, actions: pd.DataFrame, *, send_hour: int = 10,
            fmt: str = "plain") -> pd.Series:
    """True chance of an order within 14 days under each customer's action.

    ``actions`` is indexed by ``customer_id`` with ``offer`` and ``channel``
    (``no_contact`` for none), as :func:`marketloop.strategy.winback.choose_actions` gives.
    """
    act = pd.DataFrame({"offer": actions["offer"].to_numpy(),
                        "channel": actions["channel"].to_numpy(),
                        "send_hour": send_hour, "format": fmt})
    out = true_response(truth, list(actions.index), act)
    return pd.Series(out["p_convert"].to_numpy(), index=actions.index, name="p_order")


def _interval(values: np.ndarray, rng: np.random.Generator, n_boot: int) -> tuple[float, float]:
    boot = values[rng.integers(len(values), size=(n_boot, len(values)))].mean(axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return float(low), float(high)


def reactivation_table(rates: dict[str, pd.Series], *, reference: str, n_boot: int = 2000,
                       random_state: int = 0) -> pd.DataFrame:
    """Mean rate of each plan with its interval, and its paired difference from ``reference``.

    ``rates`` maps a plan's name to its per-customer probabilities (same customers).
    """
    rng = np.random.default_rng(random_state)
    base = rates[reference].to_numpy()
    rows = []
    for name, rate in rates.items():
        values = rate.to_numpy()
        low, high = _interval(values, rng, n_boot)
        d_low, d_high = _interval(values - base, rng, n_boot)
        rows.append({"plan": name, "customers": len(values), "rate": values.mean(),
                     "low": low, "high": high, f"minus_{reference}": (values - base).mean(),
                     "diff_low": d_low, "diff_high": d_high})
    return pd.DataFrame(rows).set_index("plan")
