"""The reward model of the direct-method and doubly robust estimators, cross-fitted.

A regularised generalised linear model of the reward on the context, the action (one-hot),
the position (one-hot) and, where the log has one, a per-action feature of the row (the
Open Bandit Dataset's user-item affinity, as ``log1p``): logistic for 0/1 rewards, ridge
otherwise. It predicts the reward of *every* action at the row's position, which the
estimators weigh by the candidate policy's probabilities. Predictions for a row always come
from a model that did not see it (K-fold cross-fitting), so the doubly robust correction is
not fitted to its own noise.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold

from marketloop.strategy.ope._log import BanditLog


def _design(log: BanditLog, actions: np.ndarray, interact: bool) -> sparse.csr_matrix:
    n = log.n_rounds
    blocks = [sparse.csr_matrix(log.context)]
    if interact:  # context x action: each action's own slope on every context feature
        d = log.context.shape[1]
        cols = actions[:, None] * d + np.arange(d)[None, :]
        rows = np.repeat(np.arange(n), d)
        blocks.append(
            sparse.csr_matrix((log.context.ravel(), (rows, cols.ravel())), (n, d * log.n_actions))
        )
    blocks.append(sparse.csr_matrix((np.ones(n), (np.arange(n), actions)), (n, log.n_actions)))
    if log.len_list > 1:
        blocks.append(
            sparse.csr_matrix((np.ones(n), (np.arange(n), log.position)), (n, log.len_list))
        )
    if log.action_context is not None:
        blocks.append(sparse.csr_matrix(_action_feature(log)[np.arange(n), actions][:, None]))
    return sparse.hstack(blocks, format="csr")


def _action_feature(log: BanditLog) -> np.ndarray:
    return np.log1p(np.maximum(log.action_context, 0.0))


#: Regularisation strengths tried when ``C="auto"``.
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)


class RewardModel:
    """Expected reward of each action in each logged row.

    Parameters
    ----------
    C : float or "auto", default="auto"
        Inverse regularisation strength (as scikit-learn's); ``"auto"`` picks from
        :data:`C_GRID` (and whether to add context x action terms) by the cross-fitted loss
        on the log itself (log-loss for 0/1 rewards, squared error otherwise).
    n_folds : int, default=3
        Cross-fitting folds; 1 fits and predicts on the same rows.
    max_interactions : int, default=2000
        Context x action interaction terms are considered when there are at most this many
        (contexts x actions); above it the model is additive in context and action.
    random_state : int or None, default=None
        Seed of the fold split.

    Attributes
    ----------
    C_ : float
        The strength used (chosen when ``C="auto"``).
    interactions_ : bool
        Whether context x action terms were used.
    """

    def __init__(
        self,
        C: float | str = "auto",
        n_folds: int = 3,
        max_interactions: int = 2000,
        random_state: int | None = None,
    ) -> None:
        self.C = C
        self.n_folds = n_folds
        self.max_interactions = max_interactions
        self.random_state = random_state

    def _can_interact(self, log: BanditLog) -> bool:
        d = log.context.shape[1]
        return 0 < d * log.n_actions <= self.max_interactions

    def fit_predict(self, log: BanditLog) -> np.ndarray:
        """Cross-fitted predictions, shape (n_rounds, n_actions), at each row's position."""
        if hasattr(self, "C_"):  # chosen before (a bootstrap resample): keep the choice
            return self._cross_fit(log, self.C_, self.interactions_)
        if self.C != "auto":
            self.C_, self.interactions_ = float(self.C), self._can_interact(log)
            return self._cross_fit(log, self.C_, self.interactions_)
        best = None
        for interact in sorted({False, self._can_interact(log)}):
            for c in C_GRID:
                q = self._cross_fit(log, c, interact)
                loss = _loss(log, q[np.arange(log.n_rounds), log.action])
                if best is None or loss < best[0]:
                    best = (loss, c, interact, q)
        _, self.C_, self.interactions_, q = best
        return q

    def fitted_copy(self, n_folds: int) -> RewardModel:
        """A model that keeps this one's choice of ``C`` and interactions (for resamples)."""
        other = RewardModel(self.C_, n_folds, self.max_interactions, self.random_state)
        other.C_, other.interactions_ = self.C_, self.interactions_
        return other

    def _cross_fit(self, log: BanditLog, c: float, interact: bool) -> np.ndarray:
        q = np.zeros((log.n_rounds, log.n_actions))
        if self.n_folds <= 1:
            q[:] = self._predict(
                self._fit(log, np.arange(log.n_rounds), c, interact), log, interact
            )
            return q
        folds = KFold(self.n_folds, shuffle=True, random_state=self.random_state)
        for train, test in folds.split(np.zeros(log.n_rounds)):
            model = self._fit(log, train, c, interact)
            q[test] = self._predict(model, log.take(test), interact)
        return q

    def _fit(
        self, log: BanditLog, rows: np.ndarray, c: float, interact: bool
    ) -> LogisticRegression | Ridge | _Constant:
        part = log.take(rows)
        X = _design(part, part.action, interact)
        if log.binary_reward:
            if np.unique(part.reward).size < 2:  # a fold of no clicks: predict its rate
                return _Constant(float(part.reward.mean()))
            previous = getattr(self, "_previous", None)
            if (
                isinstance(previous, LogisticRegression)
                and previous.n_features_in_ == X.shape[1]
                and previous.C == c
            ):
                model = previous  # warm start: a resample's optimum is near the last one
            else:
                model = LogisticRegression(C=c, max_iter=2000, warm_start=True)
            self._previous = model
        else:
            model = Ridge(alpha=1.0 / c)
        return model.fit(X, part.reward)

    def _predict(self, model: object, log: BanditLog, interact: bool) -> np.ndarray:
        """Predictions for every action: the linear score split into row and action parts."""
        if isinstance(model, _Constant):
            return np.full((log.n_rounds, log.n_actions), model.value)
        coef = np.ravel(model.coef_)
        d, k = log.context.shape[1], log.n_actions
        score = log.context @ coef[:d] + float(np.ravel(model.intercept_)[0])
        at = d
        if interact:
            slopes = coef[at : at + d * k].reshape(k, d)
            score = score[:, None] + log.context @ slopes.T
            at += d * k
        else:
            score = np.repeat(score[:, None], k, axis=1)
        score += coef[at : at + k][None, :]
        at += k
        if log.len_list > 1:
            score += coef[at : at + log.len_list][log.position][:, None]
            at += log.len_list
        if log.action_context is not None:
            score += coef[at] * _action_feature(log)
        if isinstance(model, LogisticRegression):
            return 1.0 / (1.0 + np.exp(-score))
        return score


def _loss(log: BanditLog, predicted: np.ndarray) -> float:
    """Cross-fitted loss of the chosen actions' predictions: log-loss or squared error."""
    if log.binary_reward:
        p = np.clip(predicted, 1e-9, 1 - 1e-9)
        return float(-np.mean(log.reward * np.log(p) + (1 - log.reward) * np.log1p(-p)))
    return float(np.mean((log.reward - predicted) ** 2))


class _Constant:
    def __init__(self, value: float) -> None:
        self.value = value
