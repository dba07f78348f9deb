"""The recommender interface: id mapping, filters, re-ranking and the cold-start fallback.

Every recommender learns from an interactions frame (``customer_id``, ``product_id``,
``ts``) and answers with frames indexed by customer (or product). Subclasses implement
``_fit(user_items, data)`` and ``_scores(rows)``, and may override ``_similar(items)``.

Fallback. A customer the model has not seen (cold start), and a customer outside
``consented`` (no personalisation consent), get the best-sellers of the training data:
items ranked by their number of distinct buyers, ties by product id. The ``reason`` column
says which rule produced each row: ``personalised``, ``cold_start`` or ``not_consented``.
Nothing raises for an unknown customer or product.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from marketloop._validation import check_fitted, check_in_range
from marketloop.exceptions import ConfigError, describe
from marketloop.strategy.recommend._data import check_interactions
from marketloop.strategy.recommend._rerank import novelty_of, rerank, top_k

#: Customers scored at once; bounds the dense score block to BATCH x n_items floats.
BATCH = 2048
REASONS = ("personalised", "cold_start", "not_consented")


def check_k(k: object, where: str) -> int:
    """``k`` as a positive int, or a :class:`ConfigError` naming it."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        name = where if where.startswith("--") else f"{where} k"
        raise ConfigError(describe(name, "a whole number of items >= 1", repr(k),
                                   "Ask for at least one recommendation, e.g. k=20."))
    return int(k)


def as_ids(values: Iterable[object] | str, where: str) -> pd.Index:
    """Ids as a de-duplicated string index, first occurrence kept."""
    if isinstance(values, str):
        values = [values]
    ids = pd.Index([str(v) for v in values], dtype=object).drop_duplicates()
    return ids


