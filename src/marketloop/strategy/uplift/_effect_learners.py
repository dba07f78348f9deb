"""Learners that regress an imputed effect on the features: the X-learner and the DR-learner."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from marketloop.exceptions import ConfigError, describe
from marketloop.strategy.uplift._base import UpliftModel, default_classifier, predict_outcome

#: Estimated propensities are clipped to this range so that no row's weight explodes.
PROPENSITY_CLIP = (0.01, 0.99)


class _EffectLearner(UpliftModel):
    """Shared parameters and the propensity of an effect-regressing learner."""

    def __init__(
        self,
        base: BaseEstimator | None = None,
        control: object = "control",
        random_state: int | None = None,
        *,
        effect_base: BaseEstimator | None = None,
        propensity: str = "share",
        outcome: str = "auto",
        n_jobs: int | None = 1,
    ) -> None:
        self.base = base
        self.control = control
        self.random_state = random_state
        self.effect_base = effect_base
        self.propensity = propensity
        self.outcome = outcome
        self.n_jobs = n_jobs

    def _check_propensity(self) -> None:
        if self.propensity not in ("share", "model"):
            raise ConfigError(describe(
                f"{type(self).__name__}.propensity", "'share' (a randomised campaign) or "
                "'model' (treatment depended on the features)", repr(self.propensity)))

    def _propensity(self, X: pd.DataFrame, treated: np.ndarray,
                    X_new: pd.DataFrame) -> np.ndarray | float:
        """P(treated | x) on ``X_new``: the arm's share, or a classifier fit on ``X``."""
        if self.propensity == "share":
            return float(treated.mean())
        model = default_classifier(self.random_state, self.n_jobs).fit(X, treated.astype(int))
        return np.clip(model.predict_proba(X_new)[:, 1], *PROPENSITY_CLIP)


class XLearner(_EffectLearner):
    """X-learner: impute each row's effect from the other arm's outcome model, then regress it.

    Stage 1 fits outcome models ``mu_0`` (control) and ``mu_t`` (treatment ``t``). Treated
    rows get ``D = y - mu_0(x)``, control rows ``D = mu_t(x) - y``; stage 2 regresses ``D``
    on ``x`` in each arm (``tau_1``, ``tau_0``) and the effect is
    ``g(x) tau_0(x) + (1 - g(x)) tau_1(x)`` with ``g`` the propensity of treatment ``t``.
    Strong when one arm is much smaller than the other.

    Parameters
    ----------
    base : estimator or None, default=None
        Outcome model (see :class:`TLearner`); ``None`` uses LightGBM.
    control : object, default="control"
        The treatment label of the untreated arm.
    random_state : int or None, default=None
        Seed of the default LightGBM models.
    effect_base : regressor or None, default=None
        Stage-2 regressor of the imputed effects; ``None`` uses LightGBM.
    propensity : {"share", "model"}, default="share"
        ``share``: the arm's share of the rows (a randomised campaign); ``model``: a LightGBM
        classifier of treatment on the features, clipped to [0.01, 0.99].
    outcome : {"auto", "binary", "continuous"}, default="auto"
        ``auto`` takes an outcome whose values are all 0 or 1 as binary.
    n_jobs : int or None, default=1
        Threads of the default LightGBM models.

    Attributes
    ----------
    treatments_ : list
        Treatment labels (control excluded), sorted; the columns of :meth:`predict`.
    outcome_ : str
        ``"binary"`` or ``"continuous"``.
    effect_models_ : list of tuple
        ``(tau_0, tau_1)`` for each label in ``treatments_``.
    propensity_ : list
        For each treatment: the share (float), or the classifier under ``propensity="model"``.

    References
    ----------
    Künzel, Sekhon, Bickel & Yu (2019), "Metalearners for estimating heterogeneous treatment
    effects using machine learning", PNAS 116(10), equations (7)-(9).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(2_000, 3))
    >>> t = rng.choice(["control", "coupon"], size=2_000)
    >>> y = (rng.random(2_000) < 0.2 + 0.2 * (t == "coupon") * (X[:, 0] > 0)).astype(int)
    >>> effect = XLearner(random_state=0).fit(X, t, y).predict(X)["coupon"]
    >>> bool(effect[X[:, 0] > 0].mean() > effect[X[:, 0] <= 0].mean())
    True
    """

    def _fit_arms(self, X: pd.DataFrame, arms: np.ndarray, y: np.ndarray) -> None:
        self._check_propensity()
        binary = self._binary()
        ctrl = np.flatnonzero(arms == 0)
        X0, y0 = X.iloc[ctrl], y[ctrl]
        mu0 = self._model().fit(X0, y0)
        self.effect_models_, self.propensity_ = [], []
        for arm in range(1, len(self.treatments_) + 1):
            trt = np.flatnonzero(arms == arm)
            X1, y1 = X.iloc[trt], y[trt]
            mu1 = self._model().fit(X1, y1)
            d1 = y1 - predict_outcome(mu0, X1, binary=binary)
            d0 = predict_outcome(mu1, X0, binary=binary) - y0
            tau1 = self._model(effect=True).fit(X1, d1)
            tau0 = self._model(effect=True).fit(X0, d0)
            self.effect_models_.append((tau0, tau1))
            both = np.sort(np.concatenate([ctrl, trt]))
            if self.propensity == "share":
                self.propensity_.append(len(trt) / len(both))
            else:
                model = default_classifier(self.random_state, self.n_jobs)
                self.propensity_.append(model.fit(X.iloc[both], (arms[both] == arm).astype(int)))

    def _predict_arms(self, X: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(X), len(self.treatments_)))
        for j, ((tau0, tau1), g) in enumerate(zip(self.effect_models_, self.propensity_,
                                                  strict=True)):
            if not isinstance(g, float):
                g = np.clip(g.predict_proba(X)[:, 1], *PROPENSITY_CLIP)
            out[:, j] = g * tau0.predict(X) + (1.0 - g) * tau1.predict(X)
        return out


