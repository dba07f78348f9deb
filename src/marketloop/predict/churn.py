"""Churn: a calibrated gradient-boosted classifier on point-in-time profiles.

Features are the profiles of :func:`marketloop.data.profiles.build_profiles` at a cut-off
``as_of`` (rows strictly before it); the label is :func:`churn_labels` (no paid order in
``[as_of, as_of + horizon_days)``). The booster is LightGBM; probabilities are calibrated on
out-of-fold predictions; :meth:`ChurnModel.contributions` gives exact per-feature SHAP values
of the booster's log-odds (TreeSHAP). :func:`time_split_cv` is rolling-origin validation
with the BG/NBD P(alive) baseline scored on the same folds. See docs/churn.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any, Literal, Self

import ibis.expr.types as ir
import numpy as np
import pandas as pd
from ibis.backends import BaseBackend
from sklearn.base import BaseEstimator

from marketloop._validation import check_fitted, check_frame, check_in_range
from marketloop.data.profiles import build_profiles, parse_as_of, profile_columns
from marketloop.exceptions import ConfigError, SchemaError, describe
from marketloop.predict._labels import churn_labels

__all__ = [
    "PROFILE_FEATURES",
    "ChurnModel",
    "bgnbd_churn_score",
    "churn_labels",
    "profiles_frame",
    "time_split_cv",
]

#: Default model features: every profile column of the default build except the keys.
PROFILE_FEATURES: list[str] = [
    c for c in profile_columns() if c not in ("customer_id", "as_of", "profile_version")
]

_CALIBRATIONS = ("isotonic", "sigmoid")


def profiles_frame(profiles: pd.DataFrame | ir.Table) -> pd.DataFrame:
    """Profiles as a DataFrame indexed by ``customer_id`` and sorted by it."""
    if isinstance(profiles, ir.Table):
        profiles = profiles.to_pandas()
    if isinstance(profiles, pd.DataFrame) and "customer_id" in profiles.columns:
        profiles = profiles.set_index("customer_id")
    return profiles.sort_index()


def _labels(y: pd.Series, index: pd.Index, where: str, name: str) -> np.ndarray:
    if not isinstance(y, pd.Series):
        raise SchemaError(describe(where, f"{name} as a pandas Series indexed by customer_id",
                                   type(y).__name__))
    missing = index.difference(y.index)
    if len(missing):
        raise SchemaError(describe(where, f"a {name} label for every profile row",
                                   f"{len(missing):,} missing, first {missing[0]!r}"))
    values = y.loc[index].to_numpy()
    if not len(values):
        raise SchemaError(describe(where, "at least one profile row to learn from",
                                   "an empty frame"))
    if pd.isna(values).any() or not np.isin(values, (0, 1)).all():
        raise SchemaError(describe(where, f"{name} labels 0 or 1",
                                   f"{pd.unique(values[:1000])[:5].tolist()}"))
    if len(np.unique(values)) < 2:
        raise SchemaError(describe(where, f"both classes in {name}", f"only {values[0]!r}"))
    return values.astype("int64")



#: Fewest customers of each outcome a fit accepts, beyond one per calibration fold: fewer
#: and the calibrated probabilities rest on a handful of customers.
MIN_PER_CLASS = 10


def _check_enough(labels: object, n_splits: int, where: str, label: str) -> None:
    """Refuse a fit with too few customers of either outcome for its calibration folds."""
    labels = pd.Series(np.asarray(labels)).astype(bool)
    counts = labels.value_counts()
    fewest = int(counts.min()) if len(counts) == 2 else 0
    need = max(n_splits, MIN_PER_CLASS)
    if fewest < need:
        found = ", ".join(f"{int(counts.get(v, 0))} with {label} {'yes' if v else 'no'}"
                          for v in (True, False))
        raise SchemaError(describe(
            where, f"at least {need} customers of each outcome ({label} or not) to fit and "
            f"calibrate", f"{len(labels)} customers: {found}",
            "Load more history, choose a later as-of, or a longer horizon."))


class _BoostedClassifier(BaseEstimator):
    """Shared fit/predict of a calibrated LightGBM classifier on profile features."""

    _output: str = "p"
    _label: str = "y"

    # ----- parameters of the booster (small, deterministic) --------------------------------
    def _lightgbm_params(self) -> dict[str, Any]:
        """The settings every LightGBM model here shares: small, one thread, deterministic."""
        return {
            "n_estimators": self.n_estimators,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": 50,
            "random_state": 0 if self.random_state is None else self.random_state,
            "n_jobs": 1,
            "deterministic": True,
            "force_col_wise": True,
            "verbose": -1,
        }

    def _booster(self) -> Any:
        from lightgbm import LGBMClassifier  # heavy import: only when fitting

        return LGBMClassifier(subsample=1.0, colsample_bytree=1.0, **self._lightgbm_params())

    def _check_params(self) -> None:
        check_in_range(self, "n_splits", self.n_splits, low=2)
        check_in_range(self, "n_estimators", self.n_estimators, low=1)
        check_in_range(self, "learning_rate", self.learning_rate, low=1e-6, high=1.0)
        check_in_range(self, "num_leaves", self.num_leaves, low=2)
        if self.calibration not in _CALIBRATIONS:
            raise ConfigError(
                f"The 'calibration' parameter of {type(self).__name__} must be one of "
                f"{', '.join(map(repr, _CALIBRATIONS))}. Got {self.calibration!r} instead."
            )

    def _features(self) -> list[str]:
        return list(PROFILE_FEATURES if self.features is None else self.features)

    def _frame(self, profiles: pd.DataFrame, required: Sequence[str], verb: str) -> pd.DataFrame:
        where = f"{type(self).__name__}.{verb}"
        if isinstance(profiles, pd.DataFrame) and "customer_id" in profiles.columns:
            profiles = profiles.set_index("customer_id")
        X = check_frame(profiles, required=required, where=where)
        return X[list(required)].astype("float64")

    def _fit_classifier(self, profiles: pd.DataFrame, y: pd.Series) -> None:
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.model_selection import StratifiedKFold

        self._check_params()
        X = self._frame(profiles, self._features(), "fit").sort_index()
        labels = _labels(y, X.index, f"{type(self).__name__}.fit", self._label)
        _check_enough(labels, self.n_splits, f"{type(self).__name__}.fit", self._label)
        folds = StratifiedKFold(
            n_splits=self.n_splits,
            shuffle=True,
            random_state=0 if self.random_state is None else self.random_state,
        )
        calibrated = CalibratedClassifierCV(
            self._booster(), method=self.calibration, cv=folds, ensemble=False
        ).fit(X, labels)
        self.calibrated_ = calibrated
        self.booster_ = calibrated.calibrated_classifiers_[0].estimator
        self.feature_names_in_ = list(X.columns)
        self.n_features_in_ = len(self.feature_names_in_)
        self.base_rate_ = float(labels.mean())

    def _proba(self, profiles: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        check_fitted(self)
        X = self._frame(profiles, self.feature_names_in_, "predict")
        if X.empty:  # nobody to score: LightGBM refuses an empty matrix
            return X, np.empty(0)
        return X, self.calibrated_.predict_proba(X)[:, 1]

    def predict(self, profiles: pd.DataFrame) -> pd.Series:
        """Calibrated probability of the label, indexed by ``customer_id``."""
        X, p = self._proba(profiles)
        return pd.Series(p, index=X.index, name=self._output)

    def predict_raw(self, profiles: pd.DataFrame) -> pd.Series:
        """The booster's uncalibrated log-odds (what :meth:`contributions` adds up to)."""
        check_fitted(self)
        X = self._frame(profiles, self.feature_names_in_, "predict_raw")
        raw = self.booster_.predict(X, raw_score=True) if len(X) else np.empty(0)
        return pd.Series(raw, index=X.index, name="log_odds")

    def contributions(self, profiles: pd.DataFrame) -> pd.DataFrame:
        """TreeSHAP contribution of each feature to the booster's log-odds, plus ``bias``.

        Each row sums to :meth:`predict_raw` (before calibration), so a feature's value is
        how far it moves this customer's log-odds from the model's average.
        """
        check_fitted(self)
        X = self._frame(profiles, self.feature_names_in_, "contributions")
        columns = [*self.feature_names_in_, "bias"]
        values = (self.booster_.predict(X, pred_contrib=True) if len(X)
                  else np.empty((0, len(columns))))
        return pd.DataFrame(values, index=X.index, columns=columns)

    def score(self, profiles: pd.DataFrame, y: pd.Series) -> float:
        """ROC AUC of :meth:`predict` against the 0/1 labels ``y``."""
        from sklearn.metrics import roc_auc_score

        p = self.predict(profiles)
        labels = _labels(y, p.index, f"{type(self).__name__}.score", self._label)
        return float(roc_auc_score(labels, p.to_numpy()))


