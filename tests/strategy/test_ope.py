"""Off-policy evaluation on logs whose true policy values are known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from _cli import marketloop
from marketloop.strategy.ope import (
    BanditLog,
    UniformPolicy,
    effective_sample_size,
    evaluate_policy,
    read_log,
    shrink,
    slope_dr,
)

K, D = 5, 3


def _mu(x: np.ndarray) -> np.ndarray:
    """True click probability of every action: a logistic model the reward model can learn."""
    theta = np.array(
        [[1.0, -0.5, 0.2], [-0.8, 0.9, 0.0], [0.3, 0.3, -1.0], [0.0, 0.0, 0.0], [-1.2, -0.4, 0.8]]
    )
    bias = np.array([-2.0, -1.6, -2.4, -1.8, -1.4])
    return 1.0 / (1.0 + np.exp(-(x @ theta.T + bias)))


def simulated_log(n: int, seed: int) -> tuple[pd.DataFrame, float, float]:
    """A decisions log of a softmax logging policy; true values of uniform and of logging."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D))
    logits = 0.6 * x @ rng.normal(size=(D, K))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    a = (rng.random(n)[:, None] > np.cumsum(p, 1)).sum(1)
    mu = _mu(x)
    r = (rng.random(n) < mu[np.arange(n), a]).astype(float)
    frame = pd.DataFrame({"action": a, "reward": r, "propensity": p[np.arange(n), a]})
    for j in range(D):
        frame[f"x{j}"] = x[:, j]
    return frame, float(mu.mean()), float((p * mu).sum(1).mean())


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> tuple[Path, float, float]:
    frame, uniform_value, logging_value = simulated_log(6000, seed=3)
    path = tmp_path_factory.mktemp("ope") / "decisions.csv"
    frame.to_csv(path, index=False)
    return path, uniform_value, logging_value


def test_every_estimator_covers_the_true_value_of_uniform(logged) -> None:
    path, truth, _ = logged
    log = read_log(path)
    assert (log.n_actions, log.len_list, log.context.shape[1]) == (K, 1, D)
    result = evaluate_policy(log, UniformPolicy(K), n_bootstrap=60, random_state=1)
    for name, est in result.estimates.items():
        assert est.ci[0] <= truth <= est.ci[1], (name, est, truth)
    # the reward model is well specified here, so DR and DM are close to the truth
    assert result.estimates["dr"].value == pytest.approx(truth, rel=0.08)
    assert result.estimates["dm"].value == pytest.approx(truth, rel=0.08)
    assert 0 < result.ess < log.n_rounds


def test_ips_is_unbiased_over_many_logs() -> None:
    """Averaged over 40 independent logs, IPS lands on the truth (it is unbiased)."""
    values, truths = [], []
    for seed in range(40):
        frame, truth, _ = simulated_log(1500, seed=100 + seed)
        pi = 1.0 / K
        values.append(float(np.mean(pi / frame.propensity * frame.reward)))
        truths.append(truth)
    err = np.mean(values) - np.mean(truths)
    assert abs(err) < 3 * np.std(values) / np.sqrt(len(values))


def test_evaluating_the_logging_policy_itself_gives_its_mean_reward(logged) -> None:
    path, _, logging_value = logged
    log = read_log(path)

    class Logged:  # the logging policy: its own propensities in every row
        def action_probabilities(self, X: np.ndarray) -> np.ndarray:
            frame = pd.read_csv(path)
            rng = np.random.default_rng(3)
            x = rng.normal(size=(len(frame), D))
            logits = 0.6 * x @ rng.normal(size=(D, K))
            p = np.exp(logits - logits.max(1, keepdims=True))
            return p / p.sum(1, keepdims=True)

    result = evaluate_policy(log, Logged(), n_bootstrap=20, random_state=0)
    # weights are all 1: IPS and SNIPS are the logged mean reward exactly
    assert result.estimates["ips"].value == pytest.approx(result.logging_value)
    assert result.estimates["snips"].value == pytest.approx(result.logging_value)
    assert result.ess == pytest.approx(log.n_rounds)
    assert result.logging_ci[0] <= logging_value <= result.logging_ci[1]
    assert not result.promote  # a policy is never better than itself


def test_slope_keeps_plain_dr_when_weights_are_harmless() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    w = np.ones(n)
    r = rng.random(n) < 0.3
    q = np.full(n, 0.1)  # a badly biased model: DR must correct it, not shrink to DM
    lam, value = slope_dr(r.astype(float), w, q, q)
    assert np.isinf(lam) or lam > 10
    assert value == pytest.approx(r.mean(), abs=0.01)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, st.integers(1, 50), elements=st.floats(0, 1e4)),
    st.floats(1e-6, 1e6),
)
def test_shrinkage_never_grows_a_weight_and_ess_is_bounded(w: np.ndarray, lam: float) -> None:
    shrunk = shrink(w, lam)
    assert np.all(shrunk <= w + 1e-12) and np.all(shrunk >= 0)
    assert np.array_equal(shrink(w, np.inf), w)
    ess = effective_sample_size(w)
    assert 0 <= ess <= len(w) + 1e-9


