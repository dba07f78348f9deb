"""Matrix factorisation for implicit feedback, trained by the ``implicit`` package."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from marketloop._validation import check_in_range
from marketloop.exceptions import ConfigError, describe
from marketloop.strategy.recommend._base import Recommender

Weighting = Literal["binary", "count", "bm25"]


class _FactorModel(Recommender):
    """Scores are dot products of ``user_factors_`` and ``item_factors_``."""

    user_factors_: np.ndarray
    item_factors_: np.ndarray

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return self.user_factors_[rows] @ self.item_factors_.T

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Cosine of the item vectors."""
        norm = np.linalg.norm(self.item_factors_, axis=1)
        unit = self.item_factors_ / np.maximum(norm, 1e-12)[:, None]
        return (unit[items] @ unit.T).astype(np.float64)


def weight_matrix(user_items: sp.csr_matrix, weighting: str, *, k1: float = 100.0,
                  b: float = 0.8) -> sp.csr_matrix:
    """Confidence of each (customer, product) pair: 1, the purchase count, or BM25.

    BM25 (Robertson & Zaragoza 2009, as implicit's ``bm25_weight``) down-weights products
    bought by many customers and customers who bought many products.
    """
    X = user_items.astype(np.float32).tocsr(copy=True)
    if weighting == "binary":
        X.data[:] = 1.0
    elif weighting == "bm25":
        X.data[:] = 1.0
        n_users = X.shape[0]
        idf = np.log(n_users / (1.0 + np.bincount(X.indices, minlength=X.shape[1])))
        row_len = np.diff(X.indptr).astype(np.float64)
        length_norm = (1.0 - b) + b * row_len / max(row_len.mean(), 1e-12)
        rows = np.repeat(np.arange(n_users), np.diff(X.indptr))
        X.data = (X.data * (k1 + 1.0) / (k1 * length_norm[rows] + X.data)
                  * np.maximum(idf[X.indices], 0.0)).astype(np.float32)
    return X


def _blas_single_thread():  # noqa: ANN202 - a threadpoolctl context manager
    # implicit's solvers run their own threads; an OpenBLAS pool on top slows them tenfold
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")


def _check_weighting(owner: object, weighting: str) -> None:
    if weighting not in ("binary", "count", "bm25"):
        raise ConfigError(describe(f"{type(owner).__name__} weighting",
                                   "'binary', 'count' or 'bm25'", repr(weighting)))


class ALSRecommender(_FactorModel):
    """Alternating least squares for implicit feedback (Hu, Koren & Volinsky 2008).

    Minimises ``sum_ui c_ui (p_ui - x_u . y_i)^2 + regularization (|x|^2 + |y|^2)`` with
    ``p_ui = 1`` for bought pairs and confidence ``c_ui = 1 + alpha w_ui`` (``w`` from
    ``weighting``), through ``implicit.cpu.als.AlternatingLeastSquares``.

    Parameters
    ----------
    factors : int, default=64
        Length of the customer and product vectors.
    regularization : float, default=0.05
        L2 penalty.
    alpha : float, default=2.0
        Confidence scale.
    iterations : int, default=15
        Sweeps over customers and products.
    weighting : {"bm25", "binary", "count"}, default="bm25"
        Confidence weights of the bought pairs.
    n_jobs : int, default=1
        Threads of the solver.
    random_state : int or None, default=None
        Seed of the initial vectors.
    tail_weight, diversity : float, default=0.0
        The knobs (see :mod:`marketloop.strategy.recommend`).

    Attributes
    ----------
    user_factors_, item_factors_ : numpy.ndarray
        The learned vectors, one row per customer / product.
    """

    def __init__(self, factors: int = 64, regularization: float = 0.05, alpha: float = 2.0,
                 iterations: int = 15, weighting: Weighting = "bm25", n_jobs: int = 1,
                 random_state: int | None = None, tail_weight: float = 0.0,
                 diversity: float = 0.0) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.weighting = weighting
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.tail_weight = tail_weight
        self.diversity = diversity

    def _check_params(self) -> None:
        check_in_range(self, "factors", self.factors, low=1)
        check_in_range(self, "regularization", self.regularization, low=0.0)
        check_in_range(self, "alpha", self.alpha, low=0.0)
        check_in_range(self, "iterations", self.iterations, low=1)
        check_in_range(self, "n_jobs", self.n_jobs, low=1)
        _check_weighting(self, self.weighting)

    def _fit(self, user_items: sp.csr_matrix, data: pd.DataFrame) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        with _blas_single_thread():  # implicit checks the BLAS pool when the model is made
            model = AlternatingLeastSquares(
                factors=self.factors, regularization=self.regularization, alpha=self.alpha,
                iterations=self.iterations, num_threads=self.n_jobs,
                random_state=self.random_state)
            model.fit(weight_matrix(user_items, self.weighting), show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)


class BPRRecommender(_FactorModel):
    """Bayesian personalised ranking (Rendle et al. 2009) by ``implicit``'s SGD.

    Maximises ``sum ln sigmoid(x_u . (y_i - y_j))`` over sampled triples of a customer, a
    product bought ``i`` and one not bought ``j``, with an L2 penalty. The item vectors carry
    a bias term.

    Parameters
    ----------
    factors : int, default=64
        Length of the vectors (plus a bias).
    learning_rate : float, default=0.05
        SGD step.
    regularization : float, default=0.01
        L2 penalty.
    iterations : int, default=100
        Epochs over the bought pairs.
    n_jobs : int, default=1
        Threads; with more than one the updates race and the seed no longer fixes the model.
    random_state : int or None, default=None
        Seed of the vectors and the sampling.
    tail_weight, diversity : float, default=0.0
        The knobs.

    Attributes
    ----------
    user_factors_, item_factors_ : numpy.ndarray
        The learned vectors (the last column is the bias and its weight).
    """

    def __init__(self, factors: int = 64, learning_rate: float = 0.05,
                 regularization: float = 0.01, iterations: int = 100, n_jobs: int = 1,
                 random_state: int | None = None, tail_weight: float = 0.0,
                 diversity: float = 0.0) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.tail_weight = tail_weight
        self.diversity = diversity

    def _check_params(self) -> None:
        check_in_range(self, "factors", self.factors, low=1)
        check_in_range(self, "learning_rate", self.learning_rate, low=1e-12)
        check_in_range(self, "regularization", self.regularization, low=0.0)
        check_in_range(self, "iterations", self.iterations, low=1)
        check_in_range(self, "n_jobs", self.n_jobs, low=1)

    def _fit(self, user_items: sp.csr_matrix, data: pd.DataFrame) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        with _blas_single_thread():
            model = BayesianPersonalizedRanking(
                factors=self.factors, learning_rate=self.learning_rate,
                regularization=self.regularization, iterations=self.iterations,
                num_threads=self.n_jobs, random_state=self.random_state)
            model.fit(weight_matrix(user_items, "binary"), show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)
