"""Logged campaigns at the period end: a randomised one and the shop's historical targeting."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from marketloop.simulate._market import Shop
from marketloop.simulate._params import RESPONSE
from marketloop.simulate._response import true_response
from marketloop.simulate._util import sigmoid


@dataclass(frozen=True)
class Campaign:
    """A logged campaign: observable features, who was treated, what happened, the truth.

    Attributes
    ----------
    features : pandas.DataFrame
        Indexed by ``customer_id``: ``frequency`` (repeat orders), ``recency_days``,
        ``tenure_days``, ``monetary`` (mean order amount) as of the period end, and
        ``region``, ``age_band``, ``device``, ``income_band``.
    treated, converted, complained : pandas.Series of bool
        Whether the customer got the action, ordered within 14 days, complained.
    propensity : pandas.Series
        Probability of treatment under the logging policy.
    true_uplift : pandas.Series
        True P(convert | action) - P(convert | no contact).
    action : dict
        The action sent: offer, channel, send_hour, format.
    """

    features: pd.DataFrame
    treated: pd.Series
    converted: pd.Series
    complained: pd.Series
    propensity: pd.Series
    true_uplift: pd.Series
    action: dict[str, object]


def campaign_features(shop: Shop) -> pd.DataFrame:
    """Observable RFM-style features per customer as of the period end."""
    end = pd.Timestamp(shop.truth.params["end"])
    cust = shop.customers.set_index("customer_id")
    o = shop.orders
    g = o.groupby("customer_id", sort=False)
    stats = pd.DataFrame({"n": g.size(), "last": g["ordered_at"].max(),
                          "monetary": g["amount"].mean()}).reindex(cust.index)
    feats = pd.DataFrame(index=cust.index)
    feats["frequency"] = (stats["n"].fillna(1) - 1).astype(np.int64)
    first = pd.to_datetime(cust["first_seen"])
    feats["recency_days"] = ((end - stats["last"].fillna(first)).dt.total_seconds() / 86_400)
    feats["tenure_days"] = (end - first).dt.total_seconds() / 86_400
    feats["monetary"] = stats["monetary"].fillna(0.0)
    for col in ("region", "age_band", "device", "income_band"):
        feats[col] = cust[col]
    return feats


def _log(shop: Shop, propensity: np.ndarray, action: dict[str, object],
         rng: np.random.Generator) -> Campaign:
    feats = campaign_features(shop)
    ids = feats.index
    treated = rng.random(len(ids)) < propensity
    resp = true_response(shop.truth, ids, pd.DataFrame([action]))
    p = np.where(treated, resp["p_convert"], resp["p_baseline"])
    converted = rng.random(len(ids)) < p
    complained = treated & (rng.random(len(ids)) < resp["p_complaint"].to_numpy())
    s = lambda v, name: pd.Series(v, index=ids, name=name)  # noqa: E731
    return Campaign(feats, s(treated, "treated"), s(converted, "converted"),
                    s(complained, "complained"), s(propensity, "propensity"),
                    s(resp["uplift"].to_numpy(), "true_uplift"), action)


def random_campaign(shop: Shop, treat_share: float = 0.5, *, offer: str = "pct10",
                    channel: str = "email", send_hour: int = 10, format: str = "plain",
                    random_state: int | None = None) -> Campaign:
    """A randomised campaign: each customer treated with probability ``treat_share``.

    Under the ``historical_bias`` scenario the shop's randomisation under-served one region
    (``RESPONSE.biased_region``) by ``RESPONSE.biased_treat_factor``; the propensity is logged.

    Examples
    --------
    >>> from marketloop.simulate import Market
    >>> c = Market(n_customers=2_000, n_days=180, random_state=0).random_campaign(0.5)
    >>> bool(0.45 < c.treated.mean() < 0.55)
    True
    """
    if not 0.0 < treat_share < 1.0:
        raise ValueError(f"random_campaign treat_share: expected a value in (0, 1); "
                         f"found {treat_share}.")
    rng = np.random.default_rng(random_state)
    prop = np.full(len(shop.customers), float(treat_share))
    if "historical_bias" in shop.truth.params["scenarios"]:
        biased = shop.customers["region"].to_numpy() == RESPONSE.biased_region
        prop[biased] *= RESPONSE.biased_treat_factor
    action = {"offer": offer, "channel": channel, "send_hour": send_hour, "format": format}
    return _log(shop, prop, action, rng)


def historical_campaign(shop: Shop, *, random_state: int | None = None) -> Campaign:
    """The shop's own past targeting: recent, frequent buyers more likely treated.

    Propensity ``sigmoid(0.6 * frequency - 0.01 * recency_days - 0.5)``, clipped to
    [0.02, 0.98]; ``historical_bias`` multiplies it by ``biased_treat_factor`` in one region
    regardless of true response.
    """
    rng = np.random.default_rng(random_state)
    feats = campaign_features(shop)
    z = 0.6 * np.minimum(feats["frequency"], 5) - 0.01 * feats["recency_days"] - 0.5
    prop = np.clip(sigmoid(z.to_numpy()), 0.02, 0.98)
    if "historical_bias" in shop.truth.params["scenarios"]:
        prop = np.where(feats["region"].to_numpy() == RESPONSE.biased_region,
                        prop * RESPONSE.biased_treat_factor, prop)
    action = {"offer": "pct10", "channel": "email", "send_hour": 10, "format": "plain"}
    return _log(shop, prop, action, rng)
