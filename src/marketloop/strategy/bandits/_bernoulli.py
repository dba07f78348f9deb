"""Bernoulli Thompson sampling over items, as a context-free slate policy.

:class:`BernoulliTS` keeps a Beta posterior per item and shows, at each round, the
``len_list`` items with the largest posterior draws. :meth:`BernoulliTS.action_dist`
reproduces Open Bandit Pipeline's ``BernoulliTS.compute_batch_action_dist`` (same Monte
Carlo, same random stream), so off-policy estimates on the Open Bandit Dataset agree with
obp's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import numpy as np

from marketloop.exceptions import ConfigError, describe
from marketloop.strategy.bandits._base import (
    Allowed,
    BasePolicy,
    Choice,
    allowed_mask,
    check_int,
    n_rows,
    require_some,
)
from marketloop.strategy.bandits._persist import register, state_array

#: Seed of the cached posterior draws behind ``choose`` and ``action_probabilities``.
MC_SEED = 12345
_CHUNK = 8_192  # rows of draws at a time: bounded memory, same stream as one big draw


def _logged(actions: Sequence[int] | np.ndarray, rewards: Sequence[float] | np.ndarray,
            n_actions: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actions)
    r = np.asarray(rewards, dtype=np.float64)
    if a.ndim != 1 or r.shape != a.shape:
        raise ConfigError(describe(where, "1-d actions and rewards of equal length",
                                   f"shapes {a.shape} and {r.shape}"))
    if a.size and (a.dtype.kind not in "iu" or a.min() < 0 or a.max() >= n_actions):
        raise ConfigError(describe(where, f"action indices in [0, {n_actions - 1}]",
                                   f"values from {a.min()} to {a.max()} ({a.dtype})"))
    if r.size and (not np.isfinite(r).all() or r.min() < 0 or r.max() > 1):
        raise ConfigError(describe(where, "rewards in [0, 1] (a click or a conversion)",
                                   f"values from {r.min()} to {r.max()}"))
    return a.astype(np.int64), r


@register("bernoulli_ts")
class BernoulliTS(BasePolicy):
    """Bernoulli Thompson sampling over items, showing ``len_list`` of them per round.

    Each item ``i`` has a Beta(``alpha_[i]``, ``beta_[i]``) posterior of its reward
    probability, starting at the prior ``(alpha, beta)``; a reward ``r`` in [0, 1] adds
    ``r`` to ``alpha_`` and ``1 - r`` to ``beta_``. A round draws
    ``theta_i ~ Beta(alpha_[i], beta_[i])`` for every item and shows the items by
    decreasing ``theta`` (position 0 first).

    Parameters
    ----------
    n_actions : int
        Number of items.
    len_list : int, default=1
        Slots (positions) per round.
    alpha : array-like of shape (n_actions,) or None, default=None
        Prior successes; None means 1 for every item.
    beta : array-like of shape (n_actions,) or None, default=None
        Prior failures; None means 1 for every item.
    n_sim : int, default=10_000
        Cached posterior draws behind :meth:`choose` and :meth:`action_probabilities`.
    random_state : int or None, default=None
        Seed of :meth:`choose`'s stream when no ``rng`` is passed.

    Attributes
    ----------
    alpha_, beta_ : numpy.ndarray of shape (n_actions,)
        Posterior parameters.
    counts_ : numpy.ndarray of int, shape (n_actions,)
        Rewards learned per item since the prior.
    n_updates_ : int
        Rewards learned since the prior.

    Notes
    -----
    :meth:`choose` picks one of ``n_sim`` cached posterior draws uniformly at random and
    shows its top items. The draws are a function of the state (item ``i``'s column is
    seeded by ``MC_SEED``, ``i`` and its number of updates, and redrawn when it learns).
    The distribution it acts from is therefore exactly the one :meth:`action_probabilities`
    reports, and the logged propensity is exact; it differs from a fresh Thompson draw by
    Monte Carlo error of order ``1/sqrt(n_sim)``.

    References
    ----------
    Saito, Aihara, Matsutani & Narita (2021), "Open Bandit Dataset and Pipeline", NeurIPS
    Datasets and Benchmarks; obp ``obp/policy/contextfree.py``.

    Examples
    --------
    >>> from marketloop.strategy.bandits import BernoulliTS
    >>> policy = BernoulliTS.from_prior([1, 30], [99, 70], len_list=2)
    >>> dist = policy.action_dist(n_rounds=1, n_sim=20_000)
    >>> dist.shape, bool(dist[0, 1, 0] > 0.99)
    ((1, 2, 2), True)
    """

    def __init__(self, n_actions: int, *, len_list: int = 1,
                 alpha: Sequence[float] | np.ndarray | None = None,
                 beta: Sequence[float] | np.ndarray | None = None,
                 n_sim: int = 10_000, random_state: int | None = None) -> None:
        self.n_actions = n_actions
        self.len_list = len_list
        self.alpha = alpha
        self.beta = beta
        self.n_sim = n_sim
        self.random_state = random_state

    @classmethod
    def from_prior(cls, alpha: Sequence[float] | np.ndarray, beta: Sequence[float] | np.ndarray,
                   len_list: int = 1, **params: int | None) -> BernoulliTS:
        """A policy whose prior is Beta(``alpha``, ``beta``), e.g. obp's ZOZOTOWN prior."""
        return cls(len(alpha), len_list=len_list, alpha=np.asarray(alpha, dtype=np.float64),
                   beta=np.asarray(beta, dtype=np.float64), **params)  # type: ignore[arg-type]

    # -- state -------------------------------------------------------------------------
    def _prior(self) -> tuple[np.ndarray, np.ndarray]:
        k = check_int(self, "n_actions", self.n_actions, 1)
        check_int(self, "len_list", self.len_list, 1)
        check_int(self, "n_sim", self.n_sim, 1)
        if self.len_list > k:
            raise ConfigError(f"The 'len_list' parameter of BernoulliTS must be at most "
                              f"n_actions={k}. Got {self.len_list!r} instead.")
        out = []
        for name, value in (("alpha", self.alpha), ("beta", self.beta)):
            arr = np.ones(k) if value is None else np.asarray(value, dtype=np.float64)
            if arr.shape != (k,) or not np.isfinite(arr).all() or (arr <= 0).any():
                raise ConfigError(f"The {name!r} parameter of BernoulliTS must be None or "
                                  f"{k} positive numbers. Got shape {arr.shape} instead.")
            out.append(arr)
        return out[0], out[1]

    def _ensure(self) -> None:
        if not hasattr(self, "alpha_"):
            self.alpha_, self.beta_ = (a.copy() for a in self._prior())
            self.counts_ = np.zeros(len(self.alpha_), dtype=np.int64)
            self.n_updates_ = 0

    def _invalidate(self, items: np.ndarray | None = None) -> None:
        """Mark the cached draws of ``items`` (None: all) as stale."""
        self.__dict__.pop("_top_all", None)
        if items is None:
            self.__dict__.pop("_draws", None)
        elif "_draws" in self.__dict__:
            self._stale = self.__dict__.get("_stale", set()) | {int(i) for i in items}

    # -- learning ----------------------------------------------------------------------
    def fit(self, X: object, actions: Sequence[int] | np.ndarray,
            rewards: Sequence[float] | np.ndarray,
            propensities: Sequence[float] | np.ndarray | None = None) -> Self:
        """Posterior from the prior and a log of ``(item, reward)`` pairs.

        Parameters
        ----------
        X : ignored
            Contexts; a context-free policy does not read them (None is fine).
        actions : array-like of int, shape (n,)
            Item shown (one row per item and position shown).
        rewards : array-like of float in [0, 1], shape (n,)
            Click or conversion of that item.
        propensities : array-like or None, default=None
            Accepted for a common signature; per-item counts need no reweighting.

        Returns
        -------
        BernoulliTS
            ``self``, with ``alpha_``/``beta_`` the prior plus the log's counts.
        """
        for name in ("alpha_", "beta_", "counts_", "n_updates_"):
            self.__dict__.pop(name, None)
        self._invalidate()
        return self.partial_fit(X, actions, rewards, propensities)

    def partial_fit(self, X: object, actions: Sequence[int] | np.ndarray,
                    rewards: Sequence[float] | np.ndarray,
                    propensities: Sequence[float] | np.ndarray | None = None) -> Self:
        """Add a batch of ``(item, reward)`` pairs to the current posterior."""
        self._ensure()
        a, r = _logged(actions, rewards, len(self.alpha_), f"{type(self).__name__}.fit")
        np.add.at(self.alpha_, a, r)
        np.add.at(self.beta_, a, 1.0 - r)
        np.add.at(self.counts_, a, 1)
        self.n_updates_ += len(a)
        self._invalidate(np.unique(a))
        return self

    def update(self, x: object, action: int, reward: float) -> None:
        """Learn one reward of one item (``x`` is ignored)."""
        self.partial_fit(None, [int(action)], [float(reward)])

    # -- acting ------------------------------------------------------------------------
    def _column(self, i: int) -> np.ndarray:
        """``n_sim`` draws of item ``i``'s posterior, seeded by (MC_SEED, i, its updates)."""
        rng = np.random.default_rng([MC_SEED, i, int(self.counts_[i])])
        return rng.beta(self.alpha_[i], self.beta_[i], size=self.n_sim)

    def _cached_draws(self) -> np.ndarray:
        """``n_sim`` posterior draws, shape (n_sim, n_actions), a function of the state.

        An update redraws only the columns of the items it touched.
        """
        self._ensure()
        draws = self.__dict__.get("_draws")
        if draws is None:
            k = len(self.alpha_)
            draws = np.empty((self.n_sim, k))
            for i in range(k):
                draws[:, i] = self._column(i)
            self._draws, self._stale = draws, set()
        for i in self.__dict__.get("_stale", ()):
            draws[:, i] = self._column(i)
        self._stale = set()
        return draws

    def action_probabilities(self, X: object = None, allowed: Allowed = None) -> np.ndarray:
        """Probability that each item is shown at position 0, one row per context.

        Parameters
        ----------
        X : array-like, int or None, default=None
            Contexts (only their number of rows matters) or that number; None is one row.
        allowed : indices or boolean mask, default=None
            Items that may be shown; the others get probability 0.

        Returns
        -------
        numpy.ndarray of shape (n_rows, n_actions)
            Identical rows summing to 1, from the ``n_sim`` cached draws (fixed seed).
        """
        row = self._top_probabilities(self._mask(allowed))
        return np.tile(row, (n_rows(X), 1))

    def _mask(self, allowed: Allowed) -> np.ndarray:
        self._ensure()
        mask = allowed_mask(allowed, len(self.alpha_), where=f"{type(self).__name__}.choose")
        require_some(mask, where=f"{type(self).__name__}.choose")
        return mask

    def _top_probabilities(self, mask: np.ndarray) -> np.ndarray:
        draws = self._cached_draws()
        if mask.all():
            probs = self.__dict__.get("_top_all")
            if probs is None:
                top = np.argmax(draws, axis=1)
                probs = self._top_all = np.bincount(top, minlength=len(mask)) / len(top)
            return probs.copy()
        top = np.argmax(np.where(mask, draws, -np.inf), axis=1)
        return np.bincount(top, minlength=len(mask)) / len(top)

    def choose(self, x: object = None, allowed: Allowed = None,
               rng: np.random.Generator | int | None = None) -> Choice:
        """Show ``len_list`` items: one cached posterior draw's top items among ``allowed``.

        Parameters
        ----------
        x : ignored, default=None
            The context; a context-free policy does not read it.
        allowed : indices or boolean mask, default=None
            Items that may be shown.
        rng : numpy.random.Generator, int or None, default=None
            Stream of the draw; None uses the policy's own (seeded by ``random_state``).

        Returns
        -------
        Choice
            ``action`` is the item at position 0, ``slate`` every item shown,
            ``propensity`` the exact probability of ``action`` at position 0.

        Raises
        ------
        PolicyViolation
            If no item is allowed.
        """
        mask = self._mask(allowed)
        draws = self._cached_draws()
        j = int(self._generator(rng).integers(len(draws)))
        theta = np.where(mask, draws[j], -np.inf)
        n_show = min(self.len_list, int(mask.sum()))
        slate = tuple(int(i) for i in np.argsort(theta)[::-1][:n_show])
        probs = self._top_probabilities(mask)
        return Choice(slate[0], float(probs[slate[0]]), probs, slate)

    def action_dist(self, n_rounds: int = 1, n_sim: int = 100_000,
                    random_state: int = 12345) -> np.ndarray:
        """Probability that item ``i`` is shown at position ``k``, by Monte Carlo.

        The estimate of obp's ``BernoulliTS.compute_batch_action_dist``: ``n_sim``
        rounds, each drawing ``theta ~ Beta(alpha_, beta_)`` from
        ``numpy.random.RandomState(random_state)`` and ranking by ``argsort()[::-1]``;
        the counts per (item, position) over ``n_sim``, repeated for every round (a
        context-free policy acts the same in every round). With the same seed and the
        same posterior it returns obp's numbers to the last bit.

        Parameters
        ----------
        n_rounds : int, default=1
            Size of the first axis.
        n_sim : int, default=100_000
            Monte Carlo rounds; the standard error of a probability ``p`` is
            ``sqrt(p (1 - p) / n_sim)``.
        random_state : int, default=12345
            Seed of the draws.

        Returns
        -------
        numpy.ndarray of shape (n_rounds, n_actions, len_list)
            Each ``[t, :, k]`` sums to 1.
        """
        check_int(self, "n_rounds", n_rounds, 1)
        check_int(self, "n_sim", n_sim, 1)
        self._ensure()
        k = len(self.alpha_)
        counts = np.zeros((k, self.len_list))
        rs = np.random.RandomState(random_state)
        for start in range(0, n_sim, _CHUNK):
            rows = min(_CHUNK, n_sim - start)
            theta = rs.beta(np.broadcast_to(self.alpha_, (rows, k)),
                            np.broadcast_to(self.beta_, (rows, k)))
            top = np.argsort(theta, axis=1)[:, ::-1][:, : self.len_list]
            for pos in range(self.len_list):
                counts[:, pos] += np.bincount(top[:, pos], minlength=k)
        return np.tile(counts / n_sim, (n_rounds, 1, 1))

    # -- persistence -------------------------------------------------------------------
    def _state_dict(self) -> dict[str, object]:
        self._ensure()
        return {"alpha": self.alpha_, "beta": self.beta_, "counts": self.counts_,
                "n_updates": self.n_updates_}

    def _load_state(self, state: dict[str, object], *, where: str) -> None:
        k = len(self._prior()[0])
        self.alpha_ = state_array(state, "alpha", (k,), where=where)
        self.beta_ = state_array(state, "beta", (k,), where=where)
        if (self.alpha_ <= 0).any() or (self.beta_ <= 0).any():
            raise ConfigError(describe(where, "positive alpha and beta", "a value <= 0"))
        self.counts_ = state_array(state, "counts", (k,), where=where).astype(np.int64)
        self.n_updates_ = int(state.get("n_updates", 0))  # type: ignore[call-overload]