def test_cli_json_keys_and_gate(logged) -> None:
    path, truth, _ = logged
    out = marketloop(
        "policy",
        "evaluate",
        "--log",
        str(path),
        "--candidate",
        "uniform",
        "--n-bootstrap",
        "30",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result["estimates"]) == {"ips", "snips", "dm", "dr"}
    for est in result["estimates"].values():
        assert est["ci"][0] <= est["value"] <= est["ci"][1]
    assert isinstance(result["logging_value"], float)
    assert result["promote"] == (result["estimates"]["dr"]["ci"][0] > result["logging_value"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="propensity"), "no propensity"),
        (lambda f: f.assign(propensity=f.propensity.where(f.index != 4, 0.0)), "row 5"),
        (lambda f: f.assign(propensity=f.propensity.where(f.index != 2, None)), "row 3"),
        (lambda f: f.assign(action=f.action.where(f.index != 0, -1)), "row 1"),
    ],
)
def test_cli_refuses_logs_it_cannot_evaluate(logged, tmp_path: Path, change, message) -> None:
    path, _, _ = logged
    bad = tmp_path / "bad.csv"
    change(pd.read_csv(path).head(200)).to_csv(bad, index=False)
    out = marketloop("policy", "evaluate", "--log", str(bad), "--candidate", "uniform")
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_actions_unknown_to_the_candidate_are_named(logged) -> None:
    path, _, _ = logged
    log = read_log(path)

    class Narrow:  # knows only actions 0-2
        def action_probabilities(self, X: np.ndarray) -> np.ndarray:
            return np.full((len(X), 3), 1 / 3)

    from marketloop.exceptions import SchemaError

    with pytest.raises(SchemaError, match="actions the candidate knows"):
        evaluate_policy(log, Narrow(), n_bootstrap=10)


def test_a_log_that_is_not_a_table_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "log.csv.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00 truncated")
    out = marketloop("policy", "evaluate", "--log", str(bad), "--candidate", "uniform")
    assert out.returncode == 2 and "log.csv.gz" in out.stderr, out.stderr


def test_bandit_log_take_keeps_shapes() -> None:
    log = BanditLog(
        np.array([0, 1]),
        np.array([1.0, 0.0]),
        np.array([0.5, 0.5]),
        np.zeros(2, int),
        np.zeros((2, 0)),
        None,
        2,
        1,
    )
    part = log.take(np.array([1, 1, 0]))
    assert part.n_rounds == 3 and part.action.tolist() == [1, 1, 0]


def test_cli_names_logged_actions_a_saved_policy_does_not_know(logged, tmp_path: Path) -> None:
    from marketloop.strategy.bandits import LinUCB

    path, _, _ = logged
    policy = LinUCB(3, alpha=1.0)  # three actions; the log has five
    frame = pd.read_csv(path).head(300)
    X = frame[[f"x{j}" for j in range(D)]].to_numpy()
    keep = frame.action < 3
    policy.fit(X[keep], frame.action[keep].to_numpy(), frame.reward[keep].to_numpy())
    policy.save(tmp_path / "policy.json")
    frame.to_csv(tmp_path / "log.csv", index=False)
    out = marketloop(
        "policy",
        "evaluate",
        "--log",
        str(tmp_path / "log.csv"),
        "--candidate",
        str(tmp_path / "policy.json"),
    )
    assert out.returncode == 2, out.stderr
    first_unknown = int(np.flatnonzero(frame.action >= 3)[0]) + 1
    assert "actions the candidate knows (0-2)" in out.stderr
    assert f"rows {first_unknown}," in out.stderr and "Traceback" not in out.stderr


