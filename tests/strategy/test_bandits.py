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
from sklearn.base import clone

from marketloop.exceptions import ConfigError, PolicyViolation, SchemaError
from marketloop.strategy.bandits import (
    ActionSet,
    BernoulliTS,
    EpsilonGreedy,
    LinTS,
    LinUCB,
    Uniform,
    VWPolicy,
    load_policy,
)
from marketloop.strategy.bandits._gauss import independent_max_probabilities

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


# -- contextual policies ------------------------------------------------------------------------
K, D = 4, 3
W_TRUE = np.array([[0.5, 0.0, 0.0], [0.0, 0.6, 0.0], [0.0, 0.0, 0.7], [-0.3, -0.3, 0.2]])
POLICIES = {
    "lin_ucb": lambda: LinUCB(K, alpha=0.5, random_state=0),
    "lin_ts": lambda: LinTS(K, scale=0.3, random_state=0),
    "lin_ts_shared": lambda: LinTS(K, scale=0.3, model="shared", random_state=0),
    "lin_ucb_shared": lambda: LinUCB(K, alpha=0.5, model="shared", random_state=0),
    "epsilon_greedy": lambda: EpsilonGreedy(K, epsilon=0.1, random_state=0),
}


def _linear_world(policy, n_rounds: int, seed: int = 1) -> float:
    """Run ``policy`` on rewards x . W[a] + N(0, 0.3^2); returns the mean true regret."""
    rng = np.random.default_rng(seed)
    regret = 0.0
    for _ in range(n_rounds):
        x = rng.normal(size=D)
        means = W_TRUE @ x
        a = policy.choose(x, rng=rng).action
        policy.update(x, a, means[a] + rng.normal(0, 0.3))
        regret += means.max() - means[a]
    return regret / n_rounds


@pytest.mark.parametrize("name", list(POLICIES))
def test_policy_finds_the_best_arm_of_a_linear_reward(name: str) -> None:
    policy = POLICIES[name]()
    late_regret = _linear_world(policy, 600)
    uniform_regret = _linear_world(Uniform(K, random_state=0), 600)
    X = np.random.default_rng(9).normal(size=(300, D))
    best = (X @ W_TRUE.T).argmax(axis=1)
    hit = (policy.action_probabilities(X).argmax(axis=1) == best).mean()
    # uniform regret is ~0.8 per round here; a learner is far below after 600 rounds
    assert late_regret < 0.35 * uniform_regret
    assert hit > 0.9, hit


@pytest.mark.parametrize("name", list(POLICIES))
def test_propensity_is_the_probability_the_choice_was_drawn_from(name: str) -> None:
    policy = POLICIES[name]()
    policy.min_exploration = 0.2
    _linear_world(policy, 60)
    x = np.array([0.2, -0.1, 0.05])
    probs = policy.action_probabilities(x[None, :])[0]
    assert probs.sum() == pytest.approx(1.0) and probs.min() >= 0.2 / K - 1e-12
    rng = np.random.default_rng(3)
    counts = np.zeros(K)
    for _ in range(2_000):
        choice = policy.choose(x, rng=rng)
        np.testing.assert_array_equal(choice.probabilities, probs)
        assert choice.propensity == probs[choice.action]
        counts[choice.action] += 1
    # multinomial counts: sd <= sqrt(2000 / 4) = 22.4; 5 sd
    assert np.abs(counts - 2_000 * probs).max() < 112


