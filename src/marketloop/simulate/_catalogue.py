"""The product catalogue and the taste-driven item choice (softmax over products)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from marketloop.simulate._params import (
    CATEGORIES,
    N_CATEGORIES,
    SEASON_WEIGHT,
    TASTE_DIMS,
    TASTE_SCALE,
    ZIPF_EXPONENT,
)

_ADJECTIVES = np.array(["Classic", "Eco", "Pro", "Mini", "Deluxe", "Urban", "Nordic", "Smart"])
_CHUNK = 4096


def draw_catalogue(n_products: int, rng: np.random.Generator) -> pd.DataFrame:
    """Products sorted by category: popularity, item vector, price, cost, season."""
    share = rng.dirichlet(np.full(N_CATEGORIES, 4.0))
    cat = np.sort(rng.choice(N_CATEGORIES, size=n_products, p=share))
    # each category gets at least one product so every category can sell
    if n_products >= N_CATEGORIES:
        cat[:N_CATEGORIES] = np.arange(N_CATEGORIES)
        cat = np.sort(cat)
    rank = rng.permutation(n_products) + 1
    popularity = -ZIPF_EXPONENT * np.log(rank)
    centroids = rng.normal(0.0, TASTE_DIMS**-0.25, (N_CATEGORIES, TASTE_DIMS))
    vec = 0.8 * centroids[cat] + rng.normal(0.0, 0.6 * TASTE_DIMS**-0.25, (n_products, TASTE_DIMS))
    cat_log_price = rng.normal(3.0, 0.5, N_CATEGORIES)
    price = np.round(np.exp(cat_log_price[cat] + rng.normal(0.0, 0.5, n_products)), 2)
    price = np.maximum(price, 0.99)
    margin = rng.uniform(0.45, 0.75, n_products)
    frame = pd.DataFrame(
        {
            "category": cat,
            "popularity": popularity,
            "price": price,
            "cost": np.round(price * margin, 2),
            "season_amplitude": rng.uniform(0.3, 1.0, N_CATEGORIES)[cat],
            "season_phase": rng.uniform(0.0, 2 * np.pi, N_CATEGORIES)[cat],
            "name_adjective": _ADJECTIVES[rng.integers(0, len(_ADJECTIVES), n_products)],
        }
    )
    for k in range(TASTE_DIMS):
        frame[f"item_{k}"] = vec[:, k]
    frame["category_name"] = np.array(CATEGORIES)[cat]
    return frame


class ItemChooser:
    """Draws items by softmax(popularity + u.v + season of the category at day t).

    Products are sorted by category, so the draw is exact in two stages: the category with
    weight ``exp(season_c(t)) * sum_{j in c} exp(pop_j + u.v_j)``, then the item inside it.
    """

    def __init__(self, products: pd.DataFrame, taste: np.ndarray) -> None:
        self.pop = products["popularity"].to_numpy()
        self.vec = products[[f"item_{k}" for k in range(TASTE_DIMS)]].to_numpy()
        cat = products["category"].to_numpy()
        self.bounds = np.searchsorted(cat, np.arange(N_CATEGORIES + 1))
        self.amp = np.zeros(N_CATEGORIES)
        self.phase = np.zeros(N_CATEGORIES)
        self.amp[cat] = products["season_amplitude"].to_numpy()
        self.phase[cat] = products["season_phase"].to_numpy()
        self.taste = taste

    def scores(self, rows: np.ndarray | slice) -> np.ndarray:
        """Log-weights ``pop_j + u_i . v_j`` (no season) for the given customers."""
        return self.pop[None, :] + TASTE_SCALE * (self.taste[rows] @ self.vec.T)

    def season(self, day: np.ndarray) -> np.ndarray:
        """Seasonal log-weight of each category at each (absolute) day, shape (len, C)."""
        angle = 2 * np.pi * np.asarray(day)[:, None] / 365.0 + self.phase[None, :]
        return SEASON_WEIGHT * self.amp[None, :] * np.sin(angle)

    def _chunks(self, cust: np.ndarray) -> Iterator[tuple[int, int, int, int]]:
        n = len(self.taste)
        for lo in range(0, n, _CHUNK):
            hi = min(n, lo + _CHUNK)
            a, b = np.searchsorted(cust, [lo, hi])
            if b > a:
                yield lo, hi, int(a), int(b)

    def draw(self, cust: np.ndarray, day: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One product index per (customer, day); ``cust`` must be sorted ascending."""
        out = np.empty(len(cust), dtype=np.int64)
        season = self.season(day)
        for lo, hi, a, b in self._chunks(cust):
            s = self.scores(slice(lo, hi))
            w = np.exp(s - s.max(axis=1, keepdims=True))
            cum = np.cumsum(w, axis=1)
            total = cum[:, -1:]
            cum /= total
            ends = cum[:, self.bounds[1:] - 1]
            starts = np.concatenate([np.zeros((hi - lo, 1)), ends[:, :-1]], axis=1)
            rows = cust[a:b] - lo
            cat_w = (ends - starts)[rows] * np.exp(season[a:b])
            cat_c = np.cumsum(cat_w, axis=1)
            u = rng.random(b - a) * cat_c[:, -1]
            c = (cat_c < u[:, None]).sum(axis=1)
            c = np.minimum(c, N_CATEGORIES - 1)
            lo_q, hi_q = starts[rows, c], ends[rows, c]
            q = lo_q + rng.random(b - a) * (hi_q - lo_q)
            flat = (cum + np.arange(hi - lo)[:, None]).ravel()
            idx = np.searchsorted(flat, rows + q, side="right")
            idx = np.minimum(idx, flat.size - 1)
            out[a:b] = idx - rows * cum.shape[1]
        return np.clip(out, 0, len(self.pop) - 1)

    def draw_popular(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """Items by popularity alone (anonymous visitors, exploration views)."""
        w = np.exp(self.pop - self.pop.max())
        return rng.choice(len(w), size=size, p=w / w.sum())

    def top_k(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each customer's ``k`` highest-affinity items: (customer, product, score) flat."""
        k = min(k, len(self.pop))
        n = len(self.taste) if k > 0 else 0
        cust = np.repeat(np.arange(n), k)
        prod = np.empty(n * k, dtype=np.int64)
        score = np.empty(n * k)
        for lo in range(0, n, _CHUNK):
            hi = min(n, lo + _CHUNK)
            s = self.scores(slice(lo, hi))
            top = np.argpartition(-s, k - 1, axis=1)[:, :k]
            val = np.take_along_axis(s, top, axis=1)
            order = np.argsort(-val, axis=1)
            prod[lo * k : hi * k] = np.take_along_axis(top, order, axis=1).ravel()
            score[lo * k : hi * k] = np.take_along_axis(val, order, axis=1).ravel()
        return cust, prod, score
