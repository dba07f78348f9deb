"""What every policy shares: the :class:`Choice` it returns, its random stream, its masks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from sklearn.base import BaseEstimator

from marketloop.exceptions import ConfigError, PolicyViolation, describe

if TYPE_CHECKING:
    from os import PathLike

#: Allowed actions: indices, or a boolean mask over all actions; None allows every action.
Allowed = Sequence[int] | np.ndarray | None


@dataclass(frozen=True)
class Choice:
    """One decision: the action, the probability it had, and the whole distribution.

    Parameters
    ----------
    action : int
        Index of the chosen action in the policy's action set.
    propensity : float
        Probability that the policy chose ``action`` given its state and the context; the
        figure to log for off-policy evaluation.
    probabilities : numpy.ndarray
        Probability of every action (shape ``(n_actions,)``, sums to 1); zero for actions
        that were not allowed.
    slate : tuple of int, default=()
        For slate policies (``len_list > 1``), the actions shown, position 0 first;
        ``slate[0] == action``.
    """

    action: int
    propensity: float
    probabilities: np.ndarray = field(repr=False)
    slate: tuple[int, ...] = ()


def as_generator(rng: np.random.Generator | int | None, default: np.random.Generator
                 ) -> np.random.Generator:
    """``rng`` as a Generator: a Generator is used as is, an int seeds one, None -> ``default``."""
    if rng is None:
        return default
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def allowed_mask(allowed: Allowed, n_actions: int, *, where: str) -> np.ndarray:
    """Boolean mask of shape ``(n_actions,)`` from indices or a mask; None allows all."""
    if allowed is None:
        return np.ones(n_actions, dtype=bool)
    arr = np.asarray(allowed)
    if arr.dtype == bool:
        if arr.shape != (n_actions,):
            raise ConfigError(describe(where, f"a boolean mask of shape ({n_actions},)",
                                       f"shape {arr.shape}"))
        return arr.copy()
    if arr.size and (arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() >= n_actions):
        raise ConfigError(describe(where, f"action indices in [0, {n_actions - 1}]",
                                   f"{arr.tolist()[:10]}"))
    mask = np.zeros(n_actions, dtype=bool)
    mask[arr.astype(np.int64)] = True
    return mask


def require_some(mask: np.ndarray, *, where: str) -> None:
    """Raise :class:`PolicyViolation` when no action is left to choose from."""
    if not mask.any():
        raise PolicyViolation(describe(
            where, "at least one allowed action", "none left after `allowed`, the "
            "segment's forbidden actions and `max_discount`",
            "Allow more actions or relax the guardrails."))


def check_int(owner: object, name: str, value: object, low: int) -> int:
    """``value`` as an int >= ``low``, or the parameter's :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(
            f"The {name!r} parameter of {type(owner).__name__} must be an int >= {low}. "
            f"Got {value!r} instead.")
    return int(value)


def n_rows(X: object) -> int:
    """Rows of a context matrix; a context-free policy only needs the count."""
    if X is None:
        return 1
    if isinstance(X, int | np.integer):
        return int(X)
    return len(X)  # type: ignore[arg-type]


def sample_index(probabilities: np.ndarray, rng: np.random.Generator) -> int:
    """Draw one index from ``probabilities`` (inverse CDF on a single uniform)."""
    cdf = probabilities.cumsum()
    i = int(cdf.searchsorted(rng.random() * cdf[-1], side="right"))
    # guard against a uniform that lands on the exact top of the CDF
    return min(i, len(probabilities) - 1)


def tie_split(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Greedy distribution: the best allowed score(s), ties sharing the mass equally."""
    masked = np.where(mask, scores, -np.inf)
    best = masked[masked.argmax()]
    tol = 1e-12 * (1.0 + abs(best)) if np.isfinite(best) else 0.0
    top = masked >= best - tol
    return top / np.count_nonzero(top)


class BasePolicy(BaseEstimator):  # type: ignore[misc]
    """Shared plumbing: a lazily created random stream and JSON persistence.

    Subclasses implement ``_state_dict``/``_load_state`` for :meth:`save` and
    :func:`~marketloop.strategy.bandits.load_policy`, and set ``_kind``.
    """

    _kind: str = ""

    def _generator(self, rng: np.random.Generator | int | None) -> np.random.Generator:
        if rng is not None:
            return as_generator(rng, np.random.default_rng())
        if not hasattr(self, "rng_"):
            self.rng_ = np.random.default_rng(self.random_state)
        return self.rng_

    def save(self, path: str | PathLike[str]) -> None:
        """Write the policy (parameters and learned state) to a JSON file.

        The file holds ``"format": "marketloop-policy"``, a ``"version"``, the policy's
        ``"kind"``, its ``"params"`` and its ``"state"``; read it back with
        :func:`~marketloop.strategy.bandits.load_policy`.
        """
        from marketloop.strategy.bandits._persist import save_policy

        save_policy(self, path)

    def _state_dict(self) -> dict[str, object]:
        raise NotImplementedError

    def _load_state(self, state: dict[str, object], *, where: str) -> None:
        raise NotImplementedError

    def _params_dict(self) -> dict[str, object]:
        return dict(self.get_params(deep=False))


def context_found(v: np.ndarray) -> str:
    """What a context vector holds, for an error: its length and any non-finite values."""
    bad = np.flatnonzero(~np.isfinite(v))
    if not len(bad):
        return f"{len(v)} features"
    return (f"{len(v)} features, non-finite at position(s) "
            f"{', '.join(str(i) for i in bad[:5])} ({', '.join(str(v[i]) for i in bad[:5])})")