def test_cli_evaluates_a_saved_contextual_policy(logged, tmp_path: Path) -> None:
    from marketloop.strategy.bandits import LinUCB

    path, _, _ = logged
    frame = pd.read_csv(path)
    X = frame[[f"x{j}" for j in range(D)]].to_numpy()
    policy = LinUCB(K, alpha=0.5, min_exploration=0.2).fit(
        X, frame.action.to_numpy(), frame.reward.to_numpy(), frame.propensity.to_numpy()
    )
    policy.save(tmp_path / "policy.json")
    out = marketloop(
        "policy",
        "evaluate",
        "--log",
        str(path),
        "--candidate",
        str(tmp_path / "policy.json"),
        "--n-bootstrap",
        "20",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    # the candidate's true value, from the known click model and its own probabilities
    rng = np.random.default_rng(3)
    x = rng.normal(size=(len(frame), D))
    truth = float((policy.action_probabilities(x) * _mu(x)).sum(1).mean())
    dr = result["estimates"]["dr"]
    assert dr["ci"][0] <= truth <= dr["ci"][1], (dr, truth)


def test_context_columns_are_numbers_in_every_row_or_not_features(tmp_path: Path) -> None:
    from marketloop.exceptions import SchemaError

    frame = pd.DataFrame({"action": [0, 1, 0, 1], "reward": [1, 0, 0, 1],
                          "propensity": [0.5] * 4, "x1": [0.1, 0.2, 0.3, 0.4],
                          "customer_id": ["a", "b", "c", "d"]})
    frame.to_csv(tmp_path / "ok.csv", index=False)
    assert read_log(tmp_path / "ok.csv").context.shape == (4, 1)  # the id is no feature
    for value, shown in (("zz", "'zz'"), ("", "a blank")):
        frame.assign(x1=[0.1, value, 0.3, 0.4]).to_csv(tmp_path / "bad.csv", index=False)
        with pytest.raises(SchemaError, match=f"context column x1: .* found {shown} on row 2"):
            read_log(tmp_path / "bad.csv")  # was: the column dropped, or the blank made 0


def test_what_no_estimator_can_read_is_refused(logged) -> None:
    """Probabilities that do not sum to 1 (one that summed to 3 was promoted), actions the
    log never took, a log built in Python with a propensity of 0, bad alpha or resamples."""
    from marketloop.exceptions import ConfigError, SchemaError

    path, _, _ = logged
    log = read_log(path)

    class Scaled:
        def __init__(self, factor: float, width: int = K) -> None:
            self.factor, self.width = factor, width

        def action_probabilities(self, X: np.ndarray) -> np.ndarray:
            return np.full((len(X), self.width), self.factor / self.width)

    for factor in (3.0, 0.0, float("nan")):
        with pytest.raises(SchemaError, match="probabilities >= 0 that sum to 1 in every row"):
            evaluate_policy(log, Scaled(factor), n_bootstrap=10)
    with pytest.raises(SchemaError, match=f"probability only for the {K} actions the log took"):
        evaluate_policy(log, Scaled(1.0, K + 1), n_bootstrap=10)
    broken = BanditLog(log.action, log.reward, np.where(np.arange(log.n_rounds) == 4, 0.0,
                                                        log.propensity),
                       log.position, log.context, None, log.n_actions, log.len_list)
    with pytest.raises(SchemaError, match=r"propensities in \(0, 1\]; found 0.0 in row 5"):
        evaluate_policy(broken, "uniform", n_bootstrap=10)
    with pytest.raises(ConfigError, match="alpha"):
        evaluate_policy(log, UniformPolicy(K), alpha=1.5, n_bootstrap=10)
    with pytest.raises(ConfigError, match="n_bootstrap"):
        evaluate_policy(log, UniformPolicy(K), n_bootstrap=0)


def test_the_gate_keeps_a_policy_the_unbiased_estimate_puts_below_the_running_one() -> None:
    from marketloop.strategy.ope._estimators import Estimate
    from marketloop.strategy.ope._evaluate import Evaluation

    def gate(ips_ci: tuple[float, float]) -> bool:
        estimates = {"ips": Estimate(0.5, ips_ci), "dr": Estimate(0.66, (0.62, 0.69))}
        return Evaluation(estimates, 0.61, (0.60, 0.62), 3000, 4, 1, 100.0, 5.0).promote

    assert gate((0.55, 0.70))  # DR says better, IPS does not contradict it
    assert not gate((0.49, 0.55))  # DR's shrinkage bias: IPS wholly below the running value


def test_dr_that_is_the_direct_method_says_so() -> None:
    """A rare action with a flat reward: SLOPE shrinks all the way, DR equals DM."""
    from marketloop.strategy.ope import BanditLog

    rng = np.random.default_rng(0)
    n = 3000
    action = (rng.random(n) < 0.02).astype(int)
    log = BanditLog(action=action, reward=(rng.random(n) < 0.1).astype(float),
                    propensity=np.where(action == 1, 0.02, 0.98),
                    position=np.zeros(n, int), context=rng.normal(size=(n, 2)),
                    action_context=None, n_actions=2, len_list=1, source="rare")

    class AlwaysTheRareOne:
        def action_probabilities(self, X: np.ndarray) -> np.ndarray:
            return np.tile([0.0, 1.0], (len(X), 1))

    result = evaluate_policy(log, AlwaysTheRareOne(), n_bootstrap=20)
    dr = result.estimates["dr"]
    assert dr.info["lambda"] == 0 and dr.ess == 0
    assert dr.value == pytest.approx(result.estimates["dm"].value)
    assert any("DR is the direct method here" in note for note in result.notes)
