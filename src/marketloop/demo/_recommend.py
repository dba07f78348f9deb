"""The demo's recommender stage: every model on the warehouse, and a win-back against the truth.

Recommenders are trained on the purchases the demo ingested before the last 90 days and
scored on those 90 days (``marketloop.strategy.recommend.evaluate``), by customer activity.
Win-back: the customers BG/NBD calls dormant at the period end get a bundle from their
categories and the season, or by the category-bestseller rule, or nothing; the simulator's
truth says how many would order a bundle product within 14 days (``_winback_truth``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd
from ibis.backends import BaseBackend

from marketloop.demo._winback_truth import WINDOW_DAYS, bundle_hit, p_order, reactivation_table
from marketloop.simulate import Shop
from marketloop.strategy.recommend import load_interactions
from marketloop.strategy.recommend.evaluate import (
    DEFAULT_MODELS,
    default_models,
    evaluate,
    time_split,
)
from marketloop.strategy.winback import (
    bestseller_bundles,
    category_bundles,
    choose_actions,
    dormant_customers,
)
from marketloop.value import Report

#: Days at the end of the period held out to score the recommenders.
TEST_DAYS = 90


@dataclass
class RecommendFigures:
    """What the report shows of the recommenders and the win-back campaign."""

    table: pd.DataFrame  # (model, activity) -> customers and metrics at k
    k: int
    cut: pd.Timestamp
    choice: str  # the validated choice, in words
    fit_seconds: dict[str, float]
    reactivation: pd.DataFrame  # plan -> rate, interval, paired difference from the rule
    n_dormant: int
    dormant_alive: float  # share of the dormant customers the truth says are alive


def recommend_stage(shop: Shop, con: BaseBackend, *, as_of: pd.Timestamp,
                    random_state: int = 0, k: int = 20) -> RecommendFigures:
    """Evaluate the recommenders on the warehouse and run the win-back against the truth."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    interactions = load_interactions(con, as_of=as_of)
    split = time_split(interactions, cut=as_of - pd.Timedelta(days=TEST_DAYS))
    models = default_models([*DEFAULT_MODELS, "bpr+popularity"], random_state=random_state)
    # a demo budget: LightGCN gets 32 dimensions and at most 8 epochs (docs/recommend.md)
    models["lightgcn"].set_params(embedding_dim=32, max_epochs=8)
    models["bpr"].set_params(iterations=30)
    models["bpr+popularity"].models[0].set_params(iterations=30)
    result = evaluate(models, split, k=k, random_state=random_state)

    orders = con.table("orders")
    paid = orders.filter((orders.status == "paid") & orders.customer_id.notnull()).select(
        "customer_id", "ordered_at").to_pandas()
    products = con.table("products").select("product_id", "category").to_pandas()
    dormant = dormant_customers(paid, as_of=as_of)
    ids = [c for c in dormant.index if c in shop.truth.customers.index]
    day = (as_of - pd.Timestamp(shop.truth.params["start"])).days + WINDOW_DAYS / 2
    action = choose_actions(pd.DataFrame(index=ids))
    contacted = p_order(shop.truth, action)
    silent = p_order(shop.truth, action.assign(offer="no_contact", channel="no_contact"))
    model_hit = bundle_hit(shop.truth, category_bundles(interactions, products, ids,
                                                        as_of=as_of), day=day)
    rule_hit = bundle_hit(shop.truth, bestseller_bundles(interactions, products, ids,
                                                         as_of=as_of), day=day)
    reactivation = reactivation_table(
        {"history and season bundle": contacted * model_hit,
         "category best-sellers (rule)": contacted * rule_hit,
         "nothing": silent * model_hit},
        reference="category best-sellers (rule)", n_boot=1000, random_state=random_state)
    alive = float(shop.truth.customers.loc[ids, "alive_at_end"].mean()) if ids else 0.0
    return RecommendFigures(result.table, k, split.cut, result.choice.reason,
                            result.fit_seconds, reactivation, len(ids), alive)


def add_recommend_section(doc: Report, fig: RecommendFigures, *, number: int) -> None:
    """Section ``number`` of the report: the metric table and the win-back reactivation."""
    k = fig.k
    doc.add_heading(f"{number}. Recommendations and win-back")
    doc.add_text(
        f"Popularity, item-item co-purchase, ALS and BPR (implicit), LightGCN (PyTorch) and "
        f"a rank fusion of BPR with popularity "
        f"were trained on the warehouse's paid purchases before {fig.cut:%Y-%m-%d} and asked "
        f"for {k} products per customer, products already bought left out; the table scores "
        f"them on what customers bought in the last {TEST_DAYS} days, overall and by how "
        "many purchases the customer had made (1, 2-4, 5+), since the long tail of "
        "customers is the point. The long-tail share counts recommended slots outside the "
        f"top 20% of products by sales. Model choice: {fig.choice}"
    )
    seconds = pd.Series(fig.fit_seconds, name="fit_seconds")
    table = fig.table.join(seconds, on="model").round(4).reset_index()
    doc.add_table(table, caption=f"Recommenders at k={k}, by customer activity")
    r = fig.reactivation
    model, rule = r.iloc[0], r.loc["category best-sellers (rule)"]
    doc.add_text(
        f"Win-back: {fig.n_dormant:,} customers were dormant at the end of the period by "
        "BG/NBD (probability alive below 0.3, or one order and 180 days idle); the "
        f"simulator says {fig.dormant_alive:.0%} of them are still alive. Each was sent, in "
        "turn, a bundle of 5 products from the categories of their history weighted by the "
        "season, the 5 best-sellers of their favourite category (the rule), or nothing, with "
        "10% off by email. Reactivation is the true chance of an order within 14 days that "
        f"holds a bundle product: {model['rate']:.3%} with the model's bundles against "
        f"{rule['rate']:.3%} with the rule (difference {model.iloc[4]:+.3%}, 95% interval "
        f"[{model['diff_low']:+.3%}, {model['diff_high']:+.3%}], paired by customer)."
    )
    doc.add_table(r.reset_index().round(5), caption="Reactivation of dormant customers "
                  "(95% bootstrap intervals over customers)")

