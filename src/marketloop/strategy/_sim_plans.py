"""Plans on the market simulator: its offers, true and estimated scores, rule baselines.

Helpers of :mod:`marketloop.strategy.campaign_eval`. The simulator's catalogue actions
(offer x channel, at each customer's preferred hour and format) become offers named like
the catalogue (``pct10@email``); the shop learns their effects from a randomised test on
some customers and plans for the others.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from marketloop.exceptions import ConfigError, SchemaError, describe
from marketloop.simulate import Shop, Truth
from marketloop.strategy.allocate import Allocation, OfferBook, parse_offers

#: Simulator offers and the offers-file type each one is.
SIM_OFFERS = ("none", "pct10", "pct20", "freeship")
_TYPES = {"none": "message", "pct10": "pct", "pct20": "pct", "freeship": "freeship"}
#: RFM segments in the order a traditional campaign serves them: win back the valuable,
#: reward the loyal, nurture the new, and the lapsed last.
RFM_PRIORITY = ("cannot_lose", "at_risk", "champions", "loyal", "need_attention",
                "potential_loyalists", "about_to_sleep", "promising", "new", "hibernating",
                "lost")


def simulator_offers(truth: Truth, *, offers: Sequence[str] = SIM_OFFERS,
                     channels: Sequence[str] | None = None) -> OfferBook:
    """The simulator's catalogue actions as an offers book, with its exact cost model.

    The simulator states its margin on the amount paid (profit = paid value × margin), so
    a share ``d`` off costs ``d × margin`` of the treated order value per redemption; free
    shipping costs its coupon amount; contacts cost the channel's price.

    Examples
    --------
    >>> from marketloop.simulate import Market
    >>> truth = Market(n_customers=200, n_days=60, random_state=0).simulate(()).truth
    >>> book = simulator_offers(truth, channels=["email"])
    >>> book.names
    ['none@email', 'pct10@email', 'pct20@email', 'freeship@email']
    """
    cat = truth.actions
    margin = float(truth.params["response"]["gross_margin"])
    unknown = sorted(set(offers) - set(_TYPES))
    if unknown:
        raise ConfigError(describe("simulator_offers offers", f"any of {list(_TYPES)}",
                                   str(unknown)))
    rows = cat[cat["offer"].isin(offers)
               & (cat["channel"].isin(channels) if channels is not None else True)]
    if rows.empty:
        raise ConfigError(describe("simulator_offers", "at least one catalogue action",
                                   f"none for offers {list(offers)} and channels {channels}"))
    records = [{
        "name": r.action, "type": _TYPES[r.offer], "channel": r.channel,
        "depth": float(r.discount if r.offer != "freeship" else r.coupon_cost),
        "contact_cost": float(r.contact_cost), "value_lift": float(r.value_lift),
        "redemption_share": float(r.discount) * margin, "redemption_amount": float(r.coupon_cost),
    } for r in rows.itertuples()]
    return parse_offers({"margin": margin, "currency": str(truth.params.get("currency", "EUR")),
                         "offers": records}, where="simulator offers")


def true_scores(truth: Truth, offers: OfferBook,
                customers: pd.Index | None = None) -> pd.DataFrame:
    """The true scores: uplift and P(convert | treated) of every offer, true order value."""
    te = truth.treatment_effects
    action = te["action"]
    if not isinstance(action.dtype, pd.CategoricalDtype):
        action = action.astype("category")
    categories = [str(c) for c in action.cat.categories]
    missing = [n for n in offers.names if n not in categories]
    if missing:
        raise SchemaError(describe("true_scores offers", "actions of the simulator's catalogue",
                                   f"{missing}", "Use simulator_offers(truth)."))
    index = pd.Index(truth.customers.index.astype(str), name="customer_id")
    row = index.get_indexer(te["customer_id"])
    col = pd.Index(offers.names).get_indexer(
        np.asarray(categories, dtype=object)[action.cat.codes.to_numpy()])
    keep = (row >= 0) & (col >= 0)
    shape = (len(index), len(offers.names))
    uplift, p_convert = np.full(shape, np.nan), np.full(shape, np.nan)
    uplift[row[keep], col[keep]] = te["uplift"].to_numpy(dtype=np.float64)[keep]
    p_convert[row[keep], col[keep]] = te["p_convert"].to_numpy(dtype=np.float64)[keep]
    columns: dict[str, np.ndarray] = {}
    for j, name in enumerate(offers.names):
        columns[f"uplift_{name}"] = uplift[:, j]
        columns[f"p_treated_{name}"] = p_convert[:, j]
    columns["order_value"] = truth.customers["mean_spend"].to_numpy(dtype=np.float64)
    out = pd.DataFrame(columns, index=index)
    return out if customers is None else out.loc[customers]


def randomised_log(truth: Truth, offers: OfferBook, customers: pd.Index, *, control_share: float,
             random_state: int | None) -> pd.DataFrame:
    """A randomised test on ``customers``: arm (``control`` or an offer) and conversion.

    Each customer is in control with probability ``control_share``, else in one of the
    offers uniformly; conversions are drawn from the true probabilities.
    """
    if not 0.0 < control_share < 1.0:
        raise ConfigError(describe("control_share", "a share in (0, 1)", repr(control_share)))
    rng = np.random.default_rng(random_state)
    n, k = len(customers), len(offers.names)
    arm = np.where(rng.random(n) < control_share, -1, rng.integers(0, k, n))
    truth_scores = true_scores(truth, offers, customers)
    p1 = truth_scores[[f"p_treated_{o}" for o in offers.names]].to_numpy()
    p0 = p1[:, 0] - truth_scores[f"uplift_{offers.names[0]}"].to_numpy()
    p = np.where(arm < 0, p0, p1[np.arange(n), np.maximum(arm, 0)])
    labels = np.asarray(["control", *offers.names], dtype=object)[arm + 1]
    return pd.DataFrame({"arm": labels, "converted": (rng.random(n) < p).astype(np.int64)},
                        index=pd.Index(customers, name="customer_id"))


def observed_order_value(shop: Shop, customers: pd.Index) -> pd.Series:
    """Mean paid order amount per customer, shrunk by one order toward the shop's mean."""
    paid = shop.orders[shop.orders["status"] == "paid"]
    g = paid.groupby("customer_id")["amount"]
    total, count = g.sum().reindex(customers).fillna(0.0), g.size().reindex(customers).fillna(0)
    prior = float(paid["amount"].mean()) if len(paid) else 1.0
    return ((total + prior) / (count + 1)).rename("order_value")


