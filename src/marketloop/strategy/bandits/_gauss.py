"""Probability that each of several Gaussian scores is the largest (Thompson propensities)."""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

_TAIL = 5.5  # standard deviations: tail mass beyond is < 2e-8 per score
_N_GRID = 64  # nodes on the support of the maximum
_NARROW_NODES = np.linspace(-4.0, 4.0, 9)  # extra nodes around a narrow score, in its sds


def independent_max_probabilities(mean: np.ndarray, std: np.ndarray, mask: np.ndarray,
                                  n_grid: int = _N_GRID) -> np.ndarray:
    """``P(a = argmax_b s_b)`` for independent ``s_b ~ N(mean_b, std_b**2)`` over ``mask``.

    ``P(a) = integral of prod_{b != a} Phi_b(s) dPhi_a(s)``, a Stieltjes sum on a grid over
    the support of the maximum: each term is the exact increment of ``Phi_a`` between two
    nodes times the trapezoid value of the other scores' CDFs, so a narrow score is a jump
    inside one interval, not a missed spike. Nodes are added around every score narrower
    than the grid step. Scores whose upper tail lies below the maximum's lower tail get 0;
    the result is normalised (the quadrature error is ~1e-3 at worst, see the tests).
    """
    k = len(mean)
    out = np.zeros(k)
    idx = np.flatnonzero(mask)
    m, s = mean[idx], std[idx]
    scale = np.abs(m).max() + s.max() if len(m) else 0.0
    s = np.maximum(s, 1e-12 * (1.0 + scale))
    low = np.max(m - _TAIL * s)
    live = m + _TAIL * s > low
    if live.sum() <= 1 or not np.isfinite(low):
        best = np.flatnonzero(live) if live.sum() == 1 else [int(np.argmax(m))]
        out[idx[best]] = 1.0
        return out
    m, s, idx = m[live], s[live], idx[live]
    high = np.max(m + _TAIL * s)
    grid = np.linspace(low, high, n_grid)
    narrow = s < (high - low) / n_grid
    if narrow.any():
        extra = (m[narrow, None] + s[narrow, None] * _NARROW_NODES).ravel()
        grid = np.unique(np.concatenate([grid, extra[(extra > low) & (extra < high)]]))
    # ndtr then log is twice as fast as log_ndtr; the clip keeps log finite (Phi(-37) > 0)
    cdf = ndtr(np.maximum((grid[None, :] - m[:, None]) / s[:, None], -37.0))
    log_cdf = np.log(cdf)                                          # (n_live, n_grid)
    log_g = log_cdf.sum(axis=0)
    others = np.exp(log_g[None, :] - log_cdf)                      # prod over b != a
    p = (np.diff(cdf, axis=1) * 0.5 * (others[:, 1:] + others[:, :-1])).sum(axis=1)
    p += cdf[:, 0] * others[:, 0]  # mass below the first node (< 1e-12 per score)
    total = p.sum()
    out[idx] = p / total if total > 0 else 1.0 / len(idx)
    return out


def correlated_max_probabilities(mean: np.ndarray, cov: np.ndarray, loadings: np.ndarray,
                                 mask: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """``P(a = argmax_b s_b)`` for ``s = loadings @ g``, ``g ~ N(mean, cov)``, by Monte Carlo.

    ``normals`` (n_draws, dim) are fixed standard normal draws, so the estimate is a
    deterministic function of its inputs (common random numbers across calls).
    """
    dim = len(mean)
    jitter = 1e-12 * (np.trace(cov) / dim + 1e-300)
    try:
        chol = np.linalg.cholesky(cov + jitter * np.eye(dim))
    except np.linalg.LinAlgError:  # numerically semi-definite: clip the spectrum
        vals, vecs = np.linalg.eigh(cov)
        chol = vecs * np.sqrt(np.clip(vals, 0.0, None))
    g = mean + normals @ chol.T
    scores = g @ loadings.T
    scores[:, ~mask] = -np.inf
    top = np.argmax(scores, axis=1)
    return np.bincount(top, minlength=len(mask)) / len(top)
