"""Guardrails every contextual policy applies: minimum exploration, forbidden actions, discounts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from marketloop.exceptions import ConfigError, describe
from marketloop.strategy.bandits._base import Allowed, allowed_mask, require_some


class Guardrails:
    """The compiled guardrails of one policy (built from its parameters on first use).

    Parameters
    ----------
    discount : numpy.ndarray of shape (n_actions,)
        Each action's ``discount`` attribute.
    min_exploration : float
        Share of probability spread evenly over the allowed actions, so each keeps at
        least ``min_exploration / n_allowed``.
    forbidden : dict of str to list of int, or None
        Per segment, the actions it must never get.
    max_discount : float or None
        Actions whose discount exceeds it are never chosen.
    where : str
        The owner, for error messages.
    """

    def __init__(self, discount: np.ndarray, *, min_exploration: float,
                 forbidden: Mapping[str, Sequence[int]] | None, max_discount: float | None,
                 where: str) -> None:
        n = len(discount)
        if not 0.0 <= float(min_exploration) <= 1.0:
            raise ConfigError(f"The 'min_exploration' parameter of {where} must be in the "
                              f"range [0, 1]. Got {min_exploration!r} instead.")
        if max_discount is not None and not float(max_discount) >= 0.0:
            raise ConfigError(f"The 'max_discount' parameter of {where} must be None or a "
                              f"share >= 0. Got {max_discount!r} instead.")
        self.min_exploration = float(min_exploration)
        self.base = (np.ones(n, dtype=bool) if max_discount is None
                     else discount <= float(max_discount) + 1e-12)
        if not isinstance(forbidden, Mapping | None):
            raise ConfigError(describe(f"{where} forbidden", "a dict segment -> action indices",
                                       type(forbidden).__name__))
        self.segments: dict[str, np.ndarray] = {}
        for segment, banned in (forbidden or {}).items():
            ban = allowed_mask(list(banned), n, where=f"{where} forbidden[{segment!r}]")
            self.segments[str(segment)] = self.base & ~ban

    def mask(self, allowed: Allowed, segment: str | None, *, where: str) -> np.ndarray:
        """Actions that may be chosen: allowed, not forbidden for the segment, not too deep."""
        mask = self.base if segment is None else self.segments.get(segment, self.base)
        if allowed is not None:
            mask = mask & allowed_mask(allowed, len(mask), where=where)
        require_some(mask, where=where)
        return mask

    def mix(self, probabilities: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``(1 - e) p + e / n_allowed`` on allowed actions (rows of a matrix, or a vector)."""
        e = self.min_exploration
        if e == 0.0:
            return probabilities
        return (1.0 - e) * probabilities + e * (mask / mask.sum())
