"""LinUCB: the action with the largest upper confidence bound of its linear reward."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from marketloop.exceptions import ConfigError
from marketloop.strategy.bandits._base import tie_split
from marketloop.strategy.bandits._linear import Actions, LinearPolicy, Model
from marketloop.strategy.bandits._persist import register


@register("lin_ucb")
class LinUCB(LinearPolicy):
    """LinUCB: choose ``argmax_a  mean_a(x) + alpha * sd_a(x)`` of a ridge posterior.

    With ``model="disjoint"`` each action has its own ridge regression on the context;
    with ``model="shared"`` one regression on context x action features (see
    :class:`ActionSet`) lets similar actions learn from each other. Ties share their
    probability equally; ``min_exploration`` mixes in a uniform share, so the reported
    propensity is the exact probability of the choice.

    Parameters
    ----------
    actions : int, list of dict, DataFrame or ActionSet
        The actions (a count, or attribute dicts that also give features and discounts).
    alpha : float, default=1.0
        Width of the confidence bound, in units of the reward.
    model : {"disjoint", "shared"}, default="disjoint"
        One regression per action, or one on context x action features.
    ridge : float, default=1.0
        Prior precision (L2 penalty) of the coefficients.
    fit_intercept : bool, default=True
        Prepend a constant feature to the context.
    min_exploration : float, default=0.0
        Share of probability spread over the allowed actions.
    forbidden : dict of str to list of int or None, default=None
        Actions a segment must never get (``choose(..., segment=...)``).
    max_discount : float or None, default=None
        Actions whose ``discount`` attribute exceeds it are never chosen.
    propensity_weighting : bool, default=False
        Weight logged rows by ``1 / propensity`` in ``fit``.
    random_state : int or None, default=None
        Seed of :meth:`choose`'s stream when no ``rng`` is passed.

    References
    ----------
    Li, Chu, Langford & Schapire (2010), "A contextual-bandit approach to personalized news
    article recommendation", WWW, algorithm 1 (disjoint) and 2 (hybrid).

    Examples
    --------
    >>> import numpy as np
    >>> from marketloop.strategy.bandits import LinUCB
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 3))
    >>> a = rng.integers(0, 2, 500)
    >>> r = np.where(a == 1, X[:, 0], -X[:, 0]) + rng.normal(0, 0.1, 500)
    >>> policy = LinUCB(2, alpha=0.1, random_state=0).fit(X, a, r)
    >>> policy.choose([2.0, 0.0, 0.0]).action, policy.choose([-2.0, 0.0, 0.0]).action
    (1, 0)
    """

    def __init__(self, actions: Actions, *, alpha: float = 1.0, model: Model = "disjoint",
                 ridge: float = 1.0, fit_intercept: bool = True, min_exploration: float = 0.0,
                 forbidden: Mapping[str, Sequence[int]] | None = None,
                 max_discount: float | None = None, propensity_weighting: bool = False,
                 random_state: int | None = None) -> None:
        self.actions = actions
        self.alpha = alpha
        self.model = model
        self.ridge = ridge
        self.fit_intercept = fit_intercept
        self.min_exploration = min_exploration
        self.forbidden = forbidden
        self.max_discount = max_discount
        self.propensity_weighting = propensity_weighting
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        if not float(self.alpha) >= 0:
            raise ConfigError(f"The 'alpha' parameter of LinUCB must be >= 0. "
                              f"Got {self.alpha!r} instead.")

    def _distribution(self, z: np.ndarray, mask: np.ndarray) -> np.ndarray:
        mean, var = self.model_.mean_var(z)
        return tie_split(mean + self.alpha * np.sqrt(var), mask)

    def _distribution_batch(self, Z: np.ndarray, mask: np.ndarray) -> np.ndarray:
        mean, var = self.model_.mean_var_batch(Z)
        return tie_split_rows(mean + self.alpha * np.sqrt(var), mask)


def tie_split_rows(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """:func:`tie_split` for every row of ``scores``."""
    masked = np.where(mask, scores, -np.inf)
    best = masked.max(axis=1, keepdims=True)
    top = masked >= best - 1e-12 * (1.0 + np.abs(best))
    return top / top.sum(axis=1, keepdims=True)