@given(st.integers(2, 30), st.integers(0, 2**32 - 1))
def test_thompson_probabilities_are_a_distribution(k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    mean, std = rng.normal(0, 1, k), np.exp(rng.normal(-1, 1.5, k))
    mask = rng.random(k) < 0.7
    mask[rng.integers(k)] = True
    p = independent_max_probabilities(mean, std, mask)
    assert p.min() >= 0 and p.sum() == pytest.approx(1.0) and (p[~mask] == 0).all()


@pytest.mark.parametrize("seed", range(6))
def test_thompson_probabilities_match_monte_carlo(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = 30
    mean, std = rng.normal(0, 0.3, k), rng.uniform(0.05, 0.3, k)
    if seed % 2:
        std[rng.integers(k)] = 1e-4          # one nearly certain action among uncertain ones
    draws = rng.standard_normal((200_000, k)) * std + mean
    mc = np.bincount(draws.argmax(axis=1), minlength=k) / len(draws)
    p = independent_max_probabilities(mean, std, np.ones(k, dtype=bool))
    # Monte Carlo sd <= 0.0011 at n = 200,000 (4 sd = 0.0045) plus quadrature error ~3e-3
    assert np.abs(p - mc).max() < 0.008


@given(st.integers(0, 2**32 - 1), st.sampled_from(["disjoint", "shared"]))
def test_sherman_morrison_updates_equal_a_batch_fit(seed: int, model: str) -> None:
    rng = np.random.default_rng(seed)
    X, a, r = rng.normal(size=(40, D)), rng.integers(0, K, 40), rng.normal(size=40)
    streamed = LinUCB(K, model=model)
    for x, ai, ri in zip(X, a, r, strict=True):
        streamed.update(x, ai, ri)
    batch = LinUCB(K, model=model).fit(X, a, r)
    np.testing.assert_allclose(streamed.model_.A_inv, batch.model_.A_inv, atol=1e-9)
    np.testing.assert_allclose(streamed.model_.theta, batch.model_.theta, atol=1e-9)


def test_propensity_weighting_counts_a_row_one_over_its_propensity() -> None:
    rng = np.random.default_rng(0)
    X, a, r = rng.normal(size=(30, D)), rng.integers(0, K, 30), rng.normal(size=30)
    weighted = LinUCB(K, propensity_weighting=True).fit(X, a, r, np.full(30, 0.5))
    doubled = LinUCB(K).fit(np.vstack([X, X]), np.r_[a, a], np.r_[r, r])
    np.testing.assert_allclose(weighted.model_.theta, doubled.model_.theta, atol=1e-12)
    ignored = LinUCB(K).fit(X, a, r, np.full(30, 0.5))
    np.testing.assert_allclose(ignored.model_.theta, LinUCB(K).fit(X, a, r).model_.theta)


def test_shared_model_generalises_to_an_untried_action() -> None:
    actions = ActionSet.grid(offer=["none", "pct10"], hour=[9, 18], cyclic={"hour": 24})
    effect = {"none": 0.0, "pct10": 0.4}
    truth = np.array([effect[a["offer"]] + (0.3 if a["hour"] == 18 else 0.0) for a in actions])
    rng = np.random.default_rng(0)
    logged = rng.choice([0, 1, 2], size=400)              # action 3 (pct10 at 18h) never tried
    rewards = truth[logged] + rng.normal(0, 0.1, 400)
    policy = LinUCB(actions, model="shared", alpha=0.0).fit(None, logged, rewards)
    np.testing.assert_allclose(policy.expected_rewards(None)[0], truth, atol=0.05)
    assert policy.choose().action == 3


# -- guardrails ------------------------------------------------------------------------------------
OFFERS = [{"offer": "none", "discount": 0.0}, {"offer": "pct10", "discount": 0.1},
          {"offer": "pct20", "discount": 0.2}, {"offer": "pct30", "discount": 0.3}]


@pytest.mark.parametrize("cls", [LinUCB, LinTS, EpsilonGreedy])
def test_guardrails_are_enforced(cls) -> None:
    policy = cls(OFFERS, min_exploration=0.2, max_discount=0.2,
                 forbidden={"sleeping_dogs": [1, 2]}, random_state=0)
    policy.fit(np.zeros((40, 1)), [3] * 40, [10.0] * 40)      # the deepest offer pays best
    probs = policy.action_probabilities(np.zeros((1, 1)))[0]
    assert probs[3] == 0.0                                    # above max_discount
    assert probs[:3].min() >= 0.2 / 3 - 1e-12                 # min_exploration / n_allowed
    dogs = policy.action_probabilities(np.zeros((1, 1)), segment="sleeping_dogs")[0]
    np.testing.assert_array_equal(dogs, [1.0, 0.0, 0.0, 0.0])
    rng = np.random.default_rng(0)
    chosen = {policy.choose([0.0], rng=rng, segment="sleeping_dogs").action for _ in range(50)}
    assert chosen == {0}
    assert policy.choose([0.0], allowed=[2], rng=rng).action == 2
    with pytest.raises(PolicyViolation, match=re.escape("expected at least one allowed action")):
        policy.choose([0.0], allowed=[3])


@pytest.mark.parametrize(("params", "message"), [
    ({"min_exploration": 1.5}, "The 'min_exploration' parameter of LinUCB must be in the range "
                               "[0, 1]. Got 1.5 instead."),
    ({"alpha": -1.0}, "The 'alpha' parameter of LinUCB must be >= 0. Got -1.0 instead."),
    ({"model": "hybrid"}, "The 'model' parameter of LinUCB must be 'disjoint' or 'shared'. "
                          "Got 'hybrid' instead."),
    ({"forbidden": {"vip": [7]}}, "LinUCB forbidden['vip']: expected action indices in [0, 3]"),
])
def test_bad_parameters_are_config_errors(params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        LinUCB(OFFERS, **params).choose([0.0])


def test_context_of_wrong_width_is_a_schema_error() -> None:
    policy = LinUCB(K).fit(np.zeros((5, D)), [0] * 5, [1.0] * 5)
    with pytest.raises(SchemaError, match=re.escape("expected a finite context of 3 features; "
                                                    "found 2 features.")):
        policy.choose([1.0, 2.0])


def test_action_set_encodes_attributes() -> None:
    actions = ActionSet([
        {"name": "a", "offer": "pct10", "depth": 0.1, "hour": 18, "format": "visual"},
        {"name": "b", "offer": "none", "depth": 0.0, "hour": 6, "format": "visual"},
    ], cyclic={"hour": 24})
    assert actions.feature_names == ["offer=pct10", "offer=none", "depth", "hour_sin",
                                     "hour_cos"]
    np.testing.assert_allclose(actions.features[:, 3:], [[-1.0, 0.0], [1.0, 0.0]], atol=1e-12)
    assert actions.labels == ["a", "b"]
    with pytest.raises(ConfigError, match="expected a non-empty list of dicts"):
        ActionSet([])


# -- persistence and estimator contract -----------------------------------------------------------
@pytest.mark.parametrize("name", [*POLICIES, "vw"])
def test_save_load_same_decisions(tmp_path, name: str) -> None:
    policy = VWPolicy(OFFERS, random_state=0) if name == "vw" else POLICIES[name]()
    if name != "vw":
        policy.actions = OFFERS
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, D))
    a = rng.integers(0, 4, 200)
    policy.fit(X, a, X[:, 0] * (a == 1) + rng.normal(0, 0.1, 200))
    policy.choose(X[0])
    path = tmp_path / f"{name}.json"
    policy.save(path)
    loaded = load_policy(path)
    assert type(loaded) is type(policy)
    assert json.loads(path.read_text())["kind"] == policy._kind
    np.testing.assert_array_equal(loaded.action_probabilities(X[:20]),
                                  policy.action_probabilities(X[:20]))
    assert [loaded.choose(x).action for x in X[:30]] == [policy.choose(x).action for x in X[:30]]


def test_clone_keeps_parameters_and_forgets_state() -> None:
    policy = LinTS(OFFERS, scale=0.2, max_discount=0.1).fit(np.zeros((3, 1)), [0, 1, 2], [1, 2, 3])
    fresh = clone(policy)
    assert fresh.get_params() == policy.get_params()
    assert not hasattr(fresh, "model_")


@pytest.mark.parametrize("name", [*POLICIES, "bernoulli_ts", "vw"])
def test_pickle_round_trip_keeps_decisions(name: str) -> None:
    import pickle

    rng = np.random.default_rng(0)
    X, a = rng.normal(size=(100, D)), rng.integers(0, K, 100)
    if name == "bernoulli_ts":
        policy, X = BernoulliTS(K, random_state=0), None
        r = rng.random(100) < 0.3
    else:
        policy = VWPolicy(K, random_state=0) if name == "vw" else POLICIES[name]()
        r = rng.normal(size=100)
    policy.fit(X, a, r.astype(float))
    copy = pickle.loads(pickle.dumps(policy))
    X_new = None if X is None else X[:10]
    np.testing.assert_array_equal(copy.action_probabilities(X_new),
                                  policy.action_probabilities(X_new))
    x = None if X is None else X[0]
    assert copy.choose(x, rng=7).action == policy.choose(x, rng=7).action


def test_no_learned_attributes_before_use() -> None:
    for policy in [*(make() for make in POLICIES.values()), BernoulliTS(3), Uniform(3),
                   VWPolicy(3)]:
        assert not [k for k in vars(policy) if k.endswith("_")], type(policy).__name__


@pytest.mark.parametrize("policy", ["LinUCB", "LinTS", "EpsilonGreedy", "VWPolicy"])
def test_a_context_with_a_missing_value_is_refused_and_leaves_the_policy_as_it_was(
        policy: str) -> None:
    """A NaN in a live context (a missing profile value) is an error at choose and update:
    learnt, it would make every later distribution NaN and the saved state unloadable."""
    import marketloop.strategy.bandits as bandits

    rng = np.random.default_rng(0)
    X, A = rng.normal(size=(200, 3)), rng.integers(0, 3, 200)
    R = (rng.random(200) < 0.3).astype(float)
    p = getattr(bandits, policy)(ActionSet.grid(offer=["none", "pct10", "pct20"]),
                                 random_state=0).fit(X, A, R)
    before = p.action_probabilities(X[:5])
    bad = np.array([0.5, np.nan, 1.0])
    for call in (lambda: p.choose(bad), lambda: p.update(bad, 1, 1.0),
                 lambda: p.partial_fit(np.vstack([X[:2], bad]), [0, 1, 2], [0.0, 1.0, 1.0])):
        with pytest.raises(SchemaError, match=r"finite contexts? of 3 features; found (3 "
                           r"features, non-finite at position\(s\) 1|shape \(3, 3\) with "
                           r"NaN/inf in row\(s\) 3)"):
            call()
    np.testing.assert_array_equal(p.action_probabilities(X[:5]), before)
    assert np.isfinite(p.choose(X[0]).propensity)


def test_vw_refuses_an_action_that_is_not_a_whole_index() -> None:
    X, r = np.random.default_rng(0).normal(size=(20, 2)), np.zeros(20)
    with pytest.raises(ConfigError, match="found action 0.9"):
        VWPolicy(ActionSet.grid(offer=["a", "b", "c"])).fit(X, np.full(20, 0.9), r)
    policy = VWPolicy(ActionSet.grid(offer=["a", "b", "c"])).fit(X, np.ones(20), r)  # 1.0 is 1
    with pytest.raises(ConfigError, match="found action 1.7"):
        policy.update(X[0], 1.7, 1.0)
