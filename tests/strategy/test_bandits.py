"""Bandit policies: planted answers, exact propensities, obp parity, persistence, guardrails."""

from __future__ import annotations

import json
import os
import re

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: threads only cost

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketloop.exceptions import ConfigError, PolicyViolation
from marketloop.strategy.bandits import BernoulliTS, Uniform, load_policy

N_SIM = 100_000


# -- BernoulliTS against Open Bandit Pipeline ----------------------------------------------
@pytest.fixture(scope="module")
def obp_bts() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """obp's ZOZOTOWN-prior BernoulliTS (80 items, 3 positions) and its action_dist."""
    obp_policy = pytest.importorskip("obp.policy")
    try:
        peer = obp_policy.BernoulliTS(n_actions=80, len_list=3, is_zozotown_prior=True,
                                      campaign="all", random_state=12345)
    except Exception:  # obp could not read its shipped prior: give it explicit arrays
        rng = np.random.default_rng(0)
        alpha, beta = rng.integers(2, 1_000, 80) * 1.0, rng.integers(2_000, 200_000, 80) * 1.0
        peer = obp_policy.BernoulliTS(n_actions=80, len_list=3, alpha=alpha, beta=beta,
                                      random_state=12345)
    alpha, beta = np.asarray(peer.alpha, float), np.asarray(peer.beta, float)
    return alpha, beta, peer.compute_batch_action_dist(n_rounds=1, n_sim=N_SIM)


def test_action_dist_matches_obp_within_monte_carlo_error(obp_bts) -> None:
    alpha, beta, want = obp_bts
    got = BernoulliTS.from_prior(alpha, beta, len_list=3).action_dist(
        n_rounds=1, n_sim=N_SIM, random_state=2024)   # another seed: independent estimates
    assert got.shape == want.shape == (1, 80, 3)
    # two independent estimates of p differ with sd sqrt(2 p (1 - p) / n); 5 sd per cell
    p = (got + want) / 2
    bound = 5 * np.sqrt(2 * p * (1 - p) / N_SIM) + 1e-12
    assert (np.abs(got - want) <= bound).all()
    np.testing.assert_allclose(got.sum(axis=1), 1.0)


def test_action_dist_same_seed_is_obps_to_the_last_bit(obp_bts) -> None:
    alpha, beta, want = obp_bts
    got = BernoulliTS.from_prior(alpha, beta, len_list=3).action_dist(n_rounds=1, n_sim=N_SIM)
    np.testing.assert_array_equal(got, want)


def test_action_dist_is_the_same_for_every_round() -> None:
    dist = BernoulliTS(5, len_list=2).action_dist(n_rounds=4, n_sim=2_000)
    assert dist.shape == (4, 5, 2)
    assert (dist == dist[0]).all()


def test_action_dist_uses_the_posterior() -> None:
    policy = BernoulliTS(3).fit(None, [2] * 50 + [0] * 50, [1.0] * 50 + [0.0] * 50)
    assert policy.alpha_.tolist() == [1.0, 1.0, 51.0]
    # item 1 keeps its flat prior: theta_1 ~ U(0, 1) beats Beta(51, 1) with probability 1/52
    assert policy.action_dist(n_sim=5_000)[0, 2, 0] == pytest.approx(51 / 52, abs=0.01)


def test_uniform_action_dist_is_obps_random() -> None:
    obp_policy = pytest.importorskip("obp.policy")
    want = obp_policy.Random(n_actions=7, len_list=3).compute_batch_action_dist(n_rounds=2)
    np.testing.assert_array_equal(Uniform(7, len_list=3).action_dist(n_rounds=2), want)


