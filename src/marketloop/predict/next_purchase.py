"""Next purchase: whether a customer buys within ``horizon_days``, and when.

Two LightGBM models on the same point-in-time profiles as :mod:`.churn`: a calibrated
classifier for ``P(purchase in [as_of, as_of + horizon))`` and a regressor for the days to
that purchase, trained only on customers who bought in the window (the observed gaps).
The regressor's answer is therefore *conditional* on a purchase in the window; gaps longer
than the horizon are censored and never seen. Labels: :func:`next_purchase_labels`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Self

import numpy as np
import pandas as pd

from marketloop._validation import check_fitted, check_frame, check_in_range
from marketloop.exceptions import SchemaError, describe
from marketloop.predict._labels import next_purchase_labels
from marketloop.predict.churn import _BoostedClassifier

__all__ = ["NextPurchaseModel", "next_purchase_labels"]


class NextPurchaseModel(_BoostedClassifier):
    """Probability of a paid order within ``horizon_days`` and the expected days to it.

    Parameters
    ----------
    horizon_days : int, default=30
        Label window after ``as_of``; the labels must use the same value.
    calibration, n_splits, n_estimators, learning_rate, num_leaves, features, random_state
        As for :class:`marketloop.predict.churn.ChurnModel`.

    Attributes
    ----------
    booster_ : lightgbm.LGBMClassifier
        Purchase-in-window classifier (before calibration).
    calibrated_ : sklearn.calibration.CalibratedClassifierCV
        ``booster_`` with its calibration map.
    regressor_ : lightgbm.LGBMRegressor or None
        Median days from ``as_of`` to the first purchase (absolute-error objective), fitted
        on customers who bought in the window; None when ``days_model_`` is ``"median"``.
    days_model_ : {"lightgbm", "median"}
        What :meth:`expected_days` answers with: the regressor where it beat the constant
        median of the observed gaps in ``n_splits``-fold cross-validation (absolute error),
        else that median. Given a purchase in a short window its timing can be close to
        uniform (as for Poisson buyers), and a regressor then fits noise.
    days_median_ : float
        The median of the observed gaps.
    days_cv_mae_ : dict of str to float
        Cross-validated mean absolute error of ``"lightgbm"`` and ``"median"`` (NaN when
        too few customers bought to hold out ``n_splits`` folds of two).
    feature_names_in_ : list of str
        Profile columns seen by ``fit``.
    """

    _output = "p_purchase"
    _label = "purchased"

    def __init__(
        self,
        horizon_days: int = 30,
        calibration: Literal["isotonic", "sigmoid"] = "isotonic",
        n_splits: int = 3,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        features: Sequence[str] | None = None,
        random_state: int | None = None,
    ) -> None:
        self.horizon_days = horizon_days
        self.calibration = calibration
        self.n_splits = n_splits
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.features = features
        self.random_state = random_state

    def fit(self, profiles: pd.DataFrame, labels: pd.DataFrame) -> Self:
        """Fit on profiles and :func:`next_purchase_labels` (``purchased``, ``days_to_next``)."""
        from lightgbm import LGBMRegressor

        check_in_range(self, "horizon_days", self.horizon_days, low=1)
        where = f"{type(self).__name__}.fit(labels)"
        labels = check_frame(labels, required=["purchased", "days_to_next"], where=where)
        longest = pd.to_numeric(labels["days_to_next"], errors="coerce").max()
        if pd.notna(longest) and longest > self.horizon_days:  # labels of a longer window
            raise SchemaError(describe(
                where, f"labels of the model's window (days_to_next <= horizon_days "
                f"{self.horizon_days})", f"days_to_next up to {float(longest):.4g}",
                "Make the labels with the same horizon_days as the model."))
        self._fit_classifier(profiles, labels["purchased"])
        X = self._frame(profiles, self.feature_names_in_, "fit")
        bought = labels.loc[X.index, "days_to_next"].dropna()
        if len(bought) < 2:
            raise SchemaError(describe(where, "at least 2 customers with a purchase",
                                       f"{len(bought)}"))
        bought = bought.sort_index()
        X_days, y_days = X.loc[bought.index], bought.to_numpy(dtype=float)

        def regressor() -> LGBMRegressor:
            # the conditional median: what an absolute-error score rewards
            return LGBMRegressor(objective="l1", **self._lightgbm_params())

        self.days_median_ = float(np.median(y_days))
        self.days_cv_mae_ = self._days_cv(regressor, X_days, y_days)
        cv = self.days_cv_mae_
        self.days_model_ = "lightgbm" if cv["lightgbm"] < cv["median"] else "median"
        self.regressor_ = (regressor().fit(X_days, y_days) if self.days_model_ == "lightgbm"
                           else None)
        return self

    def _days_cv(self, regressor: Callable[[], Any], X: pd.DataFrame,
                 y: np.ndarray) -> dict[str, float]:
        """Held-out absolute error of the regressor and of the training folds' median."""
        from sklearn.model_selection import KFold

        if len(y) < 2 * self.n_splits:
            return {"lightgbm": float("nan"), "median": float("nan")}
        errors: dict[str, list[np.ndarray]] = {"lightgbm": [], "median": []}
        folds = KFold(self.n_splits, shuffle=True,
                      random_state=self._lightgbm_params()["random_state"])
        for train, test in folds.split(X):
            fitted = regressor().fit(X.iloc[train], y[train])
            errors["lightgbm"].append(np.abs(fitted.predict(X.iloc[test]) - y[test]))
            errors["median"].append(np.abs(np.median(y[train]) - y[test]))
        return {name: float(np.concatenate(e).mean()) for name, e in errors.items()}

    def expected_days(self, profiles: pd.DataFrame) -> pd.Series:
        """Median days from ``as_of`` to the next purchase, given one within the horizon.

        Gaps beyond the horizon are censored, so this is conditional on a purchase in the
        window; combine it with :meth:`predict` for the unconditional picture. The same
        value for everyone when the regressor did not beat the median (``days_model_``).
        """
        check_fitted(self)
        X = self._frame(profiles, self.feature_names_in_, "expected_days")
        # a model pickled before days_model_ existed always answered with its regressor
        if getattr(self, "days_model_", "lightgbm") == "median":
            days = np.full(len(X), self.days_median_)
        else:
            days = self.regressor_.predict(X) if len(X) else np.empty(0)
        days = np.clip(days, 0.0, float(self.horizon_days))
        return pd.Series(days, index=X.index, name="days_to_next")
