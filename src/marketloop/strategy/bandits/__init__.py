"""Bandit policies: choose an action, log its propensity, learn from the reward.

Every policy has ``fit(X, actions, rewards, propensities=None)`` (a batch log),
``partial_fit`` and ``update(x, action, reward)`` (streaming), ``choose(x, allowed=None,
rng=None) -> Choice`` (the action, its propensity, the whole distribution),
``action_probabilities(X, allowed=None)`` (deterministic given the state) and
``save(path)``; :func:`load_policy` reads a saved policy back. docs/bandits.md is the guide.
"""

from __future__ import annotations

from marketloop.strategy.bandits._actions import ActionSet
from marketloop.strategy.bandits._base import BasePolicy, Choice
from marketloop.strategy.bandits._bernoulli import BernoulliTS
from marketloop.strategy.bandits._greedy import EpsilonGreedy
from marketloop.strategy.bandits._linear import LinearPolicy
from marketloop.strategy.bandits._persist import load_policy
from marketloop.strategy.bandits._thompson import LinTS
from marketloop.strategy.bandits._ucb import LinUCB
from marketloop.strategy.bandits._uniform import Uniform
from marketloop.strategy.bandits._vw import VWPolicy

__all__ = [
    "ActionSet",
    "BasePolicy",
    "BernoulliTS",
    "Choice",
    "EpsilonGreedy",
    "LinTS",
    "LinUCB",
    "LinearPolicy",
    "Uniform",
    "VWPolicy",
    "load_policy",
]
