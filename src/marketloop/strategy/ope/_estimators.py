"""Off-policy estimators on arrays: IPS, self-normalised IPS, direct method, doubly robust.

Notation, for logged rows i with chosen action a_i, reward r_i and logging propensity p_i:
``pi[i, a]`` is the candidate policy's probability of action a in row i (at the row's
position), ``w_i = pi[i, a_i] / p_i`` the importance weight and ``q[i, a]`` the reward
model's prediction.

- IPS: mean of ``w_i r_i`` (unbiased, high variance when weights are large);
- SNIPS: ``sum w_i r_i / sum w_i`` (self-normalised: bounded by the rewards, slightly biased);
- DM: mean of ``sum_a pi[i, a] q[i, a]`` (low variance, biased as the model is);
- DR: DM plus ``w~_i (r_i - q[i, a_i])``, where ``w~ = lambda w / (w^2 + lambda)`` shrinks
  large weights (Su et al. 2020, "Doubly robust off-policy evaluation with shrinkage");
  ``lambda = inf`` is the plain doubly robust estimator. ``lambda`` is chosen by SLOPE
  (Su, Srinath & Krishnamurthy 2020): going from the least biased candidate towards the
  lowest-variance one, keep the last whose two-standard-error interval still meets all the
  previous ones.

The effective sample size of weights ``w`` is ``(sum w)^2 / sum w^2``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ESTIMATORS = ("ips", "snips", "dm", "dr")


@dataclass
class Estimate:
    """One estimator's value of the candidate policy, with its interval."""

    value: float
    ci: tuple[float, float]
    #: Effective sample size of the weights the estimator used (None for DM).
    ess: float | None = None
    #: Extra facts (the shrinkage chosen for DR).
    info: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"value": self.value, "ci": list(self.ci)}
        if self.ess is not None:
            out["ess"] = self.ess
        out.update(self.info)
        return out


def effective_sample_size(weights: np.ndarray) -> float:
    """``(sum w)^2 / sum w^2``: how many logged rows the weighted average is worth."""
    total = float(np.sum(weights**2))
    return float(np.sum(weights) ** 2 / total) if total > 0 else 0.0


def shrink(weights: np.ndarray, lam: float) -> np.ndarray:
    """Optimistic shrinkage ``lam w / (w^2 + lam)``; ``lam = inf`` keeps the weights."""
    if np.isinf(lam):
        return weights
    if lam <= 0:
        return np.zeros_like(weights)
    return lam * weights / (weights**2 + lam)


def shrinkage_grid(weights: np.ndarray, n: int = 30) -> list[float]:
    """Candidate lambdas, least biased first: inf, then down to the direct method (0)."""
    top = float(np.max(weights) ** 2) if weights.size else 1.0
    return [np.inf, *np.geomspace(max(top, 1e-3), 1e-4, n).tolist(), 0.0]


def point_estimates(
    reward: np.ndarray,
    weights: np.ndarray,
    pi: np.ndarray,
    q: np.ndarray,
    q_chosen: np.ndarray,
) -> dict[str, tuple[float, dict[str, float]]]:
    """Every estimator's value (and, for DR, the lambda SLOPE chose)."""
    dm_rows = np.einsum("ik,ik->i", pi, q)
    total = float(weights.sum())
    lam, dr = slope_dr(reward, weights, dm_rows, q_chosen)
    return {
        "ips": (float(np.mean(weights * reward)), {}),
        "snips": (float(np.sum(weights * reward) / total) if total > 0 else 0.0, {}),
        "dm": (float(dm_rows.mean()), {}),
        "dr": (dr, {"lambda": lam}),
    }


def slope_dr(
    reward: np.ndarray, weights: np.ndarray, dm_rows: np.ndarray, q_chosen: np.ndarray
) -> tuple[float, float]:
    """``(lambda, value)`` of the shrinkage DR estimator that SLOPE selects."""
    residual = reward - q_chosen
    n = max(len(reward), 1)
    low, high = -np.inf, np.inf
    chosen = (np.inf, float(np.mean(dm_rows + weights * residual)))
    for lam in shrinkage_grid(weights):
        terms = dm_rows + shrink(weights, lam) * residual
        value = float(terms.mean())
        width = 2.0 * float(terms.std()) / np.sqrt(n)
        low, high = max(low, value - width), min(high, value + width)
        if low > high:
            break
        chosen = (float(lam), value)
    return chosen