class ChurnModel(_BoostedClassifier):
    """Probability that a customer places no paid order within ``horizon_days`` of ``as_of``.

    Parameters
    ----------
    horizon_days : int, default=90
        Window after ``as_of`` in which any paid order counts as retained; the labels
        (:func:`churn_labels`) must use the same value. Recorded, not used by ``fit``.
    calibration : {"isotonic", "sigmoid"}, default="isotonic"
        Map from the booster's score to a probability, fitted on out-of-fold scores.
    n_splits : int, default=3
        Folds of the stratified cross-fitting that produces those out-of-fold scores.
    n_estimators, learning_rate, num_leaves : int, float, int, default=200, 0.05, 15
        LightGBM settings (``n_jobs=1``, ``deterministic=True``: same seed, same model).
    features : sequence of str or None, default=None
        Profile columns used; None means :data:`PROFILE_FEATURES`.
    random_state : int or None, default=None
        Seed of the booster and of the folds (None acts as 0).

    Attributes
    ----------
    feature_names_in_ : list of str
        Profile columns seen by ``fit``, in order.
    booster_ : lightgbm.LGBMClassifier
        The classifier fitted on all rows (its log-odds are what ``contributions`` explains).
    calibrated_ : sklearn.calibration.CalibratedClassifierCV
        ``booster_`` with its calibration map.
    base_rate_ : float
        Share of churned customers in the training labels.

    Examples
    --------
    >>> from marketloop.simulate import Market
    >>> from marketloop.predict._labels import churn_labels
    >>> import ibis
    >>> shop = Market(n_customers=3000, n_days=240, random_state=0).simulate(full_truth=False)
    >>> tables = {n: ibis.memtable(getattr(shop, n)) for n in ("customers", "orders", "events")}
    >>> X = profiles_frame(build_profiles(tables, as_of="2025-05-01"))
    >>> y = churn_labels(shop.orders, X.index, as_of="2025-05-01", horizon_days=90)
    >>> model = ChurnModel(random_state=0).fit(X, y)
    >>> model.predict(X).name, bool(model.score(X, y) > 0.7)
    ('p_churn', True)
    """

    _output = "p_churn"
    _label = "churned"

    def __init__(
        self,
        horizon_days: int = 90,
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

    def fit(self, profiles: pd.DataFrame, churned: pd.Series) -> Self:
        """Fit on profiles at a cut-off and the churn labels of the window after it."""
        check_in_range(self, "horizon_days", self.horizon_days, low=1)
        self._fit_classifier(profiles, churned)
        return self


def bgnbd_churn_score(
    orders: pd.DataFrame | ir.Table,
    customers: Sequence[str] | pd.Index,
    *,
    as_of: datetime | date | str,
) -> pd.Series:
    """Baseline: ``1 - P(alive)`` of a BG/NBD model fitted on paid orders before ``as_of``.

    Customers without a paid order before ``as_of`` get P(alive) = 1 (just acquired).
    """
    from marketloop.predict.clv import BetaGeoModel, summary_from_transactions

    moment = parse_as_of(as_of)
    if isinstance(orders, ir.Table):
        t = orders.ordered_at
        orders = orders.filter((orders.status == "paid") & (t < moment)).select(
            "customer_id", "ordered_at").to_pandas()
    else:
        check_frame(orders, required=["customer_id", "ordered_at", "status"],
                    where="bgnbd_churn_score(orders)")
        t = pd.to_datetime(orders["ordered_at"])
        orders = orders.loc[(orders["status"] == "paid") & (t < moment),
                            ["customer_id", "ordered_at"]]
    last_day = (pd.Timestamp(moment) - timedelta(microseconds=1)).floor("D")
    summary = summary_from_transactions(orders, calibration_end=last_day)
    alive = BetaGeoModel().fit(summary).probability_alive(summary)
    index = pd.Index(customers, name="customer_id")
    p_alive = alive.reindex(index).fillna(1.0)
    return pd.Series(1.0 - p_alive.to_numpy(), index=index, name="p_churn_bgnbd")


def _tables(source: BaseBackend | Mapping[str, ir.Table]) -> Mapping[str, ir.Table]:
    if isinstance(source, Mapping):
        return source
    return {name: source.table(name) for name in source.list_tables()}


def time_split_cv(
    model: _BoostedClassifier,
    source: BaseBackend | Mapping[str, ir.Table],
    *,
    cutoffs: Sequence[datetime | date | str],
    observed_until: datetime | date | str,
    baseline: bool = True,
) -> pd.DataFrame:
    """Rolling-origin validation: fit at each cut-off ``t``, score at ``t + horizon``.

    For each ``t`` in ``cutoffs`` a clone of ``model`` is fitted on the profiles built at
    ``t`` and the churn labels of ``[t, t + h)``; it is then scored on the profiles built at
    ``t + h`` against the labels of ``[t + h, t + 2h)``, with ``h = model.horizon_days``.
    Training labels end where the test features start, so no fold sees its future.

    Parameters
    ----------
    model : ChurnModel
        Unfitted template (cloned per fold).
    source : ibis connection or mapping of str to ibis.Table
        Canonical tables, as for :func:`build_profiles`.
    cutoffs : sequence of datetime, date or str
        Training cut-offs; each ``t + 2h`` must be at most ``observed_until``.
    observed_until : datetime, date or str
        End of the observed data.
    baseline : bool, default=True
        Also score :func:`bgnbd_churn_score` at ``t + h`` (column ``auc_bgnbd``).

    Returns
    -------
    pandas.DataFrame
        One row per fold: ``train_as_of``, ``test_as_of``, ``n_train``, ``n_test``,
        ``churn_rate`` (test), ``auc`` and, with ``baseline``, ``auc_bgnbd``.
    """
    from sklearn.base import clone
    from sklearn.metrics import roc_auc_score

    if not cutoffs:
        raise ConfigError(describe("time_split_cv(cutoffs)", "at least one cut-off", "none"))
    tables = _tables(source)
    if "orders" not in tables:
        raise SchemaError(describe("time_split_cv(source)", "an orders table",
                                   ", ".join(tables) or "no tables"))
    h = timedelta(days=int(model.horizon_days))
    rows = []
    for cutoff in sorted(parse_as_of(c, where="time_split_cv(cutoffs)") for c in cutoffs):
        test_at = cutoff + h

        def fold(at: datetime) -> tuple[pd.DataFrame, pd.Series]:
            X = profiles_frame(build_profiles(tables, as_of=at))
            y = churn_labels(tables["orders"], X.index, as_of=at,
                             horizon_days=int(model.horizon_days), observed_until=observed_until)
            return X, y

        X_train, y_train = fold(cutoff)
        X_test, y_test = fold(test_at)
        fitted = clone(model).fit(X_train, y_train)
        row = {
            "train_as_of": cutoff,
            "test_as_of": test_at,
            "n_train": len(X_train),
            "n_test": len(X_test),
            "churn_rate": float(y_test.mean()),
            "auc": float(roc_auc_score(y_test, fitted.predict(X_test))),
        }
        if baseline:
            base = bgnbd_churn_score(tables["orders"], X_test.index, as_of=test_at)
            row["auc_bgnbd"] = float(roc_auc_score(y_test, base))
        rows.append(row)
    return pd.DataFrame(rows)