class DRLearner(_EffectLearner):
    """Doubly robust (DR-) learner: regress the cross-fitted AIPW pseudo-outcome on features.

    Outcome models ``mu_a`` (and, under ``propensity="model"``, the propensity ``e``) are fit
    on ``n_folds - 1`` folds and predicted on the held-out fold. For treatment ``t`` and the
    rows of ``t`` and control, with ``T`` = 1 for treated rows, the pseudo-outcome

    ``phi = mu_t(x) - mu_0(x) + T (y - mu_t(x)) / e(x) - (1 - T) (y - mu_0(x)) / (1 - e(x))``

    has the true effect as its conditional mean when either the outcome models or ``e`` are
    right; a final regressor of ``phi`` on ``x`` is the effect.

    Parameters
    ----------
    base : estimator or None, default=None
        Outcome model (see :class:`TLearner`); ``None`` uses LightGBM.
    control : object, default="control"
        The treatment label of the untreated arm.
    random_state : int or None, default=None
        Seed of the default LightGBM models and of the fold assignment.
    effect_base : regressor or None, default=None
        Final regressor of the pseudo-outcome; ``None`` uses LightGBM.
    propensity : {"share", "model"}, default="share"
        ``share``: the arm's share of the rows (a randomised campaign); ``model``: a
        cross-fitted LightGBM classifier, clipped to [0.01, 0.99].
    n_folds : int, default=2
        Folds of the cross-fitting (stratified by arm).
    outcome : {"auto", "binary", "continuous"}, default="auto"
        ``auto`` takes an outcome whose values are all 0 or 1 as binary.
    n_jobs : int or None, default=1
        Threads of the default LightGBM models.

    Attributes
    ----------
    treatments_ : list
        Treatment labels (control excluded), sorted; the columns of :meth:`predict`.
    outcome_ : str
        ``"binary"`` or ``"continuous"``.
    effect_models_ : list of estimator
        Final regressor for each label in ``treatments_``.

    References
    ----------
    Kennedy (2023), "Towards optimal doubly robust estimation of heterogeneous causal
    effects", Electronic Journal of Statistics 17(2), the DR-learner.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(2_000, 3))
    >>> t = rng.choice(["control", "coupon"], size=2_000)
    >>> y = (rng.random(2_000) < 0.2 + 0.2 * (t == "coupon") * (X[:, 0] > 0)).astype(int)
    >>> effect = DRLearner(random_state=0).fit(X, t, y).predict(X)["coupon"]
    >>> bool(effect[X[:, 0] > 0].mean() > effect[X[:, 0] <= 0].mean())
    True
    """

    def __init__(
        self,
        base: BaseEstimator | None = None,
        control: object = "control",
        random_state: int | None = None,
        *,
        effect_base: BaseEstimator | None = None,
        propensity: str = "share",
        n_folds: int = 2,
        outcome: str = "auto",
        n_jobs: int | None = 1,
    ) -> None:
        super().__init__(base, control, random_state, effect_base=effect_base,
                         propensity=propensity, outcome=outcome, n_jobs=n_jobs)
        self.n_folds = n_folds

    def _folds(self, arms: np.ndarray) -> np.ndarray:
        """Fold of every row, balanced within each arm."""
        rng = np.random.default_rng(self.random_state)
        folds = np.empty(len(arms), dtype=np.int64)
        for arm in np.unique(arms):
            rows = rng.permutation(np.flatnonzero(arms == arm))
            folds[rows] = np.arange(len(rows)) % self.n_folds
        return folds

    def _fit_arms(self, X: pd.DataFrame, arms: np.ndarray, y: np.ndarray) -> None:
        self._check_propensity()
        if not isinstance(self.n_folds, int | np.integer) or self.n_folds < 2:
            raise ConfigError(f"The 'n_folds' parameter of DRLearner must be an int >= 2. "
                              f"Got {self.n_folds!r} instead.")
        folds = self._folds(arms)
        n_arms = len(self.treatments_) + 1
        mu = np.empty((len(X), n_arms))          # held-out prediction of every arm's outcome
        e = np.empty((len(X), n_arms))           # held-out P(arm j | x, arm in {0, j})
        for k in range(self.n_folds):
            test = np.flatnonzero(folds == k)
            for arm in range(n_arms):
                train = np.flatnonzero((folds != k) & (arms == arm))
                model = self._model().fit(X.iloc[train], y[train])
                mu[test, arm] = predict_outcome(model, X.iloc[test], binary=self._binary())
            if self.propensity == "model":
                for arm in range(1, n_arms):
                    train = np.flatnonzero((folds != k) & ((arms == arm) | (arms == 0)))
                    e[test, arm] = self._propensity(X.iloc[train], arms[train] == arm,
                                                    X.iloc[test])
        self.effect_models_ = []
        for arm in range(1, n_arms):
            rows = np.flatnonzero((arms == arm) | (arms == 0))
            treated = arms[rows] == arm
            p = treated.mean() if self.propensity == "share" else e[rows, arm]
            m1, m0, yr = mu[rows, arm], mu[rows, 0], y[rows]
            phi = m1 - m0 + treated * (yr - m1) / p - (~treated) * (yr - m0) / (1.0 - p)
            self.effect_models_.append(self._model(effect=True).fit(X.iloc[rows], phi))

    def _predict_arms(self, X: pd.DataFrame) -> np.ndarray:
        return np.column_stack([m.predict(X) for m in self.effect_models_])
