"""Off-policy evaluation on the Open Bandit Dataset sample, through the real CLI, beside obp.

Each campaign (``all``, ``women``) was logged twice, by a uniform-random policy and by
Bernoulli Thompson sampling (BTS) with the ZOZOTOWN prior. The value of one policy estimated
from the other's log is checked against its on-policy value (the mean click of its own log),
and our doubly robust estimate against Open Bandit Pipeline's, computed here on the same
arrays (obp's DR, logistic regression, 3-fold cross-fitting, as its examples do).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _cli import marketloop

pytestmark = pytest.mark.external

CAMPAIGNS = ("all", "women")


def _folder(shared_data: Path) -> Path:
    folder = shared_data / "open_bandit"
    if not (folder / "prior_bts.yaml").is_file():
        pytest.skip(f"Open Bandit Dataset sample not found in {folder}")
    return folder


def _bts_file(folder: Path, campaign: str, out: Path) -> Path:
    import yaml

    from marketloop.strategy.bandits import BernoulliTS

    prior = yaml.safe_load((folder / "prior_bts.yaml").read_text())[campaign]
    path = out / f"bts-{campaign}.json"
    BernoulliTS.from_prior(prior["alpha"], prior["beta"], len_list=3).save(path)
    return path


def _obp_dr(log_file: Path, target: str, campaign: str) -> float:
    """obp 0.4.1's DR of ``target`` ('bts' or 'random') from the log, as its examples run it."""
    pytest.importorskip("obp")
    from obp.ope import DoublyRobust, RegressionModel
    from obp.policy import BernoulliTS
    from sklearn.linear_model import LogisticRegression

    frame = pd.read_csv(log_file, index_col=0)
    n_items = sum(str(c).startswith("user-item_affinity_") for c in frame.columns)
    n = len(frame)
    if target == "bts":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            policy = BernoulliTS(
                n_items, len_list=3, is_zozotown_prior=True, campaign=campaign, random_state=12345
            )
            dist = policy.compute_batch_action_dist(n_rounds=1, n_sim=100_000)
        dist = np.repeat(dist, n, axis=0)
    else:
        dist = np.full((n, n_items, 3), 1.0 / n_items)
    context = pd.get_dummies(frame.filter(like="user_feature"), drop_first=True).to_numpy(float)
    action, position = frame.item_id.to_numpy(), frame.position.to_numpy() - 1
    reward, pscore = frame.click.to_numpy(), frame.propensity_score.to_numpy()
    model = RegressionModel(
        n_actions=n_items,
        len_list=3,
        base_model=LogisticRegression(max_iter=10_000, random_state=12345),
    )
    q = model.fit_predict(
        context=context,
        action=action,
        reward=reward,
        position=position,
        pscore=pscore,
        action_dist=dist,
        n_folds=3,
        random_state=12345,
    )
    return float(
        DoublyRobust().estimate_policy_value(
            reward=reward,
            action=action,
            position=position,
            pscore=pscore,
            action_dist=dist,
            estimated_rewards_by_reg_model=q,
        )
    )


@pytest.mark.parametrize("campaign", CAMPAIGNS)
@pytest.mark.parametrize(("logged", "target"), [("random", "bts"), ("bts", "random")])
def test_value_from_the_other_policys_log(
    shared_data: Path, tmp_path: Path, campaign: str, logged: str, target: str
) -> None:
    folder = _folder(shared_data)
    log_file = folder / logged / campaign / f"{campaign}.csv.gz"
    truth = float(pd.read_csv(folder / target / campaign / f"{campaign}.csv.gz").click.mean())
    candidate = "uniform" if target == "random" else str(_bts_file(folder, campaign, tmp_path))
    out = marketloop(
        "policy",
        "evaluate",
        "--log",
        str(log_file),
        "--format",
        "obd",
        "--candidate",
        candidate,
        "--json",
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    dr = result["estimates"]["dr"]
    # the published on-policy value of the other policy lies in our interval
    assert dr["ci"][0] <= truth <= dr["ci"][1], (dr, truth)
    ours = abs(dr["value"] - truth) / truth
    peer = abs(_obp_dr(log_file, target, campaign) - truth) / truth
    print(
        f"{campaign} {logged}->{target}: truth {truth:.5f} ours DR {dr['value']:.5f} "
        f"(rel. error {ours:.2f}, lambda {dr['lambda']:.3g}) obp DR rel. error {peer:.2f}"
    )
    assert ours <= peer + 1e-9
    assert result["n_actions"] == {"all": 80, "women": 46}[campaign]  # read from the data
    assert result["logging_value"] == pytest.approx(float(pd.read_csv(log_file).click.mean()))
