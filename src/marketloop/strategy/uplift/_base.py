"""What every uplift learner shares: input checks, feature encoding, base models, ``predict``."""

from __future__ import annotations

import os
import warnings
from typing import Literal, Self

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.base import BaseEstimator, clone

from marketloop._validation import check_fitted, check_frame
from marketloop.exceptions import ConfigError, MarketloopWarning, SchemaError, describe

Outcome = Literal["auto", "binary", "continuous"]
#: LightGBM settings suited to campaign data of a few thousand to a few million rows.
LGBM_DEFAULTS: dict[str, object] = {
    "n_estimators": 200,
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_child_samples": 50,
    "verbose": -1,
}


def default_classifier(random_state: int | None, n_jobs: int | None) -> LGBMClassifier:
    """The default outcome model for a binary outcome."""
    return LGBMClassifier(**LGBM_DEFAULTS, random_state=random_state, n_jobs=n_jobs)


def default_regressor(random_state: int | None, n_jobs: int | None) -> LGBMRegressor:
    """The default outcome model for a continuous outcome, and the default effect model."""
    return LGBMRegressor(**LGBM_DEFAULTS, random_state=random_state, n_jobs=n_jobs)


def predict_outcome(model: BaseEstimator, X: pd.DataFrame, *, binary: bool) -> np.ndarray:
    """Expected outcome: the positive-class probability for a binary outcome, else the mean."""
    if binary and hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(X)[:, 1], dtype=np.float64)
    return np.asarray(model.predict(X), dtype=np.float64)


def _labels(values: object, where: str) -> np.ndarray:
    arr = np.asarray(values, dtype=object)
    if arr.ndim != 1:
        raise SchemaError(describe(where, "a one-dimensional treatment array",
                                   f"shape {arr.shape}"))
    missing = pd.isna(arr)
    if missing.any():
        raise SchemaError(describe(where, "a treatment label on every row",
                                   f"{int(missing.sum())} missing labels (first at row "
                                   f"{int(np.flatnonzero(missing)[0])})",
                                   "Label untreated rows with the control label."))
    return arr


def check_outcome(y: object, n_rows: int, where: str) -> np.ndarray:
    """``y`` as finite float64 of length ``n_rows``, or a :class:`SchemaError` saying why not."""
    try:
        arr = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise SchemaError(describe(where, "a numeric outcome (0/1 or an amount)",
                                   f"values of type {np.asarray(y).dtype}")) from None
    if arr.ndim != 1 or len(arr) != n_rows:
        raise SchemaError(describe(where, f"one outcome per row ({n_rows} rows)",
                                   f"shape {arr.shape}", "Pass X, treatment and y aligned."))
    bad = ~np.isfinite(arr)
    if bad.any():
        raise SchemaError(describe(where, "finite outcomes",
                                   f"{int(bad.sum())} NaN or infinite values (first at row "
                                   f"{int(np.flatnonzero(bad)[0])})",
                                   "Drop those rows or fill the outcome (0 for no order)."))
    return arr


def resolve_outcome(outcome: str, y: np.ndarray, where: str) -> str:
    """``"binary"`` or ``"continuous"``: ``auto`` is binary when every value is 0 or 1."""
    if outcome not in ("auto", "binary", "continuous"):
        raise ConfigError(describe(where, "outcome 'auto', 'binary' or 'continuous'",
                                   repr(outcome)))
    is_binary = bool(np.isin(y, (0.0, 1.0)).all())
    if outcome == "binary" and not is_binary:
        values = np.unique(y[~np.isin(y, (0.0, 1.0))])[:5]
        raise SchemaError(describe(where, "a binary outcome (0/1) as outcome='binary' says",
                                   f"other values such as {values.tolist()}",
                                   "Use outcome='continuous' for amounts."))
    if outcome == "auto":
        return "binary" if is_binary else "continuous"
    return outcome


