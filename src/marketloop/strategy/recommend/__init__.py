"""Recommenders: best-sellers, co-purchases, matrix factorisation and LightGCN, one interface.

Every recommender is a scikit-learn style estimator: ``fit(interactions)`` on a frame of
``customer_id``, ``product_id``, ``ts`` (see :func:`warehouse_interactions`,
:func:`read_interactions`), then ``recommend(customer_ids, k=...)`` and
``similar_items(product_ids, k=...)``, which answer with frames and never raise for an
unknown customer or product: those get the training data's best-sellers, and the ``reason``
column says so (``cold_start``; ``not_consented`` for customers outside ``consented=``).
Filters: products already bought (``exclude_bought``), out of stock (``exclude_items``).
Knobs, in [0, 1], on every model: ``tail_weight`` (long-tail re-ranking) and ``diversity``
(maximal marginal relevance on co-purchase similarity).

Models: :class:`PopularityRecommender`, :class:`SeasonalPopularityRecommender`,
:class:`ItemItemRecommender`, :class:`ALSRecommender` and :class:`BPRRecommender` (through
``implicit``), :class:`LightGCNRecommender` (PyTorch, CPU), and :class:`BlendRecommender`, a
reciprocal-rank fusion of any of them. Evaluation and the choice of a
model per shop live in :mod:`marketloop.strategy.recommend.evaluate`.
"""

from __future__ import annotations

from marketloop.strategy.recommend._base import Recommender
from marketloop.strategy.recommend._blend import BlendRecommender
from marketloop.strategy.recommend._data import (
    INTERACTION_COLUMNS,
    check_interactions,
    consented_customers,
    load_interactions,
    online_retail_interactions,
    read_interactions,
    shop_interactions,
    warehouse_interactions,
)
from marketloop.strategy.recommend._itemitem import ItemItemRecommender
from marketloop.strategy.recommend._lightgcn import LightGCNRecommender
from marketloop.strategy.recommend._mf import ALSRecommender, BPRRecommender
from marketloop.strategy.recommend._popularity import (
    PopularityRecommender,
    SeasonalPopularityRecommender,
)

__all__ = [
    "INTERACTION_COLUMNS",
    "ALSRecommender",
    "BPRRecommender",
    "BlendRecommender",
    "ItemItemRecommender",
    "LightGCNRecommender",
    "PopularityRecommender",
    "Recommender",
    "SeasonalPopularityRecommender",
    "check_interactions",
    "consented_customers",
    "load_interactions",
    "online_retail_interactions",
    "read_interactions",
    "shop_interactions",
    "warehouse_interactions",
]
