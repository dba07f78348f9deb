"""Vowpal Wabbit's ``--cb_explore_adf`` behind the marketloop policy interface.

The industrial peer: the same action set, contexts, guardrails and :class:`Choice`, with
VW learning the rewards. Needs the ``vowpalwabbit`` package (``pip install
vowpalwabbit``); it is imported on first use, never by ``import marketloop``.
"""

from __future__ import annotations

import base64
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

import numpy as np

from marketloop.exceptions import ConfigError, SchemaError, describe
from marketloop.strategy.bandits._actions import as_action_set
from marketloop.strategy.bandits._base import (
    Allowed,
    BasePolicy,
    Choice,
    context_found,
    sample_index,
)
from marketloop.strategy.bandits._guardrails import Guardrails
from marketloop.strategy.bandits._linear import Actions
from marketloop.strategy.bandits._persist import register

_BAD = re.compile(r"[\s|:]")


def _token(name: str) -> str:
    """A feature name VW can parse (no spaces, bars or colons)."""
    return _BAD.sub("_", name)


@register("vw")
class VWPolicy(BasePolicy):
    """A Vowpal Wabbit contextual bandit with action-dependent features.

    Each decision is a VW multi-line example: a ``shared |S`` line with the context and
    one ``|A`` line per allowed action with its features (the one-hot and scaled
    attributes of :class:`ActionSet`); ``-q SA`` crosses them. VW returns a probability
    mass function; the policy samples from it (after the guardrails), so the propensity
    is VW's own probability of the choice. Rewards are learnt as costs ``-reward``.

    Parameters
    ----------
    actions : int, list of dict, DataFrame or ActionSet
        The actions.
    epsilon : float, default=0.05
        VW's epsilon-greedy exploration (``--epsilon``).
    vw_args : str, default="-q SA --cb_type mtr"
        Further VW options, appended to ``--cb_explore_adf --quiet``.
    min_exploration : float, default=0.0
        Share of probability spread over the allowed actions.
    forbidden : dict of str to list of int or None, default=None
        Actions a segment must never get.
    max_discount : float or None, default=None
        Actions whose ``discount`` attribute exceeds it are never chosen.
    random_state : int or None, default=None
        Seed of :meth:`choose`'s stream and of VW (``--random_seed``).

    References
    ----------
    Vowpal Wabbit, "Contextual bandits: cb_explore_adf",
    https://vowpalwabbit.org/docs/vowpal_wabbit/python/latest/tutorials/python_Contextual_bandits_and_Vowpal_Wabbit.html
    """

    def __init__(self, actions: Actions, *, epsilon: float = 0.05,
                 vw_args: str = "-q SA --cb_type mtr", min_exploration: float = 0.0,
                 forbidden: Mapping[str, Sequence[int]] | None = None,
                 max_discount: float | None = None, random_state: int | None = None) -> None:
        self.actions = actions
        self.epsilon = epsilon
        self.vw_args = vw_args
        self.min_exploration = min_exploration
        self.forbidden = forbidden
        self.max_discount = max_discount
        self.random_state = random_state

    # -- set-up ------------------------------------------------------------------------
    def _args(self) -> str:
        if not 0.0 <= float(self.epsilon) <= 1.0:
            raise ConfigError(f"The 'epsilon' parameter of VWPolicy must be in the range "
                              f"[0, 1]. Got {self.epsilon!r} instead.")
        seed = "" if self.random_state is None else f" --random_seed {int(self.random_state)}"
        return f"--cb_explore_adf --quiet --epsilon {float(self.epsilon)} {self.vw_args}{seed}"

    def _workspace(self, extra: str = "") -> object:
        try:
            import vowpalwabbit
        except ImportError:
            raise ConfigError(describe("VWPolicy", "the vowpalwabbit package",
                                       "it is not installed",
                                       "pip install vowpalwabbit")) from None
        return vowpalwabbit.Workspace(self._args() + extra)

    def _ensure(self, n_features: int) -> None:
        if hasattr(self, "vw_"):
            return
        self.action_set_ = as_action_set(self.actions, where="VWPolicy actions")
        self.guardrails_ = Guardrails(
            self.action_set_.discount, min_exploration=self.min_exploration,
            forbidden=self.forbidden, max_discount=self.max_discount, where="VWPolicy")
        self.n_features_in_ = int(n_features)
        self.vw_ = self._workspace()
        feats, names = self.action_set_.features, [_token(n) for n in
                                                   self.action_set_.feature_names]
        self._action_lines = [
            "|A " + " ".join(f"{n}:{v:.9g}" for n, v in zip(names, row, strict=True) if v)
            for row in feats]
        self._context_names = [f"x{j}" for j in range(self.n_features_in_)]
        self.n_updates_ = 0

    def _shared(self, x: object, *, where: str) -> str:
        v = np.zeros(0) if x is None else np.asarray(x, dtype=np.float64).ravel()
        self._ensure(len(v))
        if len(v) != self.n_features_in_ or not np.isfinite(v).all():
            raise SchemaError(describe(where, f"a finite context of {self.n_features_in_} "
                                       "features", context_found(v),
                                       "" if np.isfinite(v).all() else "Impute missing "
                                       "profile values before deciding or learning."))
        return "shared |S " + " ".join(
            f"{n}:{val:.9g}" for n, val in zip(self._context_names, v, strict=True))

    # -- acting ------------------------------------------------------------------------
    def _pmf(self, shared: str, mask: np.ndarray) -> np.ndarray:
        idx = np.flatnonzero(mask)
        lines = self._action_lines
        pmf = np.asarray(self.vw_.predict([shared] + [lines[i] for i in idx]), np.float64)
        p = np.zeros(len(mask))
        p[idx] = pmf / pmf.sum()
        return self.guardrails_.mix(p, mask)

    def choose(self, x: object = None, allowed: Allowed = None,
               rng: np.random.Generator | int | None = None, *,
               segment: str | None = None) -> Choice:
        """Choose from VW's probability mass function over the allowed actions."""
        shared = self._shared(x, where="VWPolicy.choose")
        mask = self.guardrails_.mask(allowed, segment, where="VWPolicy.choose")
        p = self._pmf(shared, mask)
        a = sample_index(p, self._generator(rng))
        return Choice(a, float(p[a]), p)

    def action_probabilities(self, X: object, allowed: Allowed = None, *,
                             segment: str | None = None) -> np.ndarray:
        """VW's probabilities (after the guardrails) for every row of ``X``."""
        rows = [None] if X is None else list(np.asarray(X, dtype=np.float64))
        out = []
        for x in rows:
            shared = self._shared(x, where="VWPolicy.action_probabilities")
            mask = self.guardrails_.mask(allowed, segment,
                                         where="VWPolicy.action_probabilities")
            out.append(self._pmf(shared, mask))
        return np.array(out)

    # -- learning ----------------------------------------------------------------------
    def update(self, x: object, action: int, reward: float,
               propensity: float | None = None) -> None:
        """Learn one reward; ``propensity`` defaults to VW's current probability of it."""
        shared = self._shared(x, where="VWPolicy.update")
        whole = isinstance(action, (int, np.integer)) or (
            isinstance(action, (float, np.floating)) and float(action).is_integer())
        a = int(action) if whole else -1  # 0.9 is no action index (it was read as 0)
        if not 0 <= a < len(self.action_set_) or not np.isfinite(float(reward)) or (
                propensity is not None and not 0 < float(propensity) <= 1):
            raise ConfigError(describe("VWPolicy.update",
                                       f"an action in [0, {len(self.action_set_) - 1}], a "
                                       "finite reward and a propensity in (0, 1]",
                                       f"action {action}, reward {reward}, propensity "
                                       f"{propensity}"))
        if propensity is None:
            propensity = float(self._pmf(shared, np.ones(len(self.action_set_), bool))[a])
        lines = list(self._action_lines)
        lines[a] = f"0:{-float(reward):.9g}:{max(float(propensity), 1e-6):.9g} {lines[a]}"
        self.vw_.learn([shared, *lines])
        self.n_updates_ += 1

    def partial_fit(self, X: object, actions: Sequence[int] | np.ndarray,
                    rewards: Sequence[float] | np.ndarray,
                    propensities: Sequence[float] | np.ndarray | None = None) -> Self:
        """Learn a batch of logged rows, one VW example each."""
        a = np.asarray(actions)
        r = np.asarray(rewards, dtype=np.float64)
        rows = [None] * len(a) if X is None else list(np.asarray(X, dtype=np.float64))
        p = (np.full(len(a), np.nan) if propensities is None
             else np.asarray(propensities, dtype=np.float64))
        if not len(rows) == len(a) == len(r) == len(p):
            raise SchemaError(describe("VWPolicy.fit", "contexts, actions, rewards and "
                                       "propensities of equal length",
                                       f"{len(rows)}, {len(a)}, {len(r)}, {len(p)}"))
        for x, ai, ri, pi in zip(rows, a, r, p, strict=True):
            self.update(x, ai, float(ri), None if np.isnan(pi) else float(pi))
        return self

    def fit(self, X: object, actions: Sequence[int] | np.ndarray,
            rewards: Sequence[float] | np.ndarray,
            propensities: Sequence[float] | np.ndarray | None = None) -> Self:
        """Learn from a log from scratch (a fresh VW workspace)."""
        for name in ("vw_", "action_set_", "guardrails_", "n_features_in_", "n_updates_"):
            self.__dict__.pop(name, None)
        return self.partial_fit(X, actions, rewards, propensities)

    # -- persistence -------------------------------------------------------------------
    def _state_dict(self) -> dict[str, object]:
        if not hasattr(self, "vw_"):
            return {}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.vw"
            self.vw_.save(str(path))
            blob = base64.b64encode(path.read_bytes()).decode("ascii")
        return {"n_features_in": self.n_features_in_, "n_updates": self.n_updates_,
                "model": blob}

    def _load_state(self, state: dict[str, object], *, where: str) -> None:
        if not state:
            return
        self._ensure(int(state["n_features_in"]))  # type: ignore[call-overload]
        try:
            blob = base64.b64decode(str(state["model"]), validate=True)
        except ValueError:
            raise ConfigError(describe(where, "a base64 VW model under state.model",
                                       "something else")) from None
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.vw"
            path.write_bytes(blob)
            self.vw_ = self._workspace(f" -i {path}")
        self.n_updates_ = int(state.get("n_updates", 0))  # type: ignore[call-overload]

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        if "vw_" in state:  # a VW workspace does not pickle: keep its model bytes
            state["vw_"] = self._state_dict()["model"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        model = state.pop("vw_", None)
        self.__dict__.update(state)
        if model is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "model.vw"
                path.write_bytes(base64.b64decode(str(model)))
                self.vw_ = self._workspace(f" -i {path}")
