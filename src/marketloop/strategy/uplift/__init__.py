"""Uplift: who is worth a coupon. Learners of each treatment's effect and their evaluation.

Learners (LightGBM base models by default, binary or continuous outcomes, one or several
treatments against one control): :class:`TLearner`, :class:`XLearner`, :class:`DRLearner`
and the :class:`ClassTransformation` baseline; ``model.save(path)`` and :func:`load_model`.
Evaluation: Qini and uplift curves, Qini coefficient, AUUC and uplift at k as scikit-uplift
defines them, and :func:`evaluate_uplift`, which adds bootstrap intervals and says whether a
ranking beats random ones on the same rows.
"""

from marketloop.strategy.uplift._base import UpliftModel
from marketloop.strategy.uplift._effect_learners import DRLearner, XLearner
from marketloop.strategy.uplift._evaluate import evaluate_arms, evaluate_uplift
from marketloop.strategy.uplift._learners import ClassTransformation, TLearner
from marketloop.strategy.uplift._metrics import (
    auuc,
    qini_coefficient,
    qini_curve,
    uplift_at_k,
    uplift_curve,
)
from marketloop.strategy.uplift._persist import load_model

__all__ = [
    "ClassTransformation",
    "DRLearner",
    "TLearner",
    "UpliftModel",
    "XLearner",
    "auuc",
    "evaluate_arms",
    "evaluate_uplift",
    "load_model",
    "qini_coefficient",
    "qini_curve",
    "uplift_at_k",
    "uplift_curve",
]
