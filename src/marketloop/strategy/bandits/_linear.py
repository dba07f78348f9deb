"""What the linear contextual policies share: context handling, learning, acting, saving."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, Self

import numpy as np
import pandas as pd

from marketloop.exceptions import ConfigError, SchemaError, describe
from marketloop.strategy.bandits._actions import ActionSet, Value, as_action_set
from marketloop.strategy.bandits._base import (
    Allowed,
    BasePolicy,
    Choice,
    context_found,
    sample_index,
)
from marketloop.strategy.bandits._guardrails import Guardrails
from marketloop.strategy.bandits._persist import state_array
from marketloop.strategy.bandits._ridge import DisjointRidge, SharedRidge

Actions = int | ActionSet | Sequence[Mapping[str, Value]] | pd.DataFrame
Model = Literal["disjoint", "shared"]
ArrayLike = np.ndarray | pd.DataFrame | Sequence[Sequence[float]]


class LinearPolicy(BasePolicy):
    """Base of :class:`LinUCB`, :class:`LinTS` and :class:`EpsilonGreedy`.

    Subclasses define ``_distribution(z, mask)``: the probabilities before the guardrails'
    minimum exploration is mixed in. Learned state appears on first use (``fit``,
    ``update`` or ``choose``): ``n_features_in_``, ``action_set_``, ``model_``,
    ``guardrails_``, ``n_updates_``.
    """

    # -- set-up ------------------------------------------------------------------------
    def _check_params(self) -> None:
        name = type(self).__name__
        if self.model not in ("disjoint", "shared"):
            raise ConfigError(f"The 'model' parameter of {name} must be 'disjoint' or "
                              f"'shared'. Got {self.model!r} instead.")
        if not float(self.ridge) > 0:
            raise ConfigError(f"The 'ridge' parameter of {name} must be > 0. "
                              f"Got {self.ridge!r} instead.")

    def _ensure(self, n_features: int) -> None:
        if hasattr(self, "model_"):
            return
        self._check_params()
        name = type(self).__name__
        self.action_set_ = as_action_set(self.actions, where=f"{name} actions")
        self.guardrails_ = Guardrails(
            self.action_set_.discount, min_exploration=self.min_exploration,
            forbidden=self.forbidden, max_discount=self.max_discount, where=name)
        self.n_features_in_ = int(n_features)
        dim = self.n_features_in_ + bool(self.fit_intercept)
        if dim == 0:
            raise ConfigError(describe(f"{name}", "context features or fit_intercept=True",
                                       "no feature at all"))
        k, ridge = len(self.action_set_), float(self.ridge)
        self.model_ = (DisjointRidge(k, dim, ridge) if self.model == "disjoint"
                       else SharedRidge(self.action_set_.features, dim, ridge))
        self.n_updates_ = 0

    @property
    def n_actions_(self) -> int:
        """Number of actions."""
        return len(self.action_set_)

    # -- contexts ----------------------------------------------------------------------
    def _matrix(self, X: ArrayLike | None, n_rows: int, *, where: str) -> np.ndarray:
        """Contexts as float64 (n_rows, n_features) with the intercept column prepended."""
        if X is None:
            M = np.zeros((n_rows, 0))
        elif isinstance(X, pd.DataFrame):
            names = getattr(self, "feature_names_in_", None)
            if names is None and not hasattr(self, "model_"):
                self.feature_names_in_ = list(map(str, X.columns))
                names = self.feature_names_in_
            if names is not None:
                missing = [c for c in names if c not in X.columns]
                if missing:
                    raise SchemaError(describe(where, f"context columns {', '.join(names)}",
                                               f"{', '.join(map(str, X.columns))} "
                                               f"({', '.join(missing)} missing)"))
                X = X[names]
            M = X.to_numpy(dtype=np.float64)
        else:
            M = np.asarray(X, dtype=np.float64)
        if M.ndim == 1:
            M = M[:, None] if n_rows == len(M) and n_rows != 1 else M[None, :]
        self._ensure(M.shape[1])
        if M.shape[1] != self.n_features_in_ or not np.isfinite(M).all():
            rows = np.flatnonzero(~np.isfinite(M).all(axis=1)) + 1
            raise SchemaError(describe(where, f"finite contexts of {self.n_features_in_} "
                                       "features", f"shape {M.shape}" + (
                                           "" if not len(rows) else " with NaN/inf in row(s) "
                                           + ", ".join(map(str, rows[:5])))))
        if self.fit_intercept:
            M = np.column_stack([np.ones(len(M)), M])
        return M

    def _vector(self, x: object, *, where: str) -> np.ndarray:
        """One context as the model's vector ``z`` (intercept first)."""
        if isinstance(x, pd.Series) and getattr(self, "feature_names_in_", None):
            x = x[self.feature_names_in_]
        v = np.zeros(0) if x is None else np.asarray(x, dtype=np.float64).ravel()
        self._ensure(len(v))
        if len(v) != self.n_features_in_ or not np.isfinite(v).all():
            # a NaN here would poison the model for good (a Sherman-Morrison update)
            raise SchemaError(describe(where, f"a finite context of {self.n_features_in_} "
                                       "features", context_found(v),
                                       "" if np.isfinite(v).all() else "Impute missing "
                                       "profile values before deciding or learning."))
        if not self.fit_intercept:
            return v
        z = np.empty(len(v) + 1)
        z[0] = 1.0
        z[1:] = v
        return z

    # -- acting ------------------------------------------------------------------------
    def _distribution(self, z: np.ndarray, mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _distribution_batch(self, Z: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.array([self._distribution(z, mask) for z in Z])

    def choose(self, x: object = None, allowed: Allowed = None,
               rng: np.random.Generator | int | None = None, *,
               segment: str | None = None) -> Choice:
        """Choose an action for context ``x`` and report its probability.

        Parameters
        ----------
        x : array-like of shape (n_features,) or None
            The context (profile and session features); None for no features.
        allowed : indices or boolean mask, default=None
            Actions that may be chosen now (eligibility, consent); None allows all.
        rng : numpy.random.Generator, int or None, default=None
            Stream of the draw; None uses the policy's own (seeded by ``random_state``).
        segment : str or None, default=None
            The customer's segment: its ``forbidden`` actions are excluded.

        Returns
        -------
        Choice
            The action, its propensity and the whole distribution (guardrails included).

        Raises
        ------
        PolicyViolation
            If no action is left after ``allowed``, ``forbidden`` and ``max_discount``.
        SchemaError
            If ``x`` has the wrong number of features.
        """
        where = f"{type(self).__name__}.choose"
        z = self._vector(x, where=where)
        mask = self.guardrails_.mask(allowed, segment, where=where)
        p = self.guardrails_.mix(self._distribution(z, mask), mask)
        a = sample_index(p, self._generator(rng))
        return Choice(a, float(p[a]), p)

    def action_probabilities(self, X: ArrayLike | None, allowed: Allowed = None, *,
                             segment: str | None = None) -> np.ndarray:
        """The probability of every action for every context, as :meth:`choose` acts.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_rows, n_features)
            Contexts.
        allowed : indices or boolean mask, default=None
            Actions that may be chosen (the same for every row).
        segment : str or None, default=None
            Segment whose forbidden actions are excluded.

        Returns
        -------
        numpy.ndarray of shape (n_rows, n_actions)
            Rows sum to 1; a deterministic function of the state and ``X``.
        """
        where = f"{type(self).__name__}.action_probabilities"
        n = 1 if X is None else len(X)
        Z = self._matrix(X, n, where=where)
        mask = self.guardrails_.mask(allowed, segment, where=where)
        return self.guardrails_.mix(self._distribution_batch(Z, mask), mask)

    def expected_rewards(self, X: ArrayLike | None) -> np.ndarray:
        """Posterior mean reward of every action for every context, (n_rows, n_actions)."""
        Z = self._matrix(X, 1 if X is None else len(X),
                         where=f"{type(self).__name__}.expected_rewards")
        return self.model_.mean_var_batch(Z)[0]

    # -- learning ----------------------------------------------------------------------
    def update(self, x: object, action: int, reward: float) -> None:
        """Learn one reward: a Sherman-Morrison update of the chosen action's model."""
        where = f"{type(self).__name__}.update"
        z = self._vector(x, where=where)
        a, r = int(action), float(reward)
        if not 0 <= a < self.n_actions_ or not np.isfinite(r):
            raise ConfigError(describe(where, f"an action in [0, {self.n_actions_ - 1}] and "
                                       "a finite reward", f"action {action}, reward {reward}"))
        self.model_.update(z, a, r)
        self.n_updates_ += 1

    def partial_fit(self, X: ArrayLike | None, actions: Sequence[int] | np.ndarray,
                    rewards: Sequence[float] | np.ndarray,
                    propensities: Sequence[float] | np.ndarray | None = None) -> Self:
        """Add a batch of logged ``(context, action, reward)`` rows to the current state.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n, n_features), or None
            Contexts.
        actions : array-like of int, shape (n,)
            Action taken in each row.
        rewards : array-like of float, shape (n,)
            Reward observed.
        propensities : array-like of float in (0, 1], shape (n,), or None
            Probability with which the logging policy took each action; used as
            importance weights ``1 / propensity`` when ``propensity_weighting=True``,
            otherwise only checked.

        Returns
        -------
        LinearPolicy
            ``self``.
        """
        where = f"{type(self).__name__}.fit"
        a = np.asarray(actions)
        r = np.asarray(rewards, dtype=np.float64)
        Z = self._matrix(X, len(a), where=where)
        if a.ndim != 1 or r.shape != a.shape or len(Z) != len(a):
            raise SchemaError(describe(where, "contexts, actions and rewards of equal length",
                                       f"{len(Z)}, {a.shape} and {r.shape}"))
        if a.size and (a.dtype.kind not in "iu" or a.min() < 0 or a.max() >= self.n_actions_):
            raise SchemaError(describe(where, f"action indices in [0, {self.n_actions_ - 1}]",
                                       f"values from {a.min()} to {a.max()} ({a.dtype})"))
        if not np.isfinite(r).all():
            raise SchemaError(describe(where, "finite rewards", "NaN or inf"))
        w = np.ones(len(a))
        if propensities is not None:
            p = np.asarray(propensities, dtype=np.float64)
            if p.shape != a.shape or not ((p > 0) & (p <= 1)).all():
                raise SchemaError(describe(where, "propensities in (0, 1], one per row",
                                           f"shape {p.shape}, range "
                                           f"[{np.min(p, initial=np.inf)}, "
                                           f"{np.max(p, initial=-np.inf)}]"))
            if self.propensity_weighting:
                w = 1.0 / p
        self.model_.add_batch(Z, a.astype(np.int64), r, w)
        self.n_updates_ += len(a)
        return self

    def fit(self, X: ArrayLike | None, actions: Sequence[int] | np.ndarray,
            rewards: Sequence[float] | np.ndarray,
            propensities: Sequence[float] | np.ndarray | None = None) -> Self:
        """Learn from a log from scratch (the prior, then :meth:`partial_fit`)."""
        for name in ("model_", "action_set_", "guardrails_", "n_features_in_",
                     "feature_names_in_", "n_updates_"):
            self.__dict__.pop(name, None)
        self.__dict__.pop("_normals", None)
        return self.partial_fit(X, actions, rewards, propensities)

    # -- persistence -------------------------------------------------------------------
    def _state_dict(self) -> dict[str, object]:
        if not hasattr(self, "model_"):
            return {}
        state: dict[str, object] = dict(self.model_.state())
        state["n_features_in"] = self.n_features_in_
        state["n_updates"] = self.n_updates_
        if getattr(self, "feature_names_in_", None):
            state["feature_names_in"] = self.feature_names_in_
        return state

    def _load_state(self, state: dict[str, object], *, where: str) -> None:
        if not state:
            return
        self._ensure(int(state["n_features_in"]))  # type: ignore[call-overload]
        shapes = {k: v.shape for k, v in self.model_.state().items()}
        arrays = {k: state_array(state, k, shape, where=where) for k, shape in shapes.items()}
        self.model_.load(**arrays)
        self.n_updates_ = int(state.get("n_updates", 0))  # type: ignore[call-overload]
        if "feature_names_in" in state:
            self.feature_names_in_ = list(state["feature_names_in"])  # type: ignore[call-overload]

