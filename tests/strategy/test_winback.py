"""Win-back against the simulator's truth: who is dormant, bundles beside the rule, actions, CLI.

Reactivation is measured as docs/recommend.md defines it (``marketloop.demo._winback_truth``):
the true chance of an order within 14 days that holds a product of the bundle.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from tests._cli import marketloop  # noqa: E402

from marketloop.demo._winback_truth import (  # noqa: E402
    bundle_hit,
    p_order,
    reactivation_table,
)
from marketloop.exceptions import ConfigError, SchemaError  # noqa: E402
from marketloop.simulate import Market, true_response, write_export  # noqa: E402
from marketloop.simulate._params import SEASON_WEIGHT  # noqa: E402
from marketloop.strategy.recommend import shop_interactions  # noqa: E402
from marketloop.strategy.uplift import TLearner  # noqa: E402
from marketloop.strategy.winback import (  # noqa: E402
    bestseller_bundles,
    category_bundles,
    choose_actions,
    dormant_customers,
    plan_winback,
    seasonal_index,
    winback_features,
)

ARMS = np.array(["no_contact", "pct10@email", "pct20@sms", "none@app", "freeship@email"])


@pytest.fixture(scope="module")
def world():
    market = Market(n_customers=5_000, n_days=365, random_state=11)
    shop = market.simulate(("customers", "products", "orders", "order_lines"))
    as_of = pd.Timestamp(market.start) + pd.Timedelta(days=market.n_days)
    paid = shop.orders[shop.orders.status == "paid"]
    return market, shop, as_of, paid, shop_interactions(shop)


@pytest.fixture(scope="module")
def dormant(world):
    _, _, as_of, paid, _ = world
    return dormant_customers(paid, as_of=as_of)


def test_dormant_customers_are_mostly_gone_in_truth(world, dormant):
    _, shop, _, _, _ = world
    alive = shop.truth.customers["alive_at_end"]
    ours = alive.loc[dormant.index].mean()
    others = alive.drop(dormant.index).mean()
    # measured: 29% of the 1,890 dormant customers are alive, 77% of the others
    assert ours < 0.5 * others, (ours, others)
    assert set(dormant["why"]) == {"p_alive", "idle_one_time"}
    assert (dormant.loc[dormant.why == "p_alive", "p_alive"] < 0.3).all()


def test_seasonal_index_follows_the_true_season(world):
    market, shop, as_of, _, interactions = world
    cats = shop.products.set_index("product_id")["category"]
    index = seasonal_index(interactions, cats, as_of=as_of)
    tp = shop.truth.products.drop_duplicates("category_name").set_index("category_name")
    day = market.n_days + 7
    true = SEASON_WEIGHT * tp["season_amplitude"] * np.sin(2 * np.pi * day / 365
                                                          + tp["season_phase"])
    corr = np.corrcoef(np.log(index.reindex(true.index)), true)[0, 1]
    assert corr > 0.8, corr  # measured 0.99 over the 12 categories


def test_model_bundles_reactivate_more_than_the_bestseller_rule(world, dormant):
    market, shop, as_of, _, interactions = world
    ids = list(dormant.index)
    day = market.n_days + 7  # the middle of the 14-day window after as_of
    model = category_bundles(interactions, shop.products, ids, as_of=as_of)
    rule = bestseller_bundles(interactions, shop.products, ids, as_of=as_of)
    assert (model.groupby(level=0).size() == 5).all() and (rule.groupby(level=0).size() == 5).all()
    action = choose_actions(pd.DataFrame(index=ids))
    contacted = p_order(shop.truth, action)
    silent = p_order(shop.truth, action.assign(offer="no_contact", channel="no_contact"))
    hit_model = bundle_hit(shop.truth, model, day=day)
    hit_rule = bundle_hit(shop.truth, rule, day=day)
    table = reactivation_table({"model": contacted * hit_model, "rule": contacted * hit_rule,
                                "nothing": silent * hit_model}, reference="rule")
    # measured: model 0.0088 [0.0078, 0.0098], rule 0.0048, nothing 0.0069; the paired
    # interval of model - rule is [+0.0035, +0.0046]
    assert table.loc["model", "diff_low"] > 0, table
    assert table.loc["model", "rate"] > table.loc["nothing", "rate"]
    assert hit_model.mean() > 1.3 * hit_rule.mean()  # 0.39 against 0.23


def _randomised_campaign(shop, features, rng):
    ids = shop.truth.customers.index
    arm = ARMS[rng.integers(len(ARMS), size=len(ids))]
    offer = [a.split("@")[0] if "@" in a else a for a in arm]
    channel = [a.split("@")[1] if "@" in a else a for a in arm]
    p = true_response(shop.truth, list(ids), pd.DataFrame(
        {"offer": offer, "channel": channel, "send_hour": 10, "format": "plain"}))["p_convert"]
    return features.loc[ids], arm, (rng.random(len(ids)) < p.to_numpy()).astype(int)


def test_uplift_chosen_actions_beat_the_default_action(world, dormant):
    _, shop, as_of, paid, _ = world
    features = winback_features(paid, shop.customers, as_of=as_of)
    X, arm, y = _randomised_campaign(shop, features, np.random.default_rng(0))
    model = TLearner(control="no_contact", random_state=0).fit(X, arm, y)
    ids = list(dormant.index)
    chosen = choose_actions(features.loc[ids], uplift_model=model)
    assert set(chosen["reason"]) <= {"highest predicted uplift", "no contact: every action is "
                                     "predicted to lower the chance of an order"}
    default = choose_actions(features.loc[ids])
    table = reactivation_table({"uplift": p_order(shop.truth, chosen),
                                "default": p_order(shop.truth, default)}, reference="default")
    # measured: 0.0248 against 0.0224 (any order within 14 days), paired [+0.0012, +0.0037]
    assert table.loc["uplift", "diff_low"] > 0, table


def test_choose_actions_refuses_treatments_it_cannot_read(world):
    _, shop, as_of, paid, _ = world
    features = winback_features(paid, shop.customers, as_of=as_of)
    rng = np.random.default_rng(1)
    X = features.iloc[:2000]
    arm = np.where(rng.random(2000) < 0.5, "no_contact", "coupon")
    model = TLearner(control="no_contact", random_state=0).fit(X, arm, rng.random(2000) < 0.1)
    with pytest.raises(SchemaError, match="labels offer@channel, e.g. pct10@email; found coupon"):
        choose_actions(X, uplift_model=model)
    with pytest.raises(ConfigError, match="threshold: expected a probability"):
        dormant_customers(paid, as_of=as_of, threshold=2.0)


def test_plan_winback_has_one_row_per_dormant_customer(world, dormant):
    _, shop, as_of, paid, interactions = world
    plan = plan_winback(paid, interactions, shop.products, shop.customers, as_of=as_of,
                        exclude_items=["p00001"])
    assert len(plan) == len(dormant) and plan.customer_id.is_unique
    assert plan["bundle"].str.split().str.len().eq(5).all()
    assert not plan["bundle"].str.contains(r"\bp00001\b").any()
    assert {"p_alive", "why", "categories", "offer", "channel", "reason"} <= set(plan.columns)


def test_cli_plan_winback_writes_the_plan(tmp_path):
    tables = ("customers", "products", "orders", "order_lines")
    shop = Market(n_customers=800, n_days=365, random_state=4).simulate(tables)
    write_export(shop, tmp_path / "export", tables=tables, truth=False)
    url = f"duckdb:///{tmp_path}/shop.duckdb"
    assert marketloop("ingest", str(tmp_path / "export"), "--warehouse", url).returncode == 0
    out = tmp_path / "plan.csv"
    done = marketloop("plan", "winback", "--as-of", "2026-01-01", "--out", str(out),
                      "--warehouse", url, "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    plan = pd.read_csv(out, dtype=str)
    assert summary["dormant"] == len(plan) > 0
    assert plan["bundle"].str.split().str.len().eq(5).all()
    assert "WARNING" not in done.stderr
    huge = marketloop("plan", "winback", "--as-of", "2026-01-01", "--out", str(out),
                      "--warehouse", url, "--size", "100000")  # more than the catalogue
    assert huge.returncode == 0, huge.stderr
    sold = pd.read_csv(out, dtype=str)["bundle"].str.split().str.len()
    assert sold.nunique() == 1 and 5 < sold.iloc[0] < 100_000
    assert (f"WARNING: bundles of {sold.iloc[0]} products, not the 100000 asked for: only "
            f"{sold.iloc[0]} products sold before 2026-01-01") in huge.stderr, huge.stderr
    bad = marketloop("plan", "winback", "--as-of", "someday", "--out", str(out),
                     "--warehouse", url)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --as-of: expected a date")
    empty = marketloop("plan", "winback", "--as-of", "2026-01-01", "--out", str(out),
                       "--warehouse", f"duckdb:///{tmp_path}/empty.duckdb")
    assert empty.returncode == 2 and "marketloop ingest" in empty.stderr, empty.stderr
    assert not (tmp_path / "empty.duckdb").exists()  # a read command creates no warehouse
    late = marketloop("plan", "winback", "--as-of", "2031-01-01", "--out", str(out),
                      "--warehouse", url)
    assert late.returncode == 2 and late.stderr.startswith(
        "error: --as-of: expected a day after the first paid order's"), late.stderr
    for days in ("-5", "nan", "inf"):
        odd = marketloop("plan", "winback", "--as-of", "2026-01-01", "--out", str(out),
                         "--warehouse", url, "--idle-days", days)
        assert odd.returncode == 2, (days, odd.stdout)
        assert odd.stderr.startswith("error: --idle-days: expected a number of days"), odd.stderr
