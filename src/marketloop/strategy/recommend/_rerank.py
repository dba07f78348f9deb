"""Top-k selection from a score matrix, with the long-tail and diversity knobs.

Both knobs act on a candidate pool: the ``CANDIDATES_PER_SLOT * k`` best items by the
model's score. The model's order becomes a relevance in [0, 1] by rank (1 for the best
candidate, falling linearly), so the knobs mean the same for every model whatever the scale
of its scores.

- ``tail_weight`` w in [0, 1] blends relevance with the item's novelty (its self-information
  ``-log2(share of customers who bought it)``, scaled to [0, 1] over the catalogue):
  ``value = (1 - w) relevance + w novelty``. 0 keeps the model's order; 1 sorts the pool by
  novelty alone.
- ``diversity`` d in [0, 1] then picks greedily by maximal marginal relevance (Carbonell &
  Goldstein 1998): the next item maximises ``(1 - d) value - d max_sim``, where ``max_sim``
  is its largest co-purchase cosine with the items already chosen.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Pool of candidates per recommended slot that the knobs choose from.
CANDIDATES_PER_SLOT = 5

#: ``similarity(items)`` gives the (len(items), len(items)) cosine matrix of those items.
Similarity = Callable[[np.ndarray], np.ndarray]


def novelty_of(buyers: np.ndarray, n_customers: int) -> np.ndarray:
    """Self-information ``-log2(p_i)`` of each item, ``p_i`` its share of buyers (Zhou 2010)."""
    share = np.maximum(buyers, 1) / max(n_customers, 1)
    return -np.log2(np.minimum(share, 1.0))


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the ``k`` best finite entries of each row, best first.

    Rows with fewer than ``k`` finite entries are padded with index -1 and score -inf.
    """
    n_rows, n_items = scores.shape
    kk = min(k, n_items)
    if kk < n_items:
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    else:
        part = np.tile(np.arange(n_items), (n_rows, 1))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    idx = np.where(np.isfinite(vals), idx, -1)
    if kk < k:
        idx = np.pad(idx, ((0, 0), (0, k - kk)), constant_values=-1)
        vals = np.pad(vals, ((0, 0), (0, k - kk)), constant_values=-np.inf)
    return idx, vals


def rerank(scores: np.ndarray, k: int, *, novelty: np.ndarray, tail_weight: float = 0.0,
           diversity: float = 0.0,
           similarity: Similarity | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` items per row after the knobs; returns ``(items, scores)`` like :func:`top_k`.

    The scores returned are the model's own, in the new order.
    """
    if tail_weight <= 0 and diversity <= 0:
        return top_k(scores, k)
    pool, pool_scores = top_k(scores, CANDIDATES_PER_SLOT * k)
    valid = pool >= 0
    n_valid = valid.sum(axis=1, keepdims=True)
    ranks = np.arange(pool.shape[1])[None, :]
    relevance = np.where(valid, 1.0 - ranks / np.maximum(n_valid, 1), -np.inf)
    span = float(np.ptp(novelty)) or 1.0
    scaled = (novelty - novelty.min()) / span
    value = (1 - tail_weight) * relevance + tail_weight * np.where(valid, scaled[pool], 0.0)
    value = np.where(valid, value, -np.inf)
    if diversity <= 0 or similarity is None:
        order, _ = top_k(value, k)
    else:
        order = np.stack([_mmr(value[r], pool[r], k, diversity, similarity)
                          for r in range(len(pool))])
    safe = np.where(order >= 0, order, 0)
    items = np.where(order >= 0, np.take_along_axis(pool, safe, axis=1), -1)
    out = np.where(order >= 0, np.take_along_axis(pool_scores, safe, axis=1), -np.inf)
    return items, out


def _mmr(value: np.ndarray, pool: np.ndarray, k: int, diversity: float,
         similarity: Similarity) -> np.ndarray:
    """Greedy maximal-marginal-relevance order of one row's pool (positions in the pool)."""
    valid = np.flatnonzero(np.isfinite(value))
    chosen = np.full(k, -1)
    if len(valid) == 0:
        return chosen
    sim = similarity(pool[valid])
    max_sim = np.zeros(len(valid))
    left = np.ones(len(valid), dtype=bool)
    for slot in range(min(k, len(valid))):
        gain = np.where(left, (1 - diversity) * value[valid] - diversity * max_sim, -np.inf)
        best = int(np.argmax(gain))
        chosen[slot] = valid[best]
        left[best] = False
        max_sim = np.maximum(max_sim, sim[best])
    return chosen
