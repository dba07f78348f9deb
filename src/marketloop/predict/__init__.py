"""Predictive models on customer histories: customer lifetime value (:mod:`.clv`)."""

from __future__ import annotations

from marketloop.predict.clv import (
    BetaGeoModel,
    ConvergenceError,
    GammaGammaModel,
    ParetoNBDModel,
    summary_from_transactions,
)

__all__ = [
    "BetaGeoModel",
    "ConvergenceError",
    "GammaGammaModel",
    "ParetoNBDModel",
    "summary_from_transactions",
]
