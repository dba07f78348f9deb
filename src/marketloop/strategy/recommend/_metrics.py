"""Ranking and catalogue metrics of recommendation lists.

Per list (one customer): recall@k, NDCG@k and AP@k with binary relevance. Per set of lists:
catalogue coverage, the share of recommended slots that hold long-tail items, and novelty.

Definitions (``R`` the relevant set, ``rec`` the list, ``hit_i`` 1 when ``rec[i]`` is in
``R``, positions from 1):

- recall@k = ``sum_{i<=k} hit_i / |R|``
- NDCG@k = ``DCG / IDCG`` with ``DCG = sum_{i<=k} hit_i / log2(i + 1)`` and IDCG the DCG of
  ``min(k, |R|)`` hits at the top (Jarvelin & Kekalainen 2002)
- AP@k = ``sum_{i<=k} hit_i precision@i / min(k, |R|)``; MAP@k is its mean over customers
- coverage = distinct recommended products / products in the catalogue
- long-tail share = recommended slots holding a product outside the head, the top 20% of
  products by training sales (interactions), / all recommended slots
- novelty = mean over slots of ``-log2(share of training customers who bought the item)``
  (Zhou et al. 2010)
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from marketloop.exceptions import ConfigError, describe

if TYPE_CHECKING:
    from marketloop.strategy.recommend._base import Recommender

#: Share of products, by training sales, that make up the head; the rest is the long tail.
HEAD_SHARE = 0.2


def _check(k: int) -> None:
    if k <= 0:
        raise ConfigError(describe("metric k", "a whole number >= 1", repr(k)))


def recall_at_k(recommended: Sequence[object], relevant: Collection[object], k: int) -> float:
    """Share of ``relevant`` found in the first ``k`` of ``recommended`` (0 if none relevant).

    Examples
    --------
    >>> recall_at_k(["a", "b", "c"], {"b", "z"}, k=2)
    0.5
    """
    _check(k)
    if not relevant:
        return 0.0
    return len(set(recommended[:k]) & set(relevant)) / len(relevant)


def ndcg_at_k(recommended: Sequence[object], relevant: Collection[object], k: int) -> float:
    """Normalised discounted cumulative gain of the first ``k`` with binary relevance.

    Examples
    --------
    >>> round(ndcg_at_k(["a", "b"], {"b"}, k=2), 4)  # 1/log2(3) over 1/log2(2)
    0.6309
    """
    _check(k)
    if not relevant:
        return 0.0
    rel = set(relevant)
    dcg = sum(1.0 / np.log2(i + 2) for i, item in enumerate(recommended[:k]) if item in rel)
    idcg = sum(1.0 / np.log2(i + 2) for i in range(min(k, len(rel))))
    return float(dcg / idcg)


def average_precision_at_k(recommended: Sequence[object], relevant: Collection[object],
                           k: int) -> float:
    """AP@k: precision at each hit, summed, over ``min(k, |relevant|)``.

    Examples
    --------
    >>> average_precision_at_k(["a", "b", "c"], {"a", "c"}, k=3)  # (1/1 + 2/3) / 2
    0.8333333333333333
    """
    _check(k)
    if not relevant:
        return 0.0
    rel, hits, total = set(relevant), 0, 0.0
    for i, item in enumerate(recommended[:k]):
        if item in rel:
            hits += 1
            total += hits / (i + 1)
    return total / min(k, len(rel))


def ranking_metrics(recommendations: pd.DataFrame, relevant: Mapping[str, Collection[str]],
                    *, k: int) -> pd.DataFrame:
    """Recall, NDCG and AP at ``k`` of each customer in ``relevant``.

    Parameters
    ----------
    recommendations : pandas.DataFrame
        As ``Recommender.recommend`` returns: indexed by ``customer_id``, with ``rank`` and
        ``product_id``. A customer without rows scores 0.
    relevant : mapping of str to collection of str
        Each evaluated customer's relevant products.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id``: ``hits``, ``recall``, ``ndcg``, ``ap``.
    """
    _check(k)
    customers = pd.Index(list(relevant), dtype=object, name="customer_id")
    sizes = np.array([len(relevant[c]) for c in customers], dtype=np.int64)
    wanted = pd.DataFrame({"customer_id": np.repeat(customers.to_numpy(), sizes),
                           "product_id": [p for c in customers for p in relevant[c]]})
    ordered = recommendations.sort_values("rank", kind="stable")
    lists = pd.DataFrame({"customer_id": ordered.index.to_numpy(dtype=object),
                          "product_id": ordered["product_id"].to_numpy(dtype=object)})
    lists = lists.drop_duplicates(["customer_id", "product_id"])
    lists["pos"] = lists.groupby("customer_id", sort=False).cumcount()
    lists = lists[lists["pos"] < k]
    hits = lists.merge(wanted.drop_duplicates(), on=["customer_id", "product_id"])
    hits = hits.sort_values(["customer_id", "pos"], kind="stable")
    hits["n"] = hits.groupby("customer_id", sort=False).cumcount() + 1  # hits so far
    hits["gain"] = 1.0 / np.log2(hits["pos"] + 2.0)
    hits["precision"] = hits["n"] / (hits["pos"] + 1.0)
    per = hits.groupby("customer_id").agg(hits=("n", "size"), dcg=("gain", "sum"),
                                          ap=("precision", "sum")).reindex(customers)
    per = per.fillna(0.0)
    ideal = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))])
    cap = np.minimum(k, sizes)
    with np.errstate(invalid="ignore", divide="ignore"):
        frame = pd.DataFrame({
            "hits": per["hits"].to_numpy(dtype=np.int64),
            "recall": np.where(sizes > 0, per["hits"] / np.maximum(sizes, 1), 0.0),
            "ndcg": np.where(cap > 0, per["dcg"] / ideal[cap], 0.0),
            "ap": np.where(cap > 0, per["ap"] / np.maximum(cap, 1), 0.0),
        }, index=customers)
    return frame


def coverage(recommendations: pd.DataFrame, catalogue: Collection[object]) -> float:
    """Distinct recommended products over the products in ``catalogue``."""
    if len(catalogue) == 0:
        return 0.0
    return recommendations["product_id"].nunique() / len(catalogue)


def head_items(sales: pd.Series, share: float = HEAD_SHARE) -> set[str]:
    """The top ``share`` of products by ``sales`` (ceil; ties broken by product id)."""
    ranked = sales.rename("s").reset_index().sort_values(["s", sales.index.name or "index"],
                                                          ascending=[False, True])
    n = int(np.ceil(share * len(sales)))
    return set(ranked.iloc[:n, 0].astype(str))


def long_tail_share(recommendations: pd.DataFrame, head: Collection[object]) -> float:
    """Share of recommended slots that hold a product outside ``head``."""
    if recommendations.empty:
        return 0.0
    return float((~recommendations["product_id"].isin(pd.Index(list(head)))).mean())


def novelty(recommendations: pd.DataFrame, item_novelty: pd.Series) -> float:
    """Mean self-information of the recommended products (``item_novelty`` by product id)."""
    if recommendations.empty:
        return 0.0
    values = item_novelty.reindex(recommendations["product_id"].to_numpy())
    return float(np.nanmean(values.to_numpy(dtype=np.float64)))


def relevant_sets(model: Recommender, interactions: pd.DataFrame, *,
                  where: str) -> dict[str, set[str]]:
    """Products each known customer bought in ``interactions`` and not before, known to the model.

    Customers the model has not seen, and products outside its catalogue, are left out: no
    model can rank them, so they measure the split, not the model.
    """
    from marketloop.strategy.recommend._data import check_interactions

    later = check_interactions(interactions, where=where, allow_empty=True)
    rows = model.customer_ids_.get_indexer(later.customer_id)
    cols = model.product_ids_.get_indexer(later.product_id)
    keep = (rows >= 0) & (cols >= 0)
    rows, cols = rows[keep], cols[keep]
    bought = model.user_items_
    # bought[r, c] > 0 for pairs already bought, read in one vectorised lookup
    seen = np.asarray(bought[rows, cols]).ravel() > 0 if len(rows) else np.zeros(0, bool)
    pairs = pd.DataFrame({"c": model.customer_ids_.to_numpy()[rows[~seen]],
                          "p": model.product_ids_.to_numpy()[cols[~seen]]})
    return {c: set(g) for c, g in pairs.groupby("c", sort=True)["p"]}
