"""Calibrating an uplift model's effects on its own randomised test, by cross-fitting.

An uplift model fit on a few thousand rows per arm spreads its estimates far wider than
the true effects; a plan that takes the largest estimates takes mostly noise (the
winner's curse), and across arms the levels are off. The best linear predictor of the true
effect given the estimate (Chernozhukov, Demirer, Duflo & Fernández-Val 2018, "Generic
machine learning inference on heterogeneous treatment effects"), fit on out-of-fold
estimates, fixes both: per arm, with ``S`` the out-of-fold estimate and ``e`` the arm's
share of its rows with control,

    y ~ a + b (S - mean S) + beta1 (T - e) + beta2 (T - e)(S - mean S),

``beta1`` is the arm's average effect and ``beta2`` how much of the estimated variation is
real (1: all of it, 0: none). The calibrated effect is ``beta1 + clip(beta2, 0, 1) (S -
mean S)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone

from marketloop.exceptions import ConfigError, describe


@dataclass(frozen=True)
class Calibration:
    """Per treatment label: average effect, heterogeneity loading, mean out-of-fold estimate."""

    ate: dict[str, float]
    slope: dict[str, float]
    centre: dict[str, float]

    def apply(self, effects: pd.DataFrame) -> pd.DataFrame:
        """Calibrated effects: ``ate + clip(slope, 0, 1) * (estimate - centre)`` per column."""
        out = effects.copy()
        for label in effects.columns:
            key = str(label)
            out[label] = self.ate[key] + min(max(self.slope[key], 0.0), 1.0) * (
                effects[label].to_numpy(dtype=np.float64) - self.centre[key])
        return out


def cross_fitted_blp(learner: BaseEstimator, X: pd.DataFrame, arm: np.ndarray, y: np.ndarray,
                     *, control: str = "control", n_folds: int = 2,
                     random_state: int | None = 0) -> Calibration:
    """Out-of-fold estimates by ``n_folds`` refits of ``learner``, then the BLP per arm."""
    if n_folds < 2:
        raise ConfigError(describe("n_folds", "at least 2 folds", str(n_folds)))
    fold = np.random.default_rng(random_state).integers(0, n_folds, len(X))
    oof: pd.DataFrame | None = None
    for k in range(n_folds):
        model = clone(learner).fit(X[fold != k], arm[fold != k], y[fold != k])
        pred = model.predict(X[fold == k])
        pred = pred.set_axis([str(c) for c in pred.columns], axis=1)
        if oof is None:
            oof = pd.DataFrame(np.nan, index=X.index, columns=pred.columns)
        oof.loc[pred.index, pred.columns] = pred.to_numpy()
    if oof is None:  # pragma: no cover - n_folds >= 2 always fits once
        raise ConfigError(describe("cross_fitted_blp", "at least one fold", "none"))
    ate, slope, centre = {}, {}, {}
    is_control = arm == control
    for label in oof.columns:
        rows = is_control | (arm == label)
        s = oof[label].to_numpy()[rows]
        t = (arm[rows] == label).astype(np.float64)
        sc = s - s.mean()
        tc = t - t.mean()
        design = np.column_stack([np.ones(rows.sum()), sc, tc, tc * sc])
        beta = np.linalg.lstsq(design, y[rows].astype(np.float64), rcond=None)[0]
        ate[label], slope[label], centre[label] = float(beta[2]), float(beta[3]), float(s.mean())
    return Calibration(ate, slope, centre)
