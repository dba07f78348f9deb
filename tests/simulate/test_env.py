"""The online environment draws outcomes from the true response and keeps state."""

from __future__ import annotations

import numpy as np
import pandas as pd

from marketloop.simulate import Market, MarketEnv, random_campaign

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
