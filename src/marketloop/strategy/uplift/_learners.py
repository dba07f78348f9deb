"""The two-model (T-) learner and the class-transformation baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from marketloop._validation import check_fitted
from marketloop.strategy.uplift._base import UpliftModel, predict_outcome


class TLearner(UpliftModel):
    """Two-model (T-) learner: one outcome model per arm; effect = treated minus control.

    For every arm ``a`` (control and each treatment) a model of ``E[y | x, arm = a]`` is fit
    on that arm's rows only; the effect of treatment ``t`` is ``mu_t(x) - mu_control(x)``.
    With a single treatment and the same base model this is scikit-uplift's
    ``TwoModels(method="vanilla")``.

    Parameters
    ----------
    base : estimator or None, default=None
        Outcome model, cloned for every arm: a classifier with ``predict_proba`` for a binary
        outcome, a regressor for a continuous one. ``None`` uses LightGBM
        (200 trees, learning rate 0.05, 15 leaves, at least 50 rows per leaf).
    control : object, default="control"
        The treatment label of the untreated arm.
    random_state : int or None, default=None
        Seed of the default LightGBM models.
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
    models_ : list of estimator
        Outcome model of control, then of each label in ``treatments_``.

    References
    ----------
    Künzel, Sekhon, Bickel & Yu (2019), "Metalearners for estimating heterogeneous treatment
    effects using machine learning", PNAS 116(10), the T-learner.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(2_000, 3))
    >>> t = rng.choice(["control", "coupon"], size=2_000)
    >>> y = (rng.random(2_000) < 0.2 + 0.2 * (t == "coupon") * (X[:, 0] > 0)).astype(int)
    >>> effect = TLearner(random_state=0).fit(X, t, y).predict(X)["coupon"]
    >>> bool(effect[X[:, 0] > 0].mean() > effect[X[:, 0] <= 0].mean())
    True
    """

    def __init__(
        self,
        base: BaseEstimator | None = None,
        control: object = "control",
        random_state: int | None = None,
        *,
        outcome: str = "auto",
        n_jobs: int | None = 1,
    ) -> None:
        self.base = base
        self.control = control
        self.random_state = random_state
        self.outcome = outcome
        self.n_jobs = n_jobs

    def _fit_arms(self, X: pd.DataFrame, arms: np.ndarray, y: np.ndarray) -> None:
        self.models_ = []
        for arm in range(len(self.treatments_) + 1):
            rows = np.flatnonzero(arms == arm)
            self.models_.append(self._model().fit(X.iloc[rows], y[rows]))

    def _predict_arms(self, X: pd.DataFrame) -> np.ndarray:
        mu = [predict_outcome(m, X, binary=self._binary()) for m in self.models_]
        return np.column_stack([m - mu[0] for m in mu[1:]])

    def control_outcome(self, X: pd.DataFrame | np.ndarray) -> pd.Series:
        """Expected outcome without treatment (the control arm's model), per row.

        For a binary outcome, P(convert | no contact): what a plan needs to price the
        discount paid on orders that would have happened anyway.
        """
        check_fitted(self)
        frame = self._encode(X, f"{type(self).__name__}.control_outcome", fitting=False)
        values = predict_outcome(self.models_[0], frame, binary=self._binary())
        return pd.Series(values, index=frame.index, name="control_outcome")


class ClassTransformation(UpliftModel):
    """Class-transformation baseline (Jaskowski & Jaroszewicz): one classifier per treatment.

    For treatment ``t`` against control, the target ``z = 1`` when a treated customer
    converted or an untreated one did not; with treated and control equally weighted,
    ``uplift(x) = 2 P(z = 1 | x) - 1``. Binary outcomes only. With ``balance=False`` and a
    single treatment this is scikit-uplift's ``ClassTransformation``, which is exact only
    when the two arms are equally large.

    Parameters
    ----------
    base : classifier or None, default=None
        Classifier of ``z`` with ``predict_proba``, cloned per treatment; ``None`` uses the
        default LightGBM classifier (see :class:`TLearner`).
    control : object, default="control"
        The treatment label of the untreated arm.
    random_state : int or None, default=None
        Seed of the default LightGBM models.
    balance : bool, default=True
        Weight rows so that treated and control rows carry equal total weight, which keeps
        ``2 P(z = 1 | x) - 1`` unbiased when the arms differ in size (``sample_weight``).
    n_jobs : int or None, default=1
        Threads of the default LightGBM models.

    Attributes
    ----------
    treatments_ : list
        Treatment labels (control excluded), sorted; the columns of :meth:`predict`.
    outcome_ : str
        Always ``"binary"``.
    models_ : list of estimator
        Classifier of ``z`` for each label in ``treatments_``.

    References
    ----------
    Jaskowski & Jaroszewicz (2012), "Uplift modeling for clinical trial data", ICML Workshop
    on Clinical Data Analysis.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(4_000, 3))
    >>> t = rng.choice(["control", "coupon"], size=4_000)
    >>> y = (rng.random(4_000) < 0.2 + 0.3 * (t == "coupon") * (X[:, 0] > 0)).astype(int)
    >>> effect = ClassTransformation(random_state=0).fit(X, t, y).predict(X)["coupon"]
    >>> bool(effect[X[:, 0] > 0].mean() > effect[X[:, 0] <= 0].mean())
    True
    """

    outcome = "auto"  # detected; anything but 0/1 is refused with a hint
    _outcomes = ("binary",)
    _models_per_arm = False  # one model on every row's transformed outcome

    def __init__(
        self,
        base: BaseEstimator | None = None,
        control: object = "control",
        random_state: int | None = None,
        *,
        balance: bool = True,
        n_jobs: int | None = 1,
    ) -> None:
        self.base = base
        self.control = control
        self.random_state = random_state
        self.balance = balance
        self.n_jobs = n_jobs

    def _fit_arms(self, X: pd.DataFrame, arms: np.ndarray, y: np.ndarray) -> None:
        self.models_ = []
        for arm in range(1, len(self.treatments_) + 1):
            rows = np.flatnonzero((arms == arm) | (arms == 0))
            treated = arms[rows] == arm
            z = np.where(treated, y[rows], 1.0 - y[rows]).astype(np.int64)
            model = self._model()
            if self.balance:
                n, n_treated = len(rows), int(treated.sum())
                weight = np.where(treated, n / (2 * n_treated), n / (2 * (n - n_treated)))
                model.fit(X.iloc[rows], z, sample_weight=weight)
            else:
                model.fit(X.iloc[rows], z)
            self.models_.append(model)

    def _predict_arms(self, X: pd.DataFrame) -> np.ndarray:
        return np.column_stack([2.0 * m.predict_proba(X)[:, 1] - 1.0 for m in self.models_])
