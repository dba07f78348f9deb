"""Epsilon-greedy on a ridge regression: the best mean reward, or a uniform draw."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from marketloop.exceptions import ConfigError
from marketloop.strategy.bandits._base import tie_split
from marketloop.strategy.bandits._linear import Actions, LinearPolicy, Model
from marketloop.strategy.bandits._persist import register
from marketloop.strategy.bandits._ucb import tie_split_rows


@register("epsilon_greedy")
class EpsilonGreedy(LinearPolicy):
    """With probability ``1 - epsilon`` the action of best posterior mean, else uniform.

    The mean is a ridge regression of the reward on the context (``model="disjoint"``)
    or on context x action features (``"shared"``); with no context it is the mean
    reward per action (the classic context-free epsilon-greedy).

    Parameters
    ----------
    actions : int, list of dict, DataFrame or ActionSet
        The actions.
    epsilon : float, default=0.1
        Share of uniformly random choices among the allowed actions.
    model : {"disjoint", "shared"}, default="disjoint"
        One regression per action, or one on context x action features.
    ridge : float, default=1.0
        Prior precision (L2 penalty) of the coefficients.
    fit_intercept : bool, default=True
        Prepend a constant feature to the context.
    min_exploration : float, default=0.0
        Further share spread over the allowed actions (a guardrail on top of ``epsilon``).
    forbidden : dict of str to list of int or None, default=None
        Actions a segment must never get.
    max_discount : float or None, default=None
        Actions whose ``discount`` attribute exceeds it are never chosen.
    propensity_weighting : bool, default=False
        Weight logged rows by ``1 / propensity`` in ``fit``.
    random_state : int or None, default=None
        Seed of :meth:`choose`'s stream when no ``rng`` is passed.

    Examples
    --------
    >>> from marketloop.strategy.bandits import EpsilonGreedy
    >>> policy = EpsilonGreedy(3, epsilon=0.3).fit(None, [0, 1, 2, 2], [0.0, 0.2, 1.0, 0.8])
    >>> policy.action_probabilities(None).round(2).tolist()
    [[0.1, 0.1, 0.8]]
    """

    def __init__(self, actions: Actions, *, epsilon: float = 0.1, model: Model = "disjoint",
                 ridge: float = 1.0, fit_intercept: bool = True, min_exploration: float = 0.0,
                 forbidden: Mapping[str, Sequence[int]] | None = None,
                 max_discount: float | None = None, propensity_weighting: bool = False,
                 random_state: int | None = None) -> None:
        self.actions = actions
        self.epsilon = epsilon
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
        if not 0.0 <= float(self.epsilon) <= 1.0:
            raise ConfigError(f"The 'epsilon' parameter of EpsilonGreedy must be in the range "
                              f"[0, 1]. Got {self.epsilon!r} instead.")

    def _distribution(self, z: np.ndarray, mask: np.ndarray) -> np.ndarray:
        greedy = tie_split(self.model_.mean_var(z)[0], mask)
        return (1.0 - self.epsilon) * greedy + self.epsilon * (mask / mask.sum())

    def _distribution_batch(self, Z: np.ndarray, mask: np.ndarray) -> np.ndarray:
        greedy = tie_split_rows(self.model_.mean_var_batch(Z)[0], mask)
        return (1.0 - self.epsilon) * greedy + self.epsilon * (mask / mask.sum())
