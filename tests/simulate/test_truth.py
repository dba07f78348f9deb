"""The simulator's data follow its own truth, within sampling error."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from marketloop.simulate import Market, true_affinity, true_response
from marketloop.simulate._purchases import expected_purchases

Z = 4.0  # two-sided z bound: a correct simulator fails one such check with prob ~6e-5


def test_same_seed_same_frames_other_seed_differs() -> None:
    a = Market(n_customers=1_500, n_days=120, random_state=3).simulate()
    b = Market(n_customers=1_500, n_days=120, random_state=3).simulate()
    c = Market(n_customers=1_500, n_days=120, random_state=4).simulate()
    for name, frame in a.tables().items():
        pd.testing.assert_frame_equal(frame, b.tables()[name])
    assert not a.orders["amount"].equals(c.orders["amount"])


def test_lambda_is_gamma_with_the_stated_parameters(big) -> None:
    params, lam = big.truth.params, big.truth.customers["lambda"]
    shape, _, scale = stats.gamma.fit(lam, floc=0)
    # MLE sd of the shape at r~0.9, n=50k is ~0.005; 5 % leaves a wide margin
    assert shape == pytest.approx(params["r"], rel=0.05)
    assert 1 / scale == pytest.approx(params["alpha"], rel=0.05)


def test_repeat_orders_match_the_bgnbd_expectation(big) -> None:
    tc = big.truth.customers
    t_weeks = (365 - tc["acquired_day"]) / 7
    expect = expected_purchases(tc["lambda"].to_numpy(), tc["p"].to_numpy(),
                                np.ones(len(tc), bool), weeks=t_weeks.to_numpy())
    x = (tc["n_orders"] - 1).to_numpy()
    diff = x - expect
    assert abs(diff.mean()) < Z * diff.std() / np.sqrt(len(x))
    # the orders table carries exactly the truth's counts
    counts = big.orders.groupby("customer_id").size().reindex(tc.index)
    assert (counts.to_numpy() == tc["n_orders"].to_numpy()).all()


def test_dropout_per_repeat_purchase_is_p(big) -> None:
    tc = big.truth.customers
    x = (tc["n_orders"] - 1).to_numpy()
    p = tc["p"].to_numpy()
    dead = (~tc["alive_at_end"]).sum()
    # each repeat purchase ends the customer with prob p_i, independently
    assert abs(dead - (p * x).sum()) < Z * np.sqrt((p * (1 - p) * x).sum())
    assert not (tc["alive_at_end"] == False).to_numpy()[x == 0].any()  # noqa: E712


def test_order_values_follow_gamma_gamma(big) -> None:
    tc = big.truth.customers
    o = big.orders
    nu = tc["nu"].reindex(o["customer_id"]).to_numpy()
    p = big.truth.params["gg_p"]
    resid = o["amount"].to_numpy() - p / nu
    # Var(z | nu) = p / nu^2; cents rounding adds < 0.005 per order
    assert abs(resid.sum()) < Z * np.sqrt((p / nu**2).sum()) + 0.005 * len(o)


def test_expected_purchases_formula_by_monte_carlo() -> None:
    rng = np.random.default_rng(0)
    lam, p, t, n = 0.3, 0.2, 52.0, 200_000
    draws = np.minimum(rng.poisson(lam * t, n), rng.geometric(p, n))
    exact = expected_purchases(np.array([lam]), np.array([p]), np.array([True]))[0]
    assert abs(draws.mean() - exact) < Z * draws.std() / np.sqrt(n)


def test_dwell_rises_with_affinity(shop) -> None:
    ev = shop.events
    views = ev[(ev["type"] == "product_view") & ev["customer_id"].notna()]
    aff = true_affinity(shop.truth, views["customer_id"], views["product_id"]).to_numpy()
    dwell = np.log(views["dwell_ms"].to_numpy(dtype=float))
    lo, hi = np.quantile(aff, [0.25, 0.75])
    assert dwell[aff >= hi].mean() > dwell[aff <= lo].mean() + 0.1
    assert stats.spearmanr(aff, dwell).statistic > 0.1


def test_review_sentiment_follows_satisfaction(shop) -> None:
    rev = shop.texts[shop.texts["kind"] == "review"]
    sat = shop.truth.customers["satisfaction"].reindex(rev["customer_id"]).to_numpy()
    assert stats.spearmanr(sat, rev["rating"].to_numpy(dtype=float)).statistic > 0.3
    label = shop.truth.texts.set_index("text_id")["sentiment"].reindex(rev["text_id"])
    assert sat[label.to_numpy() == "positive"].mean() > sat[label.to_numpy() == "negative"].mean()


def test_all_four_uplift_groups_and_sleeping_dogs_lose(shop) -> None:
    tc = shop.truth.customers
    share = tc["uplift_group"].value_counts(normalize=True)
    for group in ("persuadable", "sure_thing", "lost_cause", "sleeping_dog"):
        assert share.get(group, 0) > 0.03, share.to_dict()
    dogs = tc["uplift_group"] == "sleeping_dog"
    assert (tc.loc[dogs, "reference_uplift"] < 0).all()
    eff = shop.truth.treatment_effects
    assert len(eff) == len(tc) * len(shop.truth.actions)
    dog_ids = tc.index[dogs]
    email = eff[(eff["action"] == "none@email") & eff["customer_id"].isin(dog_ids)]
    assert (email["uplift"] < 0).mean() > 0.9


def test_complaints_rise_with_contact_frequency(shop) -> None:
    ids = shop.customers["customer_id"]
    act = pd.DataFrame({"offer": ["none"], "channel": ["email"], "send_hour": [10],
                        "format": ["plain"]})
    calm = true_response(shop.truth, ids, act, recent_contacts=0)
    busy = true_response(shop.truth, ids, act, recent_contacts=6)
    assert (busy["p_complaint"] > calm["p_complaint"]).all()
    assert (busy["p_unsubscribe"] > calm["p_unsubscribe"]).all()
    assert busy["p_complaint"].mean() > 3 * calm["p_complaint"].mean()


@pytest.mark.parametrize(("change", "words"), [
    ({"n_customers": 2.7}, "Market n_customers: expected a whole number >= 1; found 2.7"),
    ({"n_customers": None}, "Market n_customers: expected a whole number >= 1; found None"),
    ({"n_days": 1.5}, "Market n_days: expected a whole number >= 1; found 1.5"),
    ({"n_products": 0}, "Market n_products: expected a whole number >= 1; found 0"),
    ({"n_products": -3}, "Market n_products: expected a whole number >= 1; found -3"),
    ({"history_share": 1.5}, "Market history_share: expected a share from 0 to 1; found 1.5"),
    ({"history_share": float("nan")}, "Market history_share: expected a share from 0 to 1"),
    ({"history_days": -10}, "Market history_days: expected a whole number >= 0; found -10"),
    ({"random_state": -1}, "Market random_state: expected a whole number >= 0; found -1"),
    ({"start": "not-a-date"}, "Market start: expected a date such as 2025-01-01"),
    ({"scenarios": "small_shop"}, "found the text 'small_shop'. Pass ['small_shop']"),
])
def test_a_market_parameter_that_makes_no_sense_is_named(change: dict, words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        Market(**{"n_customers": 50, "n_days": 30, **change}).simulate(("customers",))


def test_an_export_of_tables_that_do_not_exist_is_named(tmp_path) -> None:
    from marketloop.simulate import write_export

    shop = Market(n_customers=50, n_days=30).simulate(("customers",))
    with pytest.raises(ValueError, match=r"write_export tables: expected a list of any of"):
        write_export(shop, tmp_path, tables=("bogus",))
    with pytest.raises(ValueError, match=r"write_export dirty_rate: expected a number in"):
        write_export(shop, tmp_path, dirty_rate="0.1")


def test_whole_numbers_written_as_floats_are_sizes() -> None:
    market = Market(n_customers=1e3, n_days=np.float64(30), n_products=50.0)
    assert market.effective_params()["n_customers"] == 1_000