def rule_plan(order: pd.Index, cost: pd.Series, offer: pd.Series, *, budget: float,
              reason: pd.Series, customers: pd.Index) -> Allocation:
    """Send ``offer`` to customers in ``order`` until the next one's cost would overrun."""
    cum = cost.loc[order].cumsum().to_numpy()
    chosen = order[: int(np.searchsorted(cum, budget, side="right"))]
    plan = pd.DataFrame({"offer": pd.array([pd.NA] * len(customers), dtype="string"),
                         "expected_incremental_profit": np.nan, "expected_cost": 0.0,
                         "rank": 0, "reason": "not reached within the budget"},
                        index=pd.Index(customers, name="customer_id"))
    plan.loc[chosen, "offer"] = offer.loc[chosen].to_numpy()
    plan.loc[chosen, "expected_cost"] = cost.loc[chosen].to_numpy()
    plan.loc[chosen, "rank"] = np.arange(1, len(chosen) + 1)
    plan.loc[chosen, "reason"] = reason.loc[chosen].to_numpy()
    return Allocation(plan, budget, float(cost.loc[chosen].sum()), float("nan"), None)


def rfm_order(shop: Shop, customers: pd.Index, priority: Sequence[str] = RFM_PRIORITY
              ) -> tuple[pd.Index, pd.Series]:
    """Customers in RFM-campaign order (segment priority, then spend) and their reasons."""
    import ibis

    from marketloop.strategy.rfm import rfm_segments

    orders = ibis.memtable(shop.orders[["order_id", "customer_id", "ordered_at", "status",
                                        "amount"]])
    seg = rfm_segments(orders, as_of=str(shop.truth.params["end"])).to_pandas()
    seg = seg.set_index("customer_id").reindex(customers)
    rank = seg["segment"].map({s: i for i, s in enumerate(priority)}).fillna(len(priority))
    frame = pd.DataFrame({"rank": rank.to_numpy(), "monetary": seg["monetary"].fillna(0.0)
                          .to_numpy(), "id": customers.astype(str)}, index=customers)
    ordered = frame.sort_values(["rank", "monetary", "id"], ascending=[True, False, True]).index
    reason = "rfm rule: segment " + seg["segment"].fillna("(none)").astype(str)
    return ordered, reason


def observable_features(shop: Shop) -> pd.DataFrame:
    """What the shop can see per customer: order profile, marketing consents, demographics.

    :func:`~marketloop.strategy.online.simulator_profiles` (recency, frequency, order value,
    tenure, order hours, device, income band), plus one 0/1 column per channel for a granted
    marketing consent (a signal of contact tolerance) and age band and region one-hot.
    """
    from marketloop.strategy.online import simulator_profiles

    out = simulator_profiles(shop)
    cons = shop.consents
    if len(cons):
        granted = (cons[cons["purpose"] == "marketing"]
                   .drop_duplicates(["customer_id", "channel"], keep="last")
                   .pivot(index="customer_id", columns="channel", values="granted"))
        out = out.join(granted.astype(np.float64).add_prefix("consent_"))
    cust = shop.customers.set_index("customer_id")
    demo = pd.get_dummies(cust[["age_band", "region"]].astype(str), dtype=np.float64)
    return out.join(demo).fillna(0.0).astype(np.float64)


def ceiling_scores(shop: Shop, offers: OfferBook, train: pd.Index, customers: pd.Index,
                   *, random_state: int | None = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Profit and cost per offer predicted from observable features, learnt from the truth.

    LightGBM regressors of each offer's *true* expected profit and cost (no outcome noise)
    on :func:`observable_features`, fit on ``train`` and predicted for ``customers``: what
    a perfect learner of what the shop can see would plan, the ceiling of any uplift model.
    """
    from lightgbm import LGBMRegressor

    from marketloop.strategy.allocate import offer_values

    features = observable_features(shop)
    scores = true_scores(shop.truth, offers, train.append(customers))
    values = offer_values(scores, offers)
    profit, cost = {}, {}
    for name in offers.names:
        for target, out in ((values.profit, profit), (values.cost, cost)):
            model = LGBMRegressor(n_estimators=300, learning_rate=0.05, num_leaves=31,
                                  random_state=random_state, verbose=-1, n_jobs=1)
            model.fit(features.loc[train], target.loc[train, name])
            out[name] = model.predict(features.loc[customers])
    index = pd.Index(customers, name="customer_id")
    return (pd.DataFrame(profit, index=index),
            pd.DataFrame(cost, index=index).clip(lower=0.0))
