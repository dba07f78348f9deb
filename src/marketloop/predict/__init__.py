"""Predictive models on customer histories: customer lifetime value (:mod:`.clv`)."""

from __future__ import annotations

from marketloop.predict._calibration import expected_calibration_error, reliability_table
from marketloop.predict.churn import (
    ChurnModel,
    bgnbd_churn_score,
    churn_labels,
    profiles_frame,
    time_split_cv,
)
from marketloop.predict.clv import (
    BetaGeoModel,
    ConvergenceError,
    GammaGammaModel,
    ParetoNBDModel,
    summary_from_transactions,
)
from marketloop.predict.next_purchase import NextPurchaseModel, next_purchase_labels

__all__ = [
    "BetaGeoModel",
    "ConvergenceError",
    "GammaGammaModel",
    "ParetoNBDModel",
    "summary_from_transactions",
    "ChurnModel",
    "NextPurchaseModel",
    "bgnbd_churn_score",
    "churn_labels",
    "expected_calibration_error",
    "next_purchase_labels",
    "profiles_frame",
    "reliability_table",
    "time_split_cv",
]
