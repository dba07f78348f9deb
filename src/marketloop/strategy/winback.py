"""Win-back: find dormant customers, give each a bundle, choose the channel and the offer.

1. **Dormant** (:func:`dormant_customers`): BG/NBD probability alive below ``threshold`` for
   repeat buyers; BG/NBD holds every one-time buyer alive (its dropout happens after a
   repeat purchase), so one-time buyers count as dormant once idle for ``idle_days``.
2. **Bundle** (:func:`category_bundles`): each product is scored by the customer's chance of
   buying in its category and the product's share of that category's sales. The category
   chance is the customer's own history shrunk towards the shop's mix (``prior_weight``
   pseudo-purchases), times the category's seasonal index: its share of sales near this
   day of the year (a circular Gaussian kernel, ``season_width_days``) over its share all
   year. The ``size`` best products form the bundle, so a customer gets the products of
   the categories they bought in, weighted towards those in season.
   The rule it must beat, :func:`bestseller_bundles`, gives the best-sellers of the
   customer's most-bought category.
3. **Channel and offer** (:func:`choose_actions`): with an uplift model whose treatments are
   ``offer@channel`` labels (as in the simulator's action catalogue), the action with the
   highest predicted uplift, or no contact where every action is predicted to lower the
   chance of an order; without one, ``pct10@email`` (the reason column says which).
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd

from marketloop._validation import check_frame
from marketloop.exceptions import ConfigError, MarketloopWarning, SchemaError, describe
from marketloop.predict.clv import BetaGeoModel, summary_from_transactions

#: Action used when no uplift model is available: 10 % off, by email.
DEFAULT_ACTION = ("pct10", "email")
NO_CONTACT = "no_contact"


def dormant_customers(orders: pd.DataFrame, *, as_of: str | pd.Timestamp,
                      threshold: float = 0.3, idle_days: float = 180.0,
                      model: BetaGeoModel | None = None) -> pd.DataFrame:
    """Customers unlikely to buy again on their own, as of ``as_of``.

    Parameters
    ----------
    orders : pandas.DataFrame
        Paid orders: ``customer_id``, ``ordered_at``.
    as_of : str or pandas.Timestamp
        Orders strictly before it count.
    threshold : float, default=0.3
        Repeat buyers with BG/NBD probability alive below it are dormant.
    idle_days : float, default=180.0
        One-time buyers idle at least this long are dormant.
    model : BetaGeoModel, optional
        A fitted model; by default one is fitted on ``orders``.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id``: ``p_alive``, ``frequency`` (repeat purchases),
        ``idle_days`` and ``why`` (``p_alive`` or ``idle_one_time``), least alive first.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(describe("dormant_customers threshold", "a probability in [0, 1]",
                                   repr(threshold)))
    if not (np.isfinite(idle_days) and idle_days >= 0):
        raise ConfigError(describe("dormant_customers idle_days", "a number of days, 0 or more",
                                   repr(idle_days)))
    where = "dormant_customers orders"
    check_frame(orders, required=["customer_id", "ordered_at"], where=where)
    as_of = pd.Timestamp(as_of)
    past = orders[pd.to_datetime(orders["ordered_at"]) < as_of]
    if past.empty:
        raise SchemaError(describe(where, f"orders before {as_of:%Y-%m-%d}", "none",
                                   "Choose a later --as-of or load the orders first."))
    summary = summary_from_transactions(past, calibration_end=as_of - pd.Timedelta(days=1))
    fitted = BetaGeoModel().fit(summary) if model is None else model
    p_alive = fitted.probability_alive(summary)
    last = pd.to_datetime(past["ordered_at"]).groupby(past["customer_id"]).max()
    idle = ((as_of - last).dt.total_seconds() / 86_400).reindex(summary.index)
    repeat = summary["frequency"] > 0
    why = np.where(repeat & (p_alive < threshold), "p_alive",
                   np.where(~repeat & (idle >= idle_days), "idle_one_time", ""))
    out = pd.DataFrame({"p_alive": p_alive, "frequency": summary["frequency"],
                        "idle_days": idle, "why": why}, index=summary.index)
    out = out[out["why"] != ""].sort_values(["p_alive", "idle_days"], ascending=[True, False])
    out.index = out.index.astype(str).rename("customer_id")
    return out


