"""Campaign plans judged by the simulator's truth: uplift vs RFM rule vs random vs oracle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from marketloop.exceptions import ConfigError, MarketloopWarning
from marketloop.simulate import Market
from marketloop.strategy.allocate import Allocation
from marketloop.strategy.campaign_eval import (
    compare_plans,
    evaluate_on_simulator,
    oracle_plan,
    random_plan,
    simulator_offers,
    true_value,
)


@pytest.fixture(scope="module")
def shop():
    return Market(n_customers=8_000, n_days=365, random_state=11).simulate(
        ("customers", "orders", "consents"))


@pytest.fixture(scope="module")
def comparison(shop):
    return evaluate_on_simulator(shop, n_bootstrap=300, random_state=0)


def test_every_plan_keeps_the_true_budget_and_none_beats_the_bound(comparison) -> None:
    t = comparison.table
    assert set(t.index) == {"oracle", "uplift", "rfm", "random"}
    assert (t["true_spend"] <= comparison.budget * (1 + 1e-9)).all()
    assert (t["planned_spend"] <= comparison.budget * (1 + 1e-9)).all()
    assert t.loc["oracle", "share"] == 1.0 and t.loc["oracle", "cut"] == 0
    bound = comparison.plans["oracle"].upper_bound
    assert (t["true_profit"] <= bound + 1e-6).all()


def test_uplift_targeting_beats_the_rfm_rule_and_random(comparison) -> None:
    t = comparison.table
    diff, low, high = comparison.difference("uplift", "rfm")
    assert low > 0, t  # above RFM by more than the interval's width
    assert low <= diff <= high
    r_diff, r_low, _ = comparison.difference("uplift", "random")
    assert r_low > 0, t
    assert t.loc["uplift", "share_low"] <= t.loc["uplift", "share"] <= t.loc["uplift", "share_high"]
    assert comparison.notes == []


def test_a_test_too_small_to_teach_the_model_is_said_not_passed_off_as_a_plan() -> None:
    """3,000 customers: ~300 per arm. The calibrated model finds no offer that pays, and the
    comparison says why instead of leaving a plan of nobody to be read as a result."""
    small = Market(n_customers=3_000, n_days=365, random_state=0).simulate(
        ("customers", "orders"))
    with pytest.warns(MarketloopWarning, match=r"the uplift plan sends nothing: its "
                      r"randomised test had \d+ to \d+ customers per arm \(5 arms\)"):
        result = evaluate_on_simulator(small, n_bootstrap=50)
    assert result.table.loc["uplift", "customers"] == 0 and len(result.notes) == 1
    arms = result.log["arm"].value_counts()
    assert f"{arms.min():,} to {arms.max():,} customers per arm" in result.notes[0]


def test_true_value_sums_the_simulators_profit_of_what_is_sent(shop) -> None:
    truth = shop.truth
    offers = simulator_offers(truth, channels=("email", "sms"))
    ids = pd.Index(truth.customers.index.astype(str)[:500], name="customer_id")
    rng = np.random.default_rng(0)
    choice = np.asarray([*offers.names, None], dtype=object)[rng.integers(0, 9, len(ids))]
    plan = pd.DataFrame({"offer": pd.array(choice, dtype="string")}, index=ids)
    got = true_value(plan, truth, offers)
    te = truth.treatment_effects
    te = te[te["customer_id"].isin(ids)].set_index(["customer_id", "action"])["profit_uplift"]
    sent = plan["offer"].dropna()
    want = sum(float(te.loc[(c, a)]) for c, a in sent.items())
    assert got["true_profit"].sum() == pytest.approx(want, rel=1e-9)
    assert (got.loc[plan["offer"].isna(), ["true_profit", "true_cost"]] == 0).all().all()


def test_an_overspending_plan_is_cut_in_its_own_order(shop) -> None:
    truth = shop.truth
    offers = simulator_offers(truth, channels=("email",))
    ids = pd.Index(truth.customers.index.astype(str)[:2_000], name="customer_id")
    oracle = oracle_plan(truth, offers, ids, budget=50.0)
    spender = random_plan(truth, offers, ids, budget=500.0, offer="pct20@email")
    result = compare_plans({"oracle": oracle, "spender": spender}, truth, offers,
                           n_bootstrap=20)
    t = result.table
    assert t.loc["spender", "true_spend"] <= 50.0
    assert t.loc["spender", "cut"] > 0
    tv = true_value(spender, truth, offers)
    kept = spender.plan.sort_values("rank").query("rank > 0").index[: t.loc["spender",
                                                                          "customers"]]
    assert tv.loc[kept, "true_profit"].sum() == pytest.approx(t.loc["spender", "true_profit"])
    loose = compare_plans({"oracle": oracle, "spender": spender}, truth, offers,
                          enforce_budget=False, n_bootstrap=20).table
    assert loose.loc["spender", "true_spend"] > 50.0 and loose.loc["spender", "cut"] == 0


def test_refusals(shop) -> None:
    with pytest.raises(ConfigError, match="budget_share in"):
        evaluate_on_simulator(shop, budget_share=0.0)
    truth = shop.truth
    offers = simulator_offers(truth, channels=("email",))
    ids = pd.Index(truth.customers.index.astype(str)[:100], name="customer_id")
    plan: Allocation = oracle_plan(truth, offers, ids, budget=5.0)
    with pytest.raises(ConfigError, match="compare_plans oracle"):
        compare_plans({"a": plan}, truth, offers)
