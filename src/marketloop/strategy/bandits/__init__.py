"""Bandit policies: choose an action, log its propensity, learn from the reward.

Every policy has ``fit(X, actions, rewards, propensities=None)`` (a batch log),
``partial_fit`` and ``update(x, action, reward)`` (streaming), ``choose(x, allowed=None,
rng=None) -> Choice`` (the action, its propensity, the whole distribution),
``action_probabilities(X, allowed=None)`` (deterministic given the state) and
``save(path)``; :func:`load_policy` reads a saved policy back. docs/bandits.md is the guide.
"""

from __future__ import annotations

from marketloop.strategy.bandits._base import Choice
from marketloop.strategy.bandits._bernoulli import BernoulliTS, Uniform
from marketloop.strategy.bandits._persist import load_policy

__all__ = [
    "BernoulliTS",
    "Choice",
    "Uniform",
    "load_policy",
]