def _day_distance(days: np.ndarray, target: float) -> np.ndarray:
    gap = np.abs(days - target)
    return np.minimum(gap, 365.25 - gap)


def seasonal_index(interactions: pd.DataFrame, categories: pd.Series, *,
                   as_of: pd.Timestamp, horizon_days: float = 14.0,
                   width_days: float = 21.0) -> pd.Series:
    """Each category's share of sales near the coming days of the year over its share overall.

    1.0 means no season; 2.0 that the category sells twice its usual share at this time.
    """
    cat = categories.reindex(interactions["product_id"]).to_numpy()
    target = (as_of + pd.Timedelta(days=horizon_days / 2)).day_of_year
    weight = np.exp(-0.5 * (_day_distance(interactions["ts"].dt.day_of_year.to_numpy(),
                                          target) / width_days) ** 2)
    frame = pd.DataFrame({"category": cat, "w": weight}).dropna(subset=["category"])
    near = frame.groupby("category")["w"].sum() / max(frame["w"].sum(), 1e-12)
    overall = frame.groupby("category").size() / max(len(frame), 1)
    return (near / overall).reindex(overall.index).fillna(1.0).rename("seasonal_index")


def category_bundles(interactions: pd.DataFrame, products: pd.DataFrame,
                     customer_ids: Sequence[str], *, as_of: str | pd.Timestamp, size: int = 5,
                     prior_weight: float = 2.0, width_days: float = 21.0,
                     horizon_days: float = 14.0,
                     exclude_items: Collection[str] | None = None) -> pd.DataFrame:
    """A bundle per customer from their history's categories and the current season.

    Parameters
    ----------
    interactions : pandas.DataFrame
        Purchases before ``as_of``: ``customer_id``, ``product_id``, ``ts``.
    products : pandas.DataFrame
        ``product_id`` and ``category``.
    customer_ids : sequence of str
        Who to build bundles for; a customer without history gets the seasonal mix.
    as_of : str or pandas.Timestamp
        The day the campaign goes out.
    size : int, default=5
        Products per bundle.
    prior_weight : float, default=2.0
        Pseudo-purchases of the shop's category mix added to each history.
    width_days, horizon_days : float, default=21.0, 14.0
        The seasonal kernel's width and the campaign's response window.
    exclude_items : collection of str, optional
        Products never to offer (out of stock).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id``: ``rank``, ``product_id``, ``category``, ``score`` (the
        estimated chance that a purchase is this product).

    Warns
    -----
    MarketloopWarning
        If fewer than ``size`` products can be offered: the bundles are that many long.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(describe("category_bundles size", "a whole number of products >= 1",
                                   repr(size)))
    check_frame(products, required=["product_id", "category"], where="category_bundles products")
    as_of = pd.Timestamp(as_of)
    past = interactions[interactions["ts"] < as_of]
    cats = products.assign(product_id=products["product_id"].astype(str)).set_index(
        "product_id")["category"].astype(str)
    season = seasonal_index(past, cats, as_of=as_of, horizon_days=horizon_days,
                            width_days=width_days)
    sales = past["product_id"].value_counts().reindex(cats.index, fill_value=0)
    if exclude_items is not None:
        sales[sales.index.isin([str(e) for e in exclude_items])] = 0
    cat_sales = sales.groupby(cats).sum()
    names = season.index.intersection(cat_sales.index[cat_sales > 0])
    mix = (cat_sales[names] / cat_sales[names].sum()).to_numpy()
    share_in_cat = (sales / cats.map(cat_sales).replace(0, np.nan)).fillna(0.0)
    ids = pd.Index([str(c) for c in customer_ids], name="customer_id")
    hist = (past.assign(category=cats.reindex(past["product_id"]).to_numpy())
            .groupby(["customer_id", "category"]).size().unstack(fill_value=0)
            .reindex(index=ids, columns=names, fill_value=0).to_numpy(dtype=np.float64))
    pref = (hist + prior_weight * mix) / (hist.sum(axis=1, keepdims=True) + prior_weight)
    pref = pref * season[names].to_numpy()
    pref /= pref.sum(axis=1, keepdims=True)
    items = share_in_cat.index[cats.isin(names) & (share_in_cat > 0)]
    col = names.get_indexer(cats[items])
    scores = pref[:, col] * share_in_cat[items].to_numpy()[None, :]
    k = min(size, len(items))
    if k < size and len(ids):
        warnings.warn(f"bundles of {k} products, not the {size} asked for: only {k} products "
                      f"sold before {as_of:%Y-%m-%d} and are not excluded", MarketloopWarning,
                      stacklevel=2)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    chosen = items.to_numpy()[top]
    return pd.DataFrame({
        "rank": np.tile(np.arange(1, k + 1), len(ids)),
        "product_id": chosen.ravel(), "category": cats[chosen.ravel()].to_numpy(),
        "score": np.take_along_axis(scores, top, axis=1).ravel(),
    }, index=pd.Index(np.repeat(ids.to_numpy(), k), name="customer_id"))


def bestseller_bundles(interactions: pd.DataFrame, products: pd.DataFrame,
                       customer_ids: Sequence[str], *, as_of: str | pd.Timestamp,
                       size: int = 5) -> pd.DataFrame:
    """The rule: the ``size`` best-sellers of each customer's most-bought category.

    Ties between categories go to the one with more sales in the shop; a customer without
    history gets the shop's best-selling category. Same columns as :func:`category_bundles`.
    """
    as_of = pd.Timestamp(as_of)
    past = interactions[interactions["ts"] < as_of]
    cats = products.assign(product_id=products["product_id"].astype(str)).set_index(
        "product_id")["category"].astype(str)
    sales = past["product_id"].value_counts().reindex(cats.index, fill_value=0)
    cat_sales = sales.groupby(cats).sum().sort_values(ascending=False, kind="stable")
    hist = (past.assign(category=cats.reindex(past["product_id"]).to_numpy())
            .groupby(["customer_id", "category"]).size().unstack(fill_value=0)
            .reindex(columns=cat_sales.index, fill_value=0))
    favourite = hist.idxmax(axis=1)  # first maximum: the columns are in shop-sales order
    best = {c: sales[cats == c].sort_values(ascending=False, kind="stable").index[:size]
            for c in cat_sales.index}
    rows = []
    for customer in (str(c) for c in customer_ids):
        category = favourite.get(customer, cat_sales.index[0])
        for rank, product in enumerate(best[category], start=1):
            rows.append((customer, rank, product, category, float(sales[product])))
    frame = pd.DataFrame(rows, columns=["customer_id", "rank", "product_id", "category",
                                        "score"])
    return frame.set_index("customer_id")


def choose_actions(features: pd.DataFrame, *, uplift_model: object | None = None,
                   default: tuple[str, str] = DEFAULT_ACTION) -> pd.DataFrame:
    """Channel and offer per customer: the best predicted uplift, or the default.

    Parameters
    ----------
    features : pandas.DataFrame
        Indexed by ``customer_id``, with the uplift model's features.
    uplift_model : marketloop.strategy.uplift.UpliftModel, optional
        Fitted with treatments labelled ``offer@channel`` against a no-contact control.
    default : (str, str), default=("pct10", "email")
        Offer and channel without a model.

    Returns
    -------
    pandas.DataFrame
        Same index: ``offer``, ``channel``, ``expected_uplift`` (NaN without a model),
        ``reason``.
    """
    if uplift_model is None:
        return pd.DataFrame({"offer": default[0], "channel": default[1],
                             "expected_uplift": np.nan,
                             "reason": "default action: no uplift model"}, index=features.index)
    uplift = uplift_model.predict(features)  # type: ignore[attr-defined]
    bad = [t for t in uplift.columns if str(t).count("@") != 1]
    if bad:
        raise SchemaError(describe("choose_actions uplift model treatments",
                                   "labels offer@channel, e.g. pct10@email",
                                   ", ".join(map(str, bad))))
    best = uplift.idxmax(axis=1).astype(str)
    gain = uplift.max(axis=1)
    offer = best.str.split("@").str[0].where(gain > 0, NO_CONTACT)
    channel = best.str.split("@").str[1].where(gain > 0, NO_CONTACT)
    reason = np.where(gain > 0, "highest predicted uplift",
                      "no contact: every action is predicted to lower the chance of an order")
    return pd.DataFrame({"offer": offer, "channel": channel, "expected_uplift": gain,
                         "reason": reason}, index=features.index)


def winback_features(orders: pd.DataFrame, customers: pd.DataFrame, *,
                     as_of: str | pd.Timestamp) -> pd.DataFrame:
    """RFM features per customer as of ``as_of`` (the simulator's campaign features).

    ``frequency`` (repeat orders), ``recency_days``, ``tenure_days``, ``monetary`` (mean
    order amount), and ``region``, ``age_band``, ``device``, ``income_band`` where the
    customers table has them.
    """
    as_of = pd.Timestamp(as_of)
    cust = customers.assign(customer_id=customers["customer_id"].astype(str)).set_index(
        "customer_id")
    past = orders[pd.to_datetime(orders["ordered_at"]) < as_of]
    g = past.groupby(past["customer_id"].astype(str))
    stats = pd.DataFrame({"n": g.size(), "last": pd.to_datetime(g["ordered_at"].max()),
                          "monetary": g["amount"].mean()}).reindex(cust.index)
    first = pd.to_datetime(cust["first_seen"])
    feats = pd.DataFrame(index=cust.index)
    feats["frequency"] = (stats["n"].fillna(1) - 1).astype(np.int64)
    feats["recency_days"] = (as_of - stats["last"].fillna(first)).dt.total_seconds() / 86_400
    feats["tenure_days"] = (as_of - first).dt.total_seconds() / 86_400
    feats["monetary"] = stats["monetary"].astype(float).fillna(0.0)
    for col in ("region", "age_band", "device", "income_band"):
        if col in cust.columns:
            feats[col] = cust[col].astype(str)
    return feats


def plan_winback(orders: pd.DataFrame, interactions: pd.DataFrame, products: pd.DataFrame,
                 customers: pd.DataFrame, *, as_of: str | pd.Timestamp, size: int = 5,
                 threshold: float = 0.3, idle_days: float = 180.0,
                 uplift_model: object | None = None,
                 exclude_items: Collection[str] | None = None) -> pd.DataFrame:
    """The win-back plan: one row per dormant customer.

    Columns ``customer_id``, ``p_alive``, ``why``, ``bundle`` (product ids separated by
    spaces, best first), ``categories``, ``offer``, ``channel``, ``expected_uplift`` and
    ``reason``.
    """
    dormant = dormant_customers(orders, as_of=as_of, threshold=threshold, idle_days=idle_days)
    ids = list(dormant.index)
    bundles = category_bundles(interactions, products, ids, as_of=as_of, size=size,
                               exclude_items=exclude_items)
    grouped = bundles.groupby(level=0, sort=False)
    feats = winback_features(orders, customers, as_of=as_of).reindex(ids)
    actions = choose_actions(feats, uplift_model=uplift_model)
    plan = dormant[["p_alive", "why"]].assign(
        bundle=grouped["product_id"].agg(" ".join),
        categories=grouped["category"].agg(lambda s: " ".join(dict.fromkeys(s))),
    ).join(actions)
    return plan.reset_index()
