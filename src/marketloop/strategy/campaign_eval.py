"""Campaign plans judged by the simulator's truth: uplift plan, RFM rule, random, oracle.

Every plan chooses, for the same customers and the same budget, one of the simulator's
catalogue actions (offer x channel, sent at the customer's preferred hour and format) or
nothing. Its value is the *true* expected incremental profit of what it sends, from
``truth.treatment_effects`` (:func:`true_value`); :func:`compare_plans` reports each plan
as a share of the oracle's (the allocation on the true effects), with bootstrap intervals
over customers. :func:`evaluate_on_simulator` runs the whole comparison: a randomised test
on some customers, an uplift model fit on it, and the four plans for the other customers.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone

from marketloop.exceptions import ConfigError, MarketloopWarning, SchemaError, describe
from marketloop.simulate import Shop, Truth
from marketloop.strategy._sim_plans import (
    RFM_PRIORITY,
    SIM_OFFERS,
    ceiling_scores,
    observable_features,
    observed_order_value,
    randomised_log,
    rfm_order,
    rule_plan,
    simulator_offers,
    true_scores,
)
from marketloop.strategy._uplift_calibration import Calibration
from marketloop.strategy.allocate import (
    Allocation,
    OfferBook,
    allocate,
    offer_values,
    plan_campaign,
)


@dataclass(frozen=True)
class PlanComparison:
    """Plans valued by the truth, as shares of the oracle's true incremental profit.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per plan: ``customers`` (sent an offer), ``planned_spend`` (the plan's own
        estimate), ``true_spend`` and ``true_profit`` (true expected values), ``share``
        (``true_profit`` / the oracle's) and its interval ``share_low``, ``share_high``.
    draws : dict of str to numpy.ndarray
        Bootstrap draws of each plan's share (customers resampled, plans held fixed).
    budget : float
        The budget every plan was given.
    plans : dict of str to Allocation
        The plans compared.
    log : pandas.DataFrame or None
        The randomised test the uplift model learnt from (``arm``, ``converted``, indexed
        by ``customer_id``), when :func:`evaluate_on_simulator` ran one.
    notes : list of str
        What a reader should know first, e.g. that the uplift plan did worse than random
        targeting because its test was too small (each is also a ``MarketloopWarning``).
    """

    table: pd.DataFrame
    draws: dict[str, np.ndarray]
    budget: float
    plans: dict[str, Allocation] = field(default_factory=dict)
    log: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    def difference(self, a: str, b: str, *, confidence: float = 0.95
                   ) -> tuple[float, float, float]:
        """Share of plan ``a`` minus share of plan ``b``, with a paired bootstrap interval."""
        for name in (a, b):
            if name not in self.draws:
                raise ConfigError(describe("PlanComparison.difference", f"one of "
                                           f"{list(self.draws)}", repr(name)))
        d = self.draws[a] - self.draws[b]
        tail = (1.0 - confidence) / 2.0
        est = float(self.table.loc[a, "share"] - self.table.loc[b, "share"])
        return est, float(np.quantile(d, tail)), float(np.quantile(d, 1.0 - tail))


def true_value(plan: Allocation | pd.DataFrame, truth: Truth, offers: OfferBook
               ) -> pd.DataFrame:
    """True expected incremental profit and true expected cost of what a plan sends.

    Parameters
    ----------
    plan : Allocation or pandas.DataFrame
        A plan (its ``offer`` column, indexed by ``customer_id``; ``<NA>`` for none) whose
        offers are actions of ``offers`` (see :func:`simulator_offers`).
    truth : Truth
        The simulated shop's truth.
    offers : OfferBook
        The offers, with the simulator's cost model.

    Returns
    -------
    pandas.DataFrame
        Indexed like the plan: ``offer``, ``true_profit``, ``true_cost`` (0 for none).
    """
    frame = plan.plan if isinstance(plan, Allocation) else plan
    chosen = frame["offer"].astype("string")
    unknown = sorted(set(chosen.dropna()) - set(offers.names))
    if unknown:
        raise SchemaError(describe("plan offers", f"offers among {offers.names}", str(unknown)))
    values = offer_values(true_scores(truth, offers, frame.index), offers)
    col = pd.Index(offers.names).get_indexer(chosen.fillna("").to_numpy(dtype=object))
    rows = np.arange(len(frame))
    sent = col >= 0
    pick = np.maximum(col, 0)
    return pd.DataFrame({
        "offer": chosen,
        "true_profit": np.where(sent, values.profit.to_numpy()[rows, pick], 0.0),
        "true_cost": np.where(sent, values.cost.to_numpy()[rows, pick], 0.0),
    }, index=frame.index)


def compare_plans(plans: Mapping[str, Allocation], truth: Truth, offers: OfferBook, *,
                  oracle: str = "oracle", enforce_budget: bool = True,
                  n_bootstrap: int = 1_000, confidence: float = 0.95,
                  random_state: int | None = 0) -> PlanComparison:
    """Each plan's true profit as a share of ``plans[oracle]``'s, with bootstrap intervals.

    A plan keeps its budget in *expected* cost as the shop estimates it; its true cost can
    be higher. With ``enforce_budget`` (the default) every plan is held to the same true
    budget, as the execution layer's budget counters hold a live campaign: its sends are
    taken in the plan's own priority order (``rank``) until the next one's true expected
    cost would overrun the budget, and the rest are not sent (``cut`` counts them). So
    "the same budget" means the same money, not the same estimate of it.

    The interval resamples customers with replacement (the plans held fixed) and takes
    percentiles of the ratio of sums; it says how much the share depends on which customers
    the shop happens to have, not how a refit model would vary.

    Raises
    ------
    ConfigError
        If ``oracle`` is not among the plans or the plans cover different customers.
    """
    if oracle not in plans:
        raise ConfigError(describe("compare_plans oracle", f"one of {list(plans)}",
                                   repr(oracle)))
    index = plans[oracle].plan.index
    rows, values = {}, {}
    for name, alloc in plans.items():
        if not alloc.plan.index.equals(index):
            raise ConfigError(describe(f"compare_plans plan {name!r}",
                                       "the same customers, in order, as the oracle's",
                                       f"{len(alloc.plan)} rows vs {len(index)}"))
        tv = true_value(alloc, truth, offers)
        planned = int(tv["offer"].notna().sum())
        if enforce_budget:
            tv = _within_budget(tv, alloc.plan["rank"], plans[oracle].budget)
        values[name] = tv["true_profit"].to_numpy()
        sent = int(tv["offer"].notna().sum())
        rows[name] = {"customers": sent, "cut": planned - sent,
                      "planned_spend": alloc.spend, "true_spend": float(tv["true_cost"].sum()),
                      "true_profit": float(tv["true_profit"].sum())}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["share"] = table["true_profit"] / table.loc[oracle, "true_profit"]
    draws = _bootstrap(np.vstack(list(values.values())), list(plans).index(oracle),
                       n_bootstrap, random_state)
    tail = (1.0 - confidence) / 2.0
    table["share_low"] = np.quantile(draws, tail, axis=1)
    table["share_high"] = np.quantile(draws, 1.0 - tail, axis=1)
    table.index.name = "plan"
    return PlanComparison(table, dict(zip(plans, draws, strict=True)),
                          plans[oracle].budget, dict(plans))


def _within_budget(values: pd.DataFrame, rank: pd.Series, budget: float) -> pd.DataFrame:
    """``values`` with the sends past ``budget`` (true cost, in ``rank`` order) removed."""
    sent = values["offer"].notna().to_numpy()
    order = np.lexsort((np.arange(len(values)), rank.to_numpy(dtype=np.float64)))
    order = order[sent[order]]
    spent = np.cumsum(values["true_cost"].to_numpy()[order])
    cut = order[spent > budget * (1.0 + 1e-9)]
    if not len(cut):
        return values
    out = values.copy()
    out.iloc[cut, out.columns.get_loc("offer")] = pd.NA
    out.iloc[cut, out.columns.get_loc("true_profit")] = 0.0
    out.iloc[cut, out.columns.get_loc("true_cost")] = 0.0
    return out


def _bootstrap(profit: np.ndarray, oracle: int, n_bootstrap: int,
               random_state: int | None) -> np.ndarray:
    """(plans, n_bootstrap) draws of each plan's share of the oracle's sum."""
    if n_bootstrap < 10:
        raise ConfigError(describe("n_bootstrap", "at least 10 resamples", str(n_bootstrap)))
    rng = np.random.default_rng(random_state)
    n = profit.shape[1]
    sums = np.empty((profit.shape[0], n_bootstrap))
    for b in range(n_bootstrap):
        sums[:, b] = profit @ np.bincount(rng.integers(0, n, n), minlength=n)
    return sums / sums[oracle]


def oracle_plan(truth: Truth, offers: OfferBook, customers: pd.Index, *,
                budget: float) -> Allocation:
    """The allocation on the true effects: what a perfect uplift model would plan."""
    return plan_campaign(true_scores(truth, offers, customers), offers, budget=budget)


def estimated_scores(shop: Shop, log: pd.DataFrame, offers: OfferBook, customers: pd.Index,
                     *, learner: BaseEstimator | None = None, calibrate: bool = True,
                     random_state: int | None = 0) -> pd.DataFrame:
    """Scores for ``customers`` from an uplift model fit on a randomised test ``log``.

    Features are :func:`observable_features` (the shop's own tables, never the truth).
    ``learner`` (default a :class:`~marketloop.strategy.uplift.TLearner`) gives each
    offer's uplift; with ``calibrate`` the effects are recalibrated on the test by
    cross-fitting (best linear predictor per arm, see ``_uplift_calibration``), which
    shrinks noisy estimates to what the test supports. A LightGBM classifier on the control
    rows gives ``p_control``; ``order_value`` is the customer's mean paid order, shrunk
    toward the shop's mean.
    """
    from lightgbm import LGBMClassifier

    from marketloop.strategy._uplift_calibration import cross_fitted_blp
    from marketloop.strategy.allocate import scores_from_model
    from marketloop.strategy.uplift import TLearner

    profiles = observable_features(shop)
    X = profiles.loc[log.index]
    arm, y = log["arm"].to_numpy(dtype=object), log["converted"].to_numpy()
    learner = learner if learner is not None else TLearner(random_state=random_state)
    model = clone(learner).fit(X, arm, y)
    if calibrate:
        model = _Calibrated(model, cross_fitted_blp(learner, X, arm, y,
                                                    random_state=random_state))
    control = arm == "control"
    base = LGBMClassifier(n_estimators=200, learning_rate=0.05, num_leaves=15,
                          min_child_samples=50, random_state=random_state, verbose=-1,
                          n_jobs=1).fit(X[control], y[control])
    frame = profiles.loc[customers].copy()
    frame["p_control"] = base.predict_proba(frame[list(X.columns)])[:, 1]
    frame["order_value"] = observed_order_value(shop, customers).to_numpy()
    frame.index.name = "customer_id"
    return scores_from_model(model, frame, offers)


class _Calibrated:
    """An uplift model whose ``predict`` applies a :class:`Calibration`."""

    def __init__(self, model: BaseEstimator, calibration: Calibration) -> None:
        self.model = model
        self.calibration = calibration

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        effects = self.model.predict(X)
        effects = effects.set_axis([str(c) for c in effects.columns], axis=1)
        return self.calibration.apply(effects)


def rfm_plan(shop: Shop, offers: OfferBook, customers: pd.Index, *, budget: float,
             offer: str = "pct10@email", cost: pd.DataFrame | None = None) -> Allocation:
    """The traditional rule: ``offer`` to RFM segments in :data:`RFM_PRIORITY` order.

    Within a segment the biggest spenders come first; customers are added until the next
    one's expected cost (``cost``, default the true one) would overrun the budget.
    """
    cost = _cost(shop.truth, offers, customers, cost)
    _check_offer(offer, offers)
    order, reason = rfm_order(shop, customers, RFM_PRIORITY)
    return rule_plan(order, cost[offer], pd.Series(offer, index=customers), budget=budget,
                     reason=reason, customers=customers)


def random_plan(truth: Truth, offers: OfferBook, customers: pd.Index, *, budget: float,
                offer: str | None = None, cost: pd.DataFrame | None = None,
                random_state: int | None = 0) -> Allocation:
    """Random targeting: customers in random order get ``offer`` (default a random one)."""
    cost = _cost(truth, offers, customers, cost)
    rng = np.random.default_rng(random_state)
    if offer is None:
        pick = pd.Series(np.asarray(offers.names, dtype=object)[
            rng.integers(0, len(offers.names), len(customers))], index=customers)
    else:
        _check_offer(offer, offers)
        pick = pd.Series(offer, index=customers)
    each = pd.Series(cost.to_numpy()[np.arange(len(customers)),
                                     cost.columns.get_indexer(pick)], index=customers)
    order = customers[rng.permutation(len(customers))]
    return rule_plan(order, each, pick, budget=budget,
                     reason=pd.Series("random targeting", index=customers), customers=customers)


def evaluate_on_simulator(
    shop: Shop,
    *,
    budget_share: float = 0.25,
    train_share: float = 0.5,
    control_share: float = 0.2,
    channels: tuple[str, ...] = ("email",),
    offers: OfferBook | None = None,
    learner: BaseEstimator | None = None,
    calibrate: bool = True,
    ceiling: bool = False,
    rule_offer: str = "pct10@email",
    n_bootstrap: int = 1_000,
    random_state: int | None = 0,
) -> PlanComparison:
    """Uplift plan, RFM rule, random targeting and oracle at one budget, judged by the truth.

    A randomised test runs on a random ``train_share`` of the customers (``control_share``
    of them in control, the rest spread evenly over the offers); the uplift model is fit on
    it, and all four plans are made for the other customers. The budget is
    ``budget_share`` of what the oracle would spend without a budget, so it binds.

    Parameters
    ----------
    shop : Shop
        A simulated shop with its truth; with ``consents`` simulated, the features include
        them (a signal of contact tolerance).
    budget_share : float, default=0.25
        The budget as a share of the oracle's unconstrained spend.
    train_share, control_share : float, default=0.5, 0.2
        Customers in the randomised test, and the test's share in control.
    channels : tuple of str, default=("email",)
        Channels of the simulator offers (message, pct10, pct20, freeship on each); with all
        four, the oracle also picks each customer's best channel, which the shop cannot see.
    offers : OfferBook or None, default=None
        Other offers (actions of the simulator's catalogue); overrides ``channels``.
    learner : estimator or None, default=None
        Uplift learner (``fit(X, treatment, y)``, ``predict(X)``); default a TLearner.
    calibrate : bool, default=True
        Recalibrate the learner's effects on the test by cross-fitting.
    ceiling : bool, default=False
        Add ``observable_ceiling``: the plan of regressors of the true profit and cost on
        the shop's observable features (a perfect learner's plan, see ``ceiling_scores``).
    rule_offer : str, default="pct10@email"
        The offer the RFM rule and random targeting send.
    n_bootstrap : int, default=1_000
        Resamples of customers for the intervals.
    random_state : int or None, default=0
        Seed of the split, the test's draws, the models and the bootstrap.

    Returns
    -------
    PlanComparison
        Rows ``oracle``, ``uplift``, ``rfm``, ``random`` (and ``observable_ceiling``).

    Warns
    -----
    MarketloopWarning
        If the uplift plan sends nothing or earns less than random targeting: the test is
        then most likely too small for the model (a few hundred customers per arm), and
        ``notes`` says so with the test's arm sizes.

    Examples
    --------
    >>> from marketloop.simulate import Market
    >>> shop = Market(n_customers=8_000, n_days=365, random_state=0).simulate(
    ...     ("customers", "orders"))
    >>> result = evaluate_on_simulator(shop, n_bootstrap=50)
    >>> t = result.table
    >>> bool(t.loc["oracle", "share"] >= t.loc["uplift", "share"] >= t.loc["random", "share"])
    True
    """
    if not 0.0 < budget_share <= 1.0 or not 0.0 < train_share < 1.0:
        raise ConfigError(describe("evaluate_on_simulator", "budget_share in (0, 1] and "
                                   "train_share in (0, 1)", f"{budget_share} and {train_share}"))
    truth = shop.truth
    offers = offers if offers is not None else simulator_offers(truth, channels=channels)
    ids = pd.Index(truth.customers.index.astype(str), name="customer_id")
    rng = np.random.default_rng(random_state)
    in_test = rng.random(len(ids)) < train_share
    test_ids, plan_ids = ids[in_test], ids[~in_test]
    log = randomised_log(truth, offers, test_ids, control_share=control_share,
                         random_state=rng.integers(2**31))
    values = offer_values(true_scores(truth, offers, plan_ids), offers)
    unlimited = plan_campaign(true_scores(truth, offers, plan_ids), offers, budget=1e18)
    budget = budget_share * unlimited.spend
    plans = {
        "oracle": oracle_plan(truth, offers, plan_ids, budget=budget),
        "uplift": plan_campaign(estimated_scores(shop, log, offers, plan_ids, learner=learner,
                                                 calibrate=calibrate, random_state=random_state),
                                offers, budget=budget),
        "rfm": rfm_plan(shop, offers, plan_ids, budget=budget, offer=rule_offer,
                        cost=values.cost),
        "random": random_plan(truth, offers, plan_ids, budget=budget, offer=rule_offer,
                              cost=values.cost, random_state=rng.integers(2**31)),
    }
    if ceiling:
        profit, cost = ceiling_scores(shop, offers, test_ids, plan_ids, random_state=random_state)
        plans["observable_ceiling"] = allocate(profit, cost, budget=budget)
    result = compare_plans(plans, truth, offers, n_bootstrap=n_bootstrap,
                           random_state=random_state)
    notes = _uplift_notes(result.table, log)
    for note in notes:
        warnings.warn(note, MarketloopWarning, stacklevel=2)
    return replace(result, log=log, notes=notes)


def _uplift_notes(table: pd.DataFrame, log: pd.DataFrame) -> list[str]:
    """A note when the uplift plan sends nothing or earns less than random targeting."""
    arms = log["arm"].value_counts()
    size = (f"its randomised test had {int(arms.min()):,} to {int(arms.max()):,} customers "
            f"per arm ({len(arms)} arms)")
    if int(table.loc["uplift", "customers"]) == 0:
        return [f"the uplift plan sends nothing: {size}, and the model found no offer "
                "expected to pay; a larger test would tell the effects apart (see "
                "`marketloop experiment design`)"]
    uplift, random = float(table.loc["uplift", "share"]), float(table.loc["random", "share"])
    if uplift < random:
        return [f"the uplift plan earned less than random targeting ({uplift:.0%} against "
                f"{random:.0%} of the oracle's profit): {size}, most likely too few for the "
                "model to rank customers (see `marketloop experiment design`)"]
    return []


def _cost(truth: Truth, offers: OfferBook, customers: pd.Index,
          cost: pd.DataFrame | None) -> pd.DataFrame:
    """Expected cost per customer and offer: given, or the true one."""
    if cost is None:
        cost = offer_values(true_scores(truth, offers, customers), offers).cost
    return cost.loc[customers]


def _check_offer(offer: str, offers: OfferBook) -> None:
    if offer not in offers.names:
        raise ConfigError(describe("offer", f"one of {offers.names}", repr(offer)))


__all__ = [
    "RFM_PRIORITY",
    "SIM_OFFERS",
    "PlanComparison",
    "compare_plans",
    "estimated_scores",
    "evaluate_on_simulator",
    "observable_features",
    "oracle_plan",
    "random_plan",
    "randomised_log",
    "rfm_plan",
    "simulator_offers",
    "true_scores",
    "true_value",
]
