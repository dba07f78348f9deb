"""Popularity baselines: best-sellers overall, recently, or in the season ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from marketloop._validation import check_in_range
from marketloop.strategy.recommend._base import Recommender


class _Popularity(Recommender):
    """Same list for everyone: subclasses compute ``popularity_`` in ``_fit``."""

    def _set_scores(self, scores: np.ndarray) -> None:
        # ties broken toward more buyers, then by product id, like the fallback
        tie = self.buyers_ / (self.buyers_.max() + 1.0) * 1e-6 * max(scores.max(), 1e-12)
        self.popularity_ = pd.Series(scores + tie, index=self.product_ids_, name="popularity")
        self._row = self.popularity_.to_numpy(dtype=np.float32)[None, :]

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return np.repeat(self._row, len(rows), axis=0)

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return np.repeat(self._row.astype(np.float64), len(items), axis=0)


class PopularityRecommender(_Popularity):
    """Recommend the products with the most distinct buyers (the same list to everyone).

    Parameters
    ----------
    half_life_days : float or None, default=None
        Weight each purchase by ``0.5 ** (age_days / half_life_days)``, its age counted back
        from the last training interaction, so recent best-sellers rise; ``None`` counts
        every buyer once.
    tail_weight : float, default=0.0
        Long-tail knob in [0, 1] (see :mod:`marketloop.strategy.recommend`).
    diversity : float, default=0.0
        Diversity knob in [0, 1].

    Attributes
    ----------
    popularity_ : pandas.Series
        Score of each product, indexed by ``product_id``.

    Examples
    --------
    >>> from marketloop.simulate import Market
    >>> from marketloop.strategy.recommend import PopularityRecommender, shop_interactions
    >>> shop = Market(n_customers=500, n_days=90, random_state=0).simulate(
    ...     ("customers", "products", "orders", "order_lines"))
    >>> model = PopularityRecommender().fit(shop_interactions(shop))
    >>> model.recommend(["c0000001", "nobody"], k=3)["reason"].tolist()
    ['personalised', 'personalised', 'personalised', 'cold_start', 'cold_start', 'cold_start']
    """

    def __init__(self, half_life_days: float | None = None, tail_weight: float = 0.0,
                 diversity: float = 0.0) -> None:
        self.half_life_days = half_life_days
        self.tail_weight = tail_weight
        self.diversity = diversity

    def _check_params(self) -> None:
        if self.half_life_days is not None:
            check_in_range(self, "half_life_days", self.half_life_days, low=1e-9)

    def _fit(self, user_items: sp.csr_matrix, data: pd.DataFrame) -> None:
        if self.half_life_days is None:
            scores = self.buyers_.astype(np.float64)
        else:
            age = (self.last_seen_ - data.ts).dt.total_seconds().to_numpy() / 86_400
            weight = 0.5 ** (age / self.half_life_days)
            first = data.assign(w=weight).groupby(["u", "i"])["w"].max()  # a buyer counts once
            scores = np.bincount(first.index.get_level_values("i"), weights=first.to_numpy(),
                                 minlength=len(self.product_ids_))
        self._set_scores(scores)


class SeasonalPopularityRecommender(_Popularity):
    """Best-sellers of the same season: purchases weighted by closeness in the calendar.

    A purchase on day-of-year ``d`` weighs ``exp(-dist(d, target)^2 / (2 width_days^2))``,
    with ``dist`` the circular day distance and ``target`` the middle of the coming
    ``horizon_days`` after the last training interaction: last year's December sells this
    December. With less than a year of history only the recent end of the kernel is seen.

    Parameters
    ----------
    width_days : float, default=21.0
        Standard deviation of the seasonal kernel, in days.
    horizon_days : float, default=30.0
        Length of the period the recommendations are for.
    tail_weight, diversity : float, default=0.0
        The knobs (see :class:`PopularityRecommender`).

    Attributes
    ----------
    popularity_ : pandas.Series
        Seasonal score of each product, indexed by ``product_id``.
    """

    def __init__(self, width_days: float = 21.0, horizon_days: float = 30.0,
                 tail_weight: float = 0.0, diversity: float = 0.0) -> None:
        self.width_days = width_days
        self.horizon_days = horizon_days
        self.tail_weight = tail_weight
        self.diversity = diversity

    def _check_params(self) -> None:
        check_in_range(self, "width_days", self.width_days, low=1e-9)
        check_in_range(self, "horizon_days", self.horizon_days, low=0.0)

    def _fit(self, user_items: sp.csr_matrix, data: pd.DataFrame) -> None:
        target = self.last_seen_ + pd.Timedelta(days=self.horizon_days / 2)
        gap = np.abs(data.ts.dt.day_of_year.to_numpy() - target.day_of_year)
        dist = np.minimum(gap, 365.25 - gap)
        weight = np.exp(-0.5 * (dist / self.width_days) ** 2)
        first = data.assign(w=weight).groupby(["u", "i"])["w"].max()
        scores = np.bincount(first.index.get_level_values("i"), weights=first.to_numpy(),
                             minlength=len(self.product_ids_))
        self._set_scores(scores)
