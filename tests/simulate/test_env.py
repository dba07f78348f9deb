"""The online environment draws outcomes from the true response and keeps state."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from marketloop.simulate import Market, MarketEnv, random_campaign, true_response

Z = 4.0


def _decisions(ids: pd.Index, rng: np.random.Generator) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame({
        "customer_id": ids,
        "offer": rng.choice(["none", "pct10", "pct20", "freeship"], n),
        "channel": rng.choice(["email", "sms", "push", "app"], n),
        "send_hour": rng.integers(0, 24, n),
        "format": rng.choice(["plain", "visual", "personal"], n),
    })


def test_step_outcomes_match_true_probabilities(shop) -> None:
    env = MarketEnv(shop, random_state=1)
    rng = np.random.default_rng(2)
    d = _decisions(env.customer_ids, rng)
    p = env.expected(d)["p_convert"].to_numpy()
    out = env.step(d)
    sd = np.sqrt((p * (1 - p)).sum())
    assert abs(out["converted"].sum() - p.sum()) < Z * sd
    assert env.day == 1
    assert (out.loc[~out["converted"], "revenue"] == 0).all()
    assert (out.loc[out["converted"], "revenue"] > 0).all()


def test_repeated_contacts_raise_complaints(shop) -> None:
    env = MarketEnv(shop, random_state=3)
    rng = np.random.default_rng(4)
    d = _decisions(env.customer_ids, rng)
    first = env.expected(d)["p_complaint"].mean()
    for _ in range(6):
        env.step(d)
    later = env.expected(d)["p_complaint"].mean()
    assert later > 2 * first
    assert env.unsubscribed.any()


def test_random_campaign_logs_treatment_and_truth(shop) -> None:
    c = random_campaign(shop, 0.5, random_state=0)
    assert abs(c.treated.mean() - 0.5) < Z * 0.5 / np.sqrt(len(c.treated))
    assert set(c.features.columns) >= {"frequency", "recency_days", "monetary", "region"}
    assert c.true_uplift.index.equals(c.features.index)


def test_historical_bias_under_serves_one_region() -> None:
    m = Market(n_customers=3_000, n_days=120, random_state=2, scenarios=("historical_bias",))
    c = m.random_campaign(0.5, random_state=0)
    east = c.features["region"] == "east"
    assert c.treated[east].mean() < 0.5 * c.treated[~east].mean()


@pytest.mark.parametrize(("column", "value", "words"), [
    ("offer", "pct50", "offer: expected one of ['none', 'pct10', 'pct20', 'freeship', "
                       "'no_contact']; found 'pct50' on row 1"),
    ("offer", None, "offer: expected one of"),
    ("channel", "fax", "channel: expected one of ['email', 'sms', 'push', 'app', 'no_contact']"),
    ("send_hour", 99, "send_hour: expected an hour from 0 to 23; found 99 on row 1"),
    ("send_hour", float("nan"), "send_hour: expected an hour from 0 to 23; found nan"),
    ("format", "gif", "format: expected one of ['plain', 'visual', 'personal']; found 'gif'"),
])
def test_a_decision_outside_the_catalogue_is_refused_not_valued(
        shop, column: str, value: object, words: str) -> None:
    env = MarketEnv(shop, random_state=0)
    decisions = pd.DataFrame({"customer_id": env.customer_ids[:3], "offer": "pct10",
                              "channel": "email", "send_hour": 10, "format": "plain"})
    decisions[column] = value
    day = env.day
    for call in (env.step, env.expected):
        with pytest.raises(ValueError, match=re.escape(words)):
            call(decisions)
    with pytest.raises(ValueError, match=re.escape(words)):
        true_response(env._truth, decisions["customer_id"], decisions.drop(columns="customer_id"))
    assert env.day == day  # nothing happened


def test_a_day_with_nobody_to_contact_steps_the_market(shop) -> None:
    env = MarketEnv(shop, random_state=0)
    empty = pd.DataFrame({"customer_id": pd.Series([], dtype=object), "offer": [],
                          "channel": [], "send_hour": [], "format": []})
    day, alive = env.day, env.alive.sum()
    assert env.step(empty).empty and env.day == day + 1
    assert env.alive.sum() <= alive  # the customers still buy and drop out on their own
    with pytest.raises(ValueError, match="expected a DataFrame with columns customer_id"):
        env.step({"customer_id": ["c1"]})
    no_contact = pd.DataFrame({"customer_id": env.customer_ids[:2], "offer": "no_contact",
                               "channel": "no_contact", "send_hour": None, "format": None})
    assert not env.step(no_contact)["delivered"].any()  # no hour or format needed


def test_rows_without_a_contact_need_no_other_field(shop) -> None:
    """offer no_contact with a blank channel, or channel no_contact with a blank offer."""
    env = MarketEnv(shop, random_state=0)
    ids = env.customer_ids[:2]
    for offer, channel in (("no_contact", None), (None, "no_contact")):
        rows = pd.DataFrame({"customer_id": ids, "offer": offer, "channel": channel,
                             "send_hour": None, "format": None})
        assert not env.expected(rows)["p_complaint"].any()


def test_unknown_ids_are_named_and_caught_as_value_or_key_errors() -> None:
    from marketloop.simulate import true_affinity

    market = Market(n_customers=300, n_days=60, random_state=0)
    shop = market.simulate(("customers", "products"))
    env = MarketEnv(shop, random_state=0)
    known = env.customer_ids[0]
    decisions = pd.DataFrame({"customer_id": ["nobody", known], "offer": "pct10",
                              "channel": "email", "send_hour": 10, "format": "plain"})
    with pytest.raises(ValueError, match=r"unknown ids, e\.g\. \['nobody'\]"):
        env.step(decisions)
    with pytest.raises(KeyError) as caught:  # a failed lookup, caught as one
        true_response(shop.truth, ["nobody"], decisions.iloc[[0]])
    assert str(caught.value).startswith("true_response customer_ids: expected")
    product = shop.products["product_id"].iloc[0]
    with pytest.raises(ValueError, match="'no-such-item'"):
        true_affinity(shop.truth, [known], ["no-such-item"])
    assert len(true_affinity(shop.truth, [known], [product])) == 1
