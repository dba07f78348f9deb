"""Off-policy evaluation: what a candidate policy would have earned, from another policy's log.

Estimators (IPS, self-normalised IPS, direct method, doubly robust with shrinkage chosen by
SLOPE) with bootstrap intervals, on marketloop's decisions logs and on Open Bandit Dataset
logs as published, and the promotion gate that never ships a policy the log says is worse.
"""

from marketloop.strategy.ope._estimators import (
    ESTIMATORS,
    Estimate,
    effective_sample_size,
    point_estimates,
    shrink,
    slope_dr,
)
from marketloop.strategy.ope._evaluate import (
    Evaluation,
    UniformPolicy,
    candidate_probabilities,
    evaluate_policy,
    load_candidate,
)
from marketloop.strategy.ope._log import BanditLog, read_log
from marketloop.strategy.ope._reward import RewardModel

__all__ = [
    "ESTIMATORS",
    "BanditLog",
    "Estimate",
    "Evaluation",
    "RewardModel",
    "UniformPolicy",
    "candidate_probabilities",
    "effective_sample_size",
    "evaluate_policy",
    "load_candidate",
    "point_estimates",
    "read_log",
    "shrink",
    "slope_dr",
]
