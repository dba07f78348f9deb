"""Off-policy evaluation on the Open Bandit Dataset sample: marketloop beside obp, one run.

For each campaign (all, women) and direction (BTS from the uniform-random log, uniform from
the BTS log), every estimator's relative error against the on-policy value (the target
policy's own mean click), marketloop's and Open Bandit Pipeline 0.4.1's on the same arrays
(obp: logistic-regression reward model, 3-fold cross-fitting, as its examples run it), and
the time each takes. marketloop's intervals (95%, bootstrap with the reward model refitted)
are printed with whether they cover the on-policy value.

Run: MARKETLOOP_DATA=../shared/data .venv/bin/python bench/bench_ope_obd.py
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from marketloop.strategy.bandits import BernoulliTS
from marketloop.strategy.ope import UniformPolicy, evaluate_policy, read_log


def obp_estimates(frame: pd.DataFrame, dist: np.ndarray) -> dict[str, float]:
    from obp.ope import (
        DirectMethod,
        DoublyRobust,
        InverseProbabilityWeighting,
        OffPolicyEvaluation,
        RegressionModel,
        SelfNormalizedInverseProbabilityWeighting,
    )
    from sklearn.linear_model import LogisticRegression

    n, n_items = dist.shape[0], dist.shape[1]
    context = pd.get_dummies(frame.filter(like="user_feature"), drop_first=True).to_numpy(float)
    feedback = {
        "n_rounds": n,
        "action": frame.item_id.to_numpy(),
        "position": frame.position.to_numpy() - 1,
        "reward": frame.click.to_numpy(),
        "pscore": frame.propensity_score.to_numpy(),
    }
    model = RegressionModel(
        n_actions=n_items,
        len_list=3,
        base_model=LogisticRegression(max_iter=10_000, random_state=12345),
    )
    q = model.fit_predict(
        context=context,
        action=feedback["action"],
        reward=feedback["reward"],
        position=feedback["position"],
        pscore=feedback["pscore"],
        action_dist=dist,
        n_folds=3,
        random_state=12345,
    )
    estimators = [
        InverseProbabilityWeighting(),
        SelfNormalizedInverseProbabilityWeighting(),
        DirectMethod(),
        DoublyRobust(),
    ]
    values = OffPolicyEvaluation(
        bandit_feedback=feedback, ope_estimators=estimators
    ).estimate_policy_values(action_dist=dist, estimated_rewards_by_reg_model=q)
    names = {"ipw": "ips", "snipw": "snips", "dm": "dm", "dr": "dr"}
    return {names[k]: float(v) for k, v in values.items()}


def main() -> None:
    root = Path(os.environ.get("MARKETLOOP_DATA", "../shared/data")) / "open_bandit"
    if not root.is_dir():
        sys.exit(f"no Open Bandit Dataset sample in {root}: set MARKETLOOP_DATA")
    import yaml

    priors = yaml.safe_load((root / "prior_bts.yaml").read_text())
    print(
        f"{'campaign':8} {'direction':14} {'est':5} {'truth':>8} {'ours':>8} {'rel.err':>7} "
        f"{'95% interval':>20} {'covers':>6} {'obp':>8} {'obp err':>7}"
    )
    for campaign in ("all", "women"):
        prior = priors[campaign]
        bts = BernoulliTS.from_prior(prior["alpha"], prior["beta"], len_list=3)
        for logged, target in (("random", "bts"), ("bts", "random")):
            path = root / logged / campaign / f"{campaign}.csv.gz"
            truth = float(pd.read_csv(root / target / campaign / f"{campaign}.csv.gz").click.mean())
            log = read_log(path, "obd")
            candidate = bts if target == "bts" else UniformPolicy(log.n_actions)
            start = time.perf_counter()
            ours = evaluate_policy(log, candidate, n_bootstrap=200)
            ours_s = time.perf_counter() - start
            dist = np.repeat(
                bts.action_dist(1)
                if target == "bts"
                else np.full((1, log.n_actions, 3), 1 / log.n_actions),
                log.n_rounds,
                axis=0,
            )
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                peer = obp_estimates(pd.read_csv(path, index_col=0), dist)
            peer_s = time.perf_counter() - start
            for name, est in ours.estimates.items():
                covers = est.ci[0] <= truth <= est.ci[1]
                print(
                    f"{campaign:8} {logged + '->' + target:14} {name:5} {truth:8.5f} "
                    f"{est.value:8.5f} {abs(est.value - truth) / truth:7.2f} "
                    f"[{est.ci[0]:.5f}, {est.ci[1]:.5f}] {covers!s:>6} {peer[name]:8.5f} "
                    f"{abs(peer[name] - truth) / truth:7.2f}"
                )
            print(
                f"{'':23} ESS of the weights {ours.ess:,.0f} of {log.n_rounds:,}; max weight "
                f"{ours.max_weight:,.0f}; DR lambda {ours.estimates['dr'].info['lambda']:.3g}; "
                f"reward model {ours.reward_model}; "
                f"marketloop {ours_s:.1f}s (200 bootstrap refits), obp {peer_s:.1f}s (point only)"
            )


if __name__ == "__main__":
    main()
