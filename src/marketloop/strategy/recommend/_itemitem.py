"""Item-item co-occurrence: "customers who bought this also bought"."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from marketloop._validation import check_in_range
from marketloop.exceptions import ConfigError, describe
from marketloop.strategy.recommend._base import Recommender

#: Item rows made dense at once while keeping each item's nearest neighbours.
_CHUNK = 512


class ItemItemRecommender(Recommender):
    """Score a product by its co-purchases with what the customer bought.

    ``C = B^T B`` counts the customers who bought both of two products (``B`` the binary
    customer x product matrix, the diagonal dropped). The similarity is ``C`` itself
    (``"count"``, plain co-occurrence) or the cosine ``C_ij / (sqrt(n_i n_j) + shrink)``
    (``"cosine"``, Sarwar et al. 2001), ``n_i`` the buyers of ``i``. Each product keeps its
    ``n_neighbors`` most similar products; a customer's score for ``j`` is the sum of ``j``'s
    similarities to the products the customer bought.

    Parameters
    ----------
    similarity : {"cosine", "count"}, default="cosine"
        The similarity of two products.
    n_neighbors : int, default=100
        Neighbours kept per product.
    shrink : float, default=0.0
        Added to the cosine's denominator; damps pairs with few common buyers.
    tail_weight, diversity : float, default=0.0
        The knobs (see :mod:`marketloop.strategy.recommend`).

    Attributes
    ----------
    similarity_ : scipy.sparse.csr_matrix
        Row ``i`` holds product ``i``'s neighbours and their similarity.
    """

    def __init__(self, similarity: Literal["cosine", "count"] = "cosine", n_neighbors: int = 100,
                 shrink: float = 0.0, tail_weight: float = 0.0, diversity: float = 0.0) -> None:
        self.similarity = similarity
        self.n_neighbors = n_neighbors
        self.shrink = shrink
        self.tail_weight = tail_weight
        self.diversity = diversity

    def _check_params(self) -> None:
        if self.similarity not in ("cosine", "count"):
            raise ConfigError(describe(f"{type(self).__name__} similarity",
                                       "'cosine' or 'count'", repr(self.similarity)))
        check_in_range(self, "n_neighbors", self.n_neighbors, low=1)
        check_in_range(self, "shrink", self.shrink, low=0.0)

    def _fit(self, user_items: sp.csr_matrix, data: pd.DataFrame) -> None:
        binary = user_items.copy()
        binary.data[:] = 1.0
        co = (binary.T @ binary).tocsr().astype(np.float64)
        co.setdiag(0.0)
        co.eliminate_zeros()
        if self.similarity == "cosine":
            norm = np.sqrt(self.buyers_.astype(np.float64))
            rows = np.repeat(np.arange(co.shape[0]), np.diff(co.indptr))
            co.data = co.data / (norm[rows] * norm[co.indices] + self.shrink)
        self.similarity_ = _keep_top(co, int(self.n_neighbors)).astype(np.float32)

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray((self.user_items_[rows].sign() @ self.similarity_).todense())

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return np.asarray(self.similarity_[items].todense(), dtype=np.float64)


def _keep_top(matrix: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """Each row's ``n`` largest entries (ties by column), the rest dropped."""
    n_rows, n_cols = matrix.shape
    if n >= n_cols:
        return matrix
    parts = []
    for start in range(0, n_rows, _CHUNK):
        block = np.asarray(matrix[start:start + _CHUNK].todense())
        top = np.argpartition(-block, n - 1, axis=1)[:, :n]
        vals = np.take_along_axis(block, top, axis=1)
        keep = vals > 0
        r = np.repeat(np.arange(len(block)), keep.sum(axis=1))
        parts.append(sp.csr_matrix((vals[keep], (r, top[keep])), shape=block.shape))
    return sp.vstack(parts).tocsr()