# -- BernoulliTS and Uniform as policies ------------------------------------------------------
def test_bernoulli_choice_propensity_is_the_distribution_it_acts_from() -> None:
    policy = BernoulliTS.from_prior([2, 5, 3, 1], [8, 5, 7, 9], len_list=2)
    probs = policy.action_probabilities(3)
    assert probs.shape == (3, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    rng = np.random.default_rng(0)
    counts = np.zeros(4)
    for _ in range(4_000):
        choice = policy.choose(rng=rng)
        assert choice.propensity == probs[0, choice.action]
        assert len(choice.slate) == 2 and choice.slate[0] == choice.action
        counts[choice.action] += 1
    # multinomial counts: sd sqrt(n p (1 - p)) <= 32 at n = 4,000; 5 sd
    assert np.abs(counts - 4_000 * probs[0]).max() < 160


def test_bernoulli_allowed_items_only() -> None:
    policy = BernoulliTS(5, len_list=3)
    for seed in range(20):
        choice = policy.choose(allowed=[1, 4], rng=seed)
        assert set(choice.slate) == {1, 4}
        assert choice.probabilities[[0, 2, 3]].sum() == 0
    with pytest.raises(PolicyViolation, match="at least one allowed action"):
        policy.choose(allowed=[])


def test_bernoulli_learns_the_best_item_online() -> None:
    truth = np.array([0.02, 0.05, 0.12, 0.04])
    policy, rng = BernoulliTS(4, random_state=0), np.random.default_rng(1)
    for _ in range(3_000):
        a = policy.choose(rng=rng).action
        policy.update(None, a, float(rng.random() < truth[a]))
    assert policy.action_probabilities()[0].argmax() == 2
    assert policy.n_updates_ == 3_000


def test_bernoulli_rejects_rewards_outside_unit_interval() -> None:
    with pytest.raises(ConfigError, match=re.escape("expected rewards in [0, 1]")):
        BernoulliTS(3).fit(None, [0, 1], [0.5, 2.0])


def test_uniform_choice() -> None:
    choice = Uniform(4, len_list=2).choose(allowed=[0, 3], rng=1)
    assert choice.propensity == 0.5 and set(choice.slate) == {0, 3}
    np.testing.assert_array_equal(Uniform(4).action_probabilities(2), np.full((2, 4), 0.25))


@given(st.lists(st.floats(0.1, 100.0), min_size=2, max_size=12), st.integers(0, 2**32 - 1))
def test_bernoulli_probabilities_are_a_distribution(alpha: list[float], seed: int) -> None:
    beta = np.random.default_rng(seed).uniform(0.1, 100.0, len(alpha))
    policy = BernoulliTS.from_prior(alpha, beta, n_sim=500)
    probs = policy.action_probabilities(1)[0]
    assert probs.min() >= 0 and probs.sum() == pytest.approx(1.0)
    dist = policy.action_dist(n_sim=500)[0, :, 0]
    assert dist.sum() == pytest.approx(1.0)


# -- persistence ------------------------------------------------------------------------------
def test_bernoulli_save_load_same_decisions(tmp_path) -> None:
    policy = BernoulliTS(6, len_list=3, random_state=4).fit(None, [0, 1, 1, 5], [1, 0, 1, 1])
    policy.choose()                       # the stream has moved: the file keeps where it is
    path = tmp_path / "bts.json"
    policy.save(path)
    assert json.loads(path.read_text())["kind"] == "bernoulli_ts"
    loaded = load_policy(path)
    assert isinstance(loaded, BernoulliTS)
    np.testing.assert_array_equal(loaded.alpha_, policy.alpha_)
    assert [loaded.choose().slate for _ in range(10)] == [policy.choose().slate
                                                            for _ in range(10)]
    u = Uniform(3, random_state=0)
    u.save(tmp_path / "u.json")
    assert isinstance(load_policy(tmp_path / "u.json"), Uniform)


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "expected valid JSON; found Expecting property name"),
    ("[1, 2]", 'expected "format": "marketloop-policy"; found list.'),
    ('{"format": "marketloop-policy", "version": 99, "kind": "uniform", "params": {},'
     ' "state": {}}', 'expected "version": 1; found 99.'),
    ('{"format": "marketloop-policy", "version": 1, "kind": "nope", "params": {},'
     ' "state": {}}', "found 'nope'."),
    ('{"format": "marketloop-policy", "version": 1, "kind": "bernoulli_ts",'
     ' "params": {"n_actions": 2}, "state": {"alpha": [1.0], "beta": [1.0, 1.0]}}',
     'expected "alpha" of shape (2,) with finite values; found shape (1,).'),
    ('{"format": "marketloop-policy", "version": 1, "kind": "uniform",'
     ' "params": {"n_arms": 2}, "state": {}}', "expected parameters of Uniform"),
    ('{"format": "marketloop-policy", "version": 1, "kind": "uniform", "params": {}}',
     'expected a "state" field'),
])
def test_bad_policy_file_is_a_config_error(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_policy(path)


def test_missing_policy_file_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="expected an existing file; found no such file"):
        load_policy(tmp_path / "absent.json")