class UpliftModel(BaseEstimator):
    """Base of the uplift learners: the effect of each treatment against control, per row.

    Subclasses implement ``_fit_arms(X, arms, y)``, where ``arms`` holds the arm index of
    every row (0 for control, ``j + 1`` for ``treatments_[j]``), and ``_predict_arms(X)``,
    which returns an array of shape ``(n_rows, n_treatments)``.

    Attributes
    ----------
    treatments_ : list
        Treatment labels seen by ``fit`` (control excluded), in sorted order; the columns of
        :meth:`predict`.
    outcome_ : str
        ``"binary"`` or ``"continuous"``, as detected or given.
    feature_names_in_ : list of str
        Feature columns seen by ``fit``, in order.
    categories_ : dict of str to list
        Categories of each non-numeric feature, as seen by ``fit``.
    """

    #: Outcomes the learner can model; ClassTransformation allows binary only.
    _outcomes: tuple[str, ...] = ("binary", "continuous")
    #: Rows each arm needs at least.
    _min_rows = 2
    #: Whether an outcome model is fit on each arm's rows alone (not ClassTransformation).
    _models_per_arm = True

    base: BaseEstimator | None
    control: object
    outcome: str
    random_state: int | None
    n_jobs: int | None

    def fit(self, X: pd.DataFrame | np.ndarray, treatment: object, y: object) -> Self:
        """Learn each treatment's effect against control.

        Parameters
        ----------
        X : pandas.DataFrame or numpy.ndarray
            Features, one row per customer (index ``customer_id`` for a frame).
            Non-numeric columns are treated as categories.
        treatment : array-like
            The arm of every row: the control label (``control``) or a treatment label.
        y : array-like
            Outcome: 0/1 (conversion, visit) or an amount (revenue).

        Returns
        -------
        self
        """
        where = f"{type(self).__name__}.fit"
        frame = self._encode(X, where, fitting=True)
        labels = _labels(treatment, where)
        if len(labels) != len(frame):
            raise SchemaError(describe(where, f"one treatment label per row of X ({len(frame)})",
                                       f"{len(labels)} labels", "Pass X, treatment and y aligned."))
        y_arr = check_outcome(y, len(frame), where)
        self.outcome_ = resolve_outcome(self.outcome, y_arr, where)
        if self.outcome_ not in self._outcomes:
            raise ConfigError(describe(where, f"a {' or '.join(self._outcomes)} outcome",
                                       f"a {self.outcome_} outcome",
                                       "Use TLearner, XLearner or DRLearner for amounts."))
        arms, self.treatments_ = self._arms(labels, y_arr, where)
        self._warn_small_arms(arms, where)
        self._fit_arms(frame, arms, y_arr)
        return self

    def _warn_small_arms(self, arms: np.ndarray, where: str) -> None:
        """Warn when an arm is too small for the default LightGBM model to split at all:
        that arm's model then predicts one mean, and the effects rank nobody."""
        if self.base is not None or not self._models_per_arm:
            return
        need = 2 * int(LGBM_DEFAULTS["min_child_samples"])  # type: ignore[call-overload]
        counts = np.bincount(arms, minlength=len(self.treatments_) + 1)
        small = {label: int(n) for label, n in zip([self.control, *self.treatments_], counts,
                                                  strict=True) if n < need}
        if small:
            warnings.warn(
                f"{where}: arms {small} have fewer than {need} rows, the fewest the default "
                "LightGBM models split (min_child_samples=50): their models predict one mean "
                "each, so the effects do not rank customers. Pass base= a model for small "
                "data (e.g. a LogisticRegression) or run a larger test.",
                MarketloopWarning, stacklevel=3)

    def predict(self, X: pd.DataFrame | np.ndarray) -> pd.DataFrame:
        """Estimated effect of each treatment against control, per row.

        Parameters
        ----------
        X : pandas.DataFrame or numpy.ndarray
            Features with the columns seen by ``fit``.

        Returns
        -------
        pandas.DataFrame
            Same index as ``X``; one column per label in ``treatments_``: the difference in
            conversion probability (binary outcome) or in mean outcome (continuous).
        """
        check_fitted(self)
        frame = self._encode(X, f"{type(self).__name__}.predict", fitting=False)
        columns = pd.Index(self.treatments_, name="treatment")
        if len(frame) == 0:  # nobody to score (the base models refuse an empty matrix)
            return pd.DataFrame(np.empty((0, len(columns))), index=frame.index,
                                columns=columns)
        values = self._predict_arms(frame)
        return pd.DataFrame(values, index=frame.index, columns=columns)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted model to ``path``; :func:`load_model` reads it back."""
        from marketloop.strategy.uplift._persist import save_model

        save_model(self, path)

    # -- shared helpers -------------------------------------------------------------------

    def _binary(self) -> bool:
        return self.outcome_ == "binary"

    def _arms(self, labels: np.ndarray, y: np.ndarray, where: str) -> tuple[np.ndarray, list]:
        """Arm index per row (0 = control) and the sorted treatment labels."""
        seen = pd.unique(labels)
        if not any(v == self.control for v in seen):
            raise SchemaError(describe(where, f"control rows labelled {self.control!r}",
                                       f"labels {sorted(map(str, seen))[:10]}",
                                       "Set control= to the label of the untreated arm."))
        treatments = sorted((v for v in seen if v != self.control), key=str)
        if not treatments:
            raise SchemaError(describe(where, "at least one treatment arm besides control",
                                       f"only control rows ({self.control!r})",
                                       "Uplift needs treated and untreated customers."))
        arms = np.zeros(len(labels), dtype=np.int64)
        for j, label in enumerate(treatments, start=1):
            arms[labels == label] = j
        for j, label in enumerate([self.control, *treatments]):
            rows = arms == j
            if rows.sum() < self._min_rows:
                raise SchemaError(describe(where, f"at least {self._min_rows} rows in every arm",
                                           f"{int(rows.sum())} in arm {label!r}"))
            if self.outcome_ == "binary" and np.unique(y[rows]).size < 2:
                raise SchemaError(describe(
                    where, "both outcomes (0 and 1) in every arm",
                    f"only {int(y[rows][0])} in arm {label!r} ({int(rows.sum())} rows)",
                    "Collect more data or merge that arm with another."))
        return arms, treatments

    def _encode(self, X: object, where: str, *, fitting: bool) -> pd.DataFrame:
        """Features as a frame: arrays get columns x0, x1, ...; text columns become categories."""
        if isinstance(X, np.ndarray):
            if X.ndim != 2:
                raise SchemaError(describe(where, "a 2-d feature array", f"shape {X.shape}"))
            X = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
        if fitting:
            frame = check_frame(X, required=(), where=where)
            if frame.shape[1] == 0 or len(frame) == 0:
                raise SchemaError(describe(where, "at least one feature column and one row",
                                           f"shape {frame.shape}"))
            self.feature_names_in_ = [str(c) for c in frame.columns]
            frame = frame.set_axis(self.feature_names_in_, axis=1)
            self.categories_ = {
                c: sorted(pd.unique(frame[c].dropna()), key=str)
                for c in self.feature_names_in_ if not _numeric(frame[c])
            }
        else:
            frame = check_frame(X, required=self.feature_names_in_, where=where)
            frame = frame[self.feature_names_in_]
        out = pd.DataFrame(index=frame.index)
        for c in self.feature_names_in_:
            col = frame[c]
            if c in self.categories_:
                known = col.astype(object)
                known = known.where(known.isin(self.categories_[c]))  # unseen -> missing
                out[c] = pd.Categorical(known, categories=self.categories_[c])
            elif _numeric(col):
                out[c] = col.astype(np.float64)
            else:
                raise SchemaError(describe(where, f"numeric values in column {c!r} as in fit",
                                           f"dtype {col.dtype}"))
        return out

    def _model(self, *, effect: bool = False) -> BaseEstimator:
        """A fresh outcome model (or effect regressor): a clone of ``base`` or the default."""
        base = getattr(self, "effect_base", None) if effect else self.base
        if base is not None:
            return clone(base)
        if effect or not self._binary():
            return default_regressor(self.random_state, self.n_jobs)
        return default_classifier(self.random_state, self.n_jobs)

    def _fit_arms(self, X: pd.DataFrame, arms: np.ndarray, y: np.ndarray) -> None:
        raise NotImplementedError

    def _predict_arms(self, X: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError


def _numeric(col: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col))
