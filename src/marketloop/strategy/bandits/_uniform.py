"""Uniform random policy: obp's ``Random``, and the fixed split of an A/B/n test."""

from __future__ import annotations

from typing import Self

import numpy as np

from marketloop.strategy.bandits._base import (
    Allowed,
    BasePolicy,
    Choice,
    allowed_mask,
    check_int,
    n_rows,
    require_some,
)
from marketloop.strategy.bandits._persist import register


@register("uniform")
class Uniform(BasePolicy):
    """Uniform random policy: every allowed action equally likely (obp's ``Random``).

    Also the fixed A/B/n split of an experiment: each arm gets the same share.

    Parameters
    ----------
    n_actions : int
        Number of actions.
    len_list : int, default=1
        Slots per round; a slate is a uniformly random ordered subset.
    random_state : int or None, default=None
        Seed of :meth:`choose`'s stream when no ``rng`` is passed.

    Examples
    --------
    >>> from marketloop.strategy.bandits import Uniform
    >>> Uniform(4).choose(allowed=[1, 3], rng=0).propensity
    0.5
    """

    def __init__(self, n_actions: int, *, len_list: int = 1,
                 random_state: int | None = None) -> None:
        self.n_actions = n_actions
        self.len_list = len_list
        self.random_state = random_state

    def _mask(self, allowed: Allowed) -> np.ndarray:
        k = check_int(self, "n_actions", self.n_actions, 1)
        check_int(self, "len_list", self.len_list, 1)
        mask = allowed_mask(allowed, k, where=f"{type(self).__name__}.choose")
        require_some(mask, where=f"{type(self).__name__}.choose")
        return mask

    def fit(self, X: object, actions: object, rewards: object,
            propensities: object = None) -> Self:
        """Nothing to learn; returns ``self``."""
        return self

    def partial_fit(self, X: object, actions: object, rewards: object,
                    propensities: object = None) -> Self:
        """Nothing to learn; returns ``self``."""
        return self

    def update(self, x: object, action: int, reward: float) -> None:
        """Nothing to learn."""

    def action_probabilities(self, X: object = None, allowed: Allowed = None) -> np.ndarray:
        """``1 / n_allowed`` for every allowed action, one row per context."""
        mask = self._mask(allowed)
        return np.tile(mask / mask.sum(), (n_rows(X), 1))

    def choose(self, x: object = None, allowed: Allowed = None,
               rng: np.random.Generator | int | None = None) -> Choice:
        """A uniformly random allowed action (and slate)."""
        mask = self._mask(allowed)
        idx = np.flatnonzero(mask)
        n_show = min(self.len_list, len(idx))
        slate = tuple(int(i) for i in self._generator(rng).choice(idx, n_show, replace=False))
        probs = mask / mask.sum()
        return Choice(slate[0], float(probs[slate[0]]), probs, slate)

    def action_dist(self, n_rounds: int = 1) -> np.ndarray:
        """``1 / n_actions`` for every (round, item, position), as obp's ``Random``."""
        k = check_int(self, "n_actions", self.n_actions, 1)
        return np.full((n_rounds, k, self.len_list), 1.0 / k)

    def _state_dict(self) -> dict[str, object]:
        return {}

    def _load_state(self, state: dict[str, object], *, where: str) -> None:
        self._mask(None)