class Recommender(BaseEstimator):
    """Base of the recommenders: ``fit`` on interactions, ``recommend``, ``similar_items``.

    Attributes
    ----------
    customer_ids_ : pandas.Index
        Customers seen by ``fit`` (sorted); row ``r`` of every learned matrix is
        ``customer_ids_[r]``.
    product_ids_ : pandas.Index
        Products seen by ``fit`` (sorted), the model's catalogue.
    user_items_ : scipy.sparse.csr_matrix
        Interactions per (customer, product), shape ``(n_customers, n_products)``.
    buyers_ : numpy.ndarray
        Distinct buyers of each product: the fallback's ranking and the novelty's base.
    novelty_ : numpy.ndarray
        ``-log2(buyers / n_customers)`` of each product.
    last_seen_ : pandas.Timestamp
        Time of the last interaction in the training data.
    """

    tail_weight: float
    diversity: float

    # ----- fitting --------------------------------------------------------------------
    def fit(self, interactions: pd.DataFrame) -> Self:
        """Learn from ``interactions`` (columns ``customer_id``, ``product_id``, ``ts``).

        Raises
        ------
        SchemaError
            If a column is missing, a time is unreadable, or no interaction is left.
        ConfigError
            If a parameter is out of range.
        """
        where = f"{type(self).__name__}.fit"
        check_in_range(self, "tail_weight", self.tail_weight, low=0.0, high=1.0)
        check_in_range(self, "diversity", self.diversity, low=0.0, high=1.0)
        self._check_params()
        data = check_interactions(interactions, where=where)
        self.__dict__.pop("_serving", None)  # the serving cache of the previous fit
        customers = pd.Index(np.sort(data.customer_id.unique()), name="customer_id")
        products = pd.Index(np.sort(data.product_id.unique()), name="product_id")
        u = customers.get_indexer(data.customer_id)
        i = products.get_indexer(data.product_id)
        X = sp.csr_matrix((np.ones(len(u), np.float32), (u, i)),
                          shape=(len(customers), len(products)))
        X.sum_duplicates()
        self.customer_ids_, self.product_ids_, self.user_items_ = customers, products, X
        self.buyers_ = np.diff(X.tocsc().indptr).astype(np.int64)
        self.novelty_ = novelty_of(self.buyers_, len(customers))
        self.last_seen_ = data.ts.max()
        self._popular = np.lexsort((np.arange(len(products)), -self.buyers_))
        binary = X.copy()
        binary.data[:] = 1.0
        norms = np.sqrt(np.asarray(binary.sum(axis=0)).ravel())
        self._cooc = (binary @ sp.diags(1.0 / np.maximum(norms, 1.0))).tocsc()
        self._fit(X, data.assign(u=u, i=i))
        return self

    def _check_params(self) -> None:
        """Subclasses check their own parameters here."""

    def _fit(self, user_items: sp.csr_matrix, data: pd.DataFrame) -> None:
        raise NotImplementedError

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        """Scores of every product for the customers at ``rows``, shape (len(rows), n_items)."""
        raise NotImplementedError

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Similarity of every product to the products at ``items``; co-purchase cosine."""
        return np.asarray((self._cooc[:, items].T @ self._cooc).todense(), dtype=np.float64)

    def _co_purchase(self, items: np.ndarray) -> np.ndarray:
        sub = self._cooc[:, items]
        return np.asarray((sub.T @ sub).todense(), dtype=np.float64)

    # ----- answering ------------------------------------------------------------------
    def recommend(self, customer_ids: Iterable[object] | str, *, k: int = 20,
                  exclude_bought: bool = True, exclude_items: Collection[object] | None = None,
                  consented: Collection[object] | None = None) -> pd.DataFrame:
        """The top ``k`` products for each customer, best first.

        Parameters
        ----------
        customer_ids : iterable of str
            Customers to recommend for; unknown ones get the fallback (``cold_start``).
        k : int, default=20
            Products per customer.
        exclude_bought : bool, default=True
            Leave out products the customer bought in the training data.
        exclude_items : collection of str, optional
            Products never to recommend (out of stock, withdrawn).
        consented : collection of str, optional
            Customers who allow personalisation; the others get the best-seller list
            (``not_consented``), built without their history. ``None``: everyone.

        Returns
        -------
        pandas.DataFrame
            Indexed by ``customer_id`` (in the order given), columns ``rank`` (1 = best),
            ``product_id``, ``score`` (the model's score; distinct buyers for the fallback)
            and ``reason``. A customer gets fewer than ``k`` rows only when the filters
            leave fewer products.
        """
        check_fitted(self)
        where = f"{type(self).__name__}.recommend"
        k = check_k(k, where)
        ids = as_ids(customer_ids, where)
        rows = self.customer_ids_.get_indexer(ids)
        reason = np.where(rows >= 0, 0, 1)
        if consented is not None:
            allowed = ids.isin(pd.Index([str(c) for c in consented]))
            reason = np.where(allowed, reason, 2)
        blocked = self._blocked(exclude_items)
        items = np.full((len(ids), k), -1)
        scores = np.full((len(ids), k), -np.inf)
        personal = np.flatnonzero(reason == 0)
        for start in range(0, len(personal), BATCH):
            at = personal[start:start + BATCH]
            items[at], scores[at] = self._top(rows[at], k, blocked, exclude_bought)
        fallback = np.flatnonzero(reason > 0)
        if len(fallback):
            pop_items, pop_scores = self._fallback(k, blocked)
            items[fallback], scores[fallback] = pop_items, pop_scores
        return self._frame(ids, items, scores, np.asarray(REASONS)[reason], "customer_id",
                           "product_id")

    def recommend_one(self, customer_id: object, *, k: int = 20,
                      blocked: np.ndarray | None = None) -> list[str]:
        """The top ``k`` product ids for one customer: the serving path, no frame built.

        ``blocked`` is a boolean mask over ``product_ids_`` (see :meth:`blocked_mask`).
        Bought products are left out; an unknown customer gets the best-sellers.
        """
        check_fitted(self)
        mask = np.zeros(len(self.product_ids_), bool) if blocked is None else blocked
        cache = self.__dict__.get("_serving")
        if cache is None:  # a dict lookup is ~20x faster than Index.get_indexer
            cache = self.__dict__["_serving"] = (
                dict(zip(self.customer_ids_, range(len(self.customer_ids_)), strict=True)),
                self.product_ids_.to_numpy(dtype=object))
        positions, ids = cache
        row = positions.get(str(customer_id), -1)
        if row < 0:
            items, _ = self._fallback(k, mask)
        elif self.tail_weight > 0 or self.diversity > 0:
            items, _ = self._top(np.array([row]), k, mask, True)
            items = items[0]
        else:
            items = self._top_one(row, k, mask)
        return [ids[i] for i in items if i >= 0]

    def _top_one(self, row: int, k: int, blocked: np.ndarray) -> np.ndarray:
        """One customer's best ``k`` without the knobs, in place of the batch path."""
        scores = np.asarray(self._scores(np.array([row])), dtype=np.float64)[0]
        X = self.user_items_
        scores[X.indices[X.indptr[row]:X.indptr[row + 1]]] = -np.inf
        if blocked.any():
            scores[blocked] = -np.inf
        kk = min(k, len(scores))
        top = np.argpartition(-scores, kk - 1)[:kk] if kk < len(scores) else np.arange(kk)
        top = top[np.argsort(-scores[top], kind="stable")]
        return top[np.isfinite(scores[top])]

    def blocked_mask(self, exclude_items: Collection[object] | None) -> np.ndarray:
        """Boolean mask over ``product_ids_``: True for the products to leave out."""
        check_fitted(self)
        return self._blocked(exclude_items)

    def similar_items(self, product_ids: Iterable[object] | str, *, k: int = 10,
                      exclude_items: Collection[object] | None = None) -> pd.DataFrame:
        """The ``k`` products most similar to each product (itself left out).

        Returns
        -------
        pandas.DataFrame
            Indexed by ``product_id``, columns ``rank``, ``similar_id``, ``score`` and
            ``reason``; a product unknown to the model gets the best-sellers
            (``cold_start``).
        """
        check_fitted(self)
        where = f"{type(self).__name__}.similar_items"
        k = check_k(k, where)
        ids = as_ids(product_ids, where)
        rows = self.product_ids_.get_indexer(ids)
        blocked = self._blocked(exclude_items)
        items = np.full((len(ids), k), -1)
        scores = np.full((len(ids), k), -np.inf)
        known = np.flatnonzero(rows >= 0)
        for start in range(0, len(known), BATCH):
            at = known[start:start + BATCH]
            sim = self._similar(rows[at]).astype(np.float64)
            sim[:, blocked] = -np.inf
            sim[np.arange(len(at)), rows[at]] = -np.inf
            items[at], scores[at] = top_k(sim, k)
        unknown = np.flatnonzero(rows < 0)
        if len(unknown):
            items[unknown], scores[unknown] = self._fallback(k, blocked)
        reason = np.where(rows >= 0, "personalised", "cold_start")
        return self._frame(ids, items, scores, reason, "product_id", "similar_id")

    def score(self, interactions: pd.DataFrame, *, k: int = 20) -> float:
        """Recall@k on later ``interactions`` of known customers, bought products excluded.

        The headline metric; :func:`marketloop.strategy.recommend.evaluate.evaluate` gives
        the full table.
        """
        from marketloop.strategy.recommend._metrics import ranking_metrics, relevant_sets

        check_fitted(self)
        relevant = relevant_sets(self, interactions, where=f"{type(self).__name__}.score")
        recs = self.recommend(list(relevant), k=k)
        return float(ranking_metrics(recs, relevant, k=k)["recall"].mean())

    # ----- helpers --------------------------------------------------------------------
    def _blocked(self, exclude_items: Collection[object] | None) -> np.ndarray:
        mask = np.zeros(len(self.product_ids_), dtype=bool)
        if exclude_items is not None:
            at = self.product_ids_.get_indexer(as_ids(exclude_items, "exclude_items"))
            mask[at[at >= 0]] = True
        return mask

    def _top(self, rows: np.ndarray, k: int, blocked: np.ndarray,
             exclude_bought: bool) -> tuple[np.ndarray, np.ndarray]:
        scores = np.asarray(self._scores(rows), dtype=np.float64)
        scores[:, blocked] = -np.inf
        if exclude_bought:
            bought = self.user_items_[rows]
            scores[np.repeat(np.arange(len(rows)), np.diff(bought.indptr)), bought.indices] = (
                -np.inf)
        return rerank(scores, k, novelty=self.novelty_, tail_weight=self.tail_weight,
                      diversity=self.diversity, similarity=self._co_purchase)

    def _fallback(self, k: int, blocked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = self._popular[~blocked[self._popular]][:k]
        items = np.full(k, -1)
        items[:len(order)] = order
        scores = np.full(k, -np.inf)
        scores[:len(order)] = self.buyers_[order]
        return items, scores

    def _frame(self, ids: pd.Index, items: np.ndarray, scores: np.ndarray,
               reason: np.ndarray, index_name: str, item_name: str) -> pd.DataFrame:
        keep = items >= 0
        n = keep.sum(axis=1)
        ranks = np.cumsum(keep, axis=1)[keep]
        frame = pd.DataFrame({
            "rank": ranks.astype(np.int64),
            item_name: self.product_ids_.to_numpy()[items[keep]],
            "score": scores[keep],
            "reason": np.repeat(np.asarray(reason, dtype=object), n),
        }, index=pd.Index(np.repeat(ids.to_numpy(), n), name=index_name))
        return frame
