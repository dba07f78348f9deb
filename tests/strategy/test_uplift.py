"""Uplift learners against the simulator's true effects; metrics against scikit-uplift."""

from __future__ import annotations

import pickle
import re
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lightgbm import LGBMClassifier, LGBMRegressor
from scipy.stats import spearmanr
from sklearn.base import clone

from marketloop.exceptions import ConfigError, MarketloopWarning, NotFittedError, SchemaError
from marketloop.simulate import Market, random_campaign, true_response
from marketloop.strategy.uplift import (
    ClassTransformation,
    DRLearner,
    TLearner,
    XLearner,
    auuc,
    evaluate_arms,
    evaluate_uplift,
    load_model,
    qini_coefficient,
    qini_curve,
    uplift_at_k,
    uplift_curve,
)

sklift_metrics = pytest.importorskip("sklift.metrics")
sklift_models = pytest.importorskip("sklift.models")

LEARNERS = [TLearner, XLearner, DRLearner, ClassTransformation]
N_TRAIN = 10_000
#: Held-out customers scored against the truth. Under no signal the Spearman correlation of
#: 6,000 rows has sd 1/sqrt(5,999) = 0.013, so 0.04 is three null sd above zero.
RHO_MIN = 0.04


def _action(offer: str, channel: str) -> pd.DataFrame:
    return pd.DataFrame([{"offer": offer, "channel": channel, "send_hour": 10,
                          "format": "plain"}])


@pytest.fixture(scope="module")
def sms_campaign():
    """A randomised 20 %-off SMS campaign on 16,000 customers, with its truth.

    pct20 by SMS has the largest true effects in the catalogue (mean uplift ~0.027). Across
    seeds 1-5 the learners' held-out Spearman correlation with the truth was 0.05-0.16 and
    their top-30 % capture 2.5-10.8 random sd above random (ClassTransformation: 0.045-0.058
    and 1.8-2.8 sd); the oracle, LightGBM fit on the *true* uplift, reaches only ~0.34: most
    of a customer's response comes from traits the RFM features do not show.
    """
    shop = Market(n_customers=16_000, n_days=365, random_state=4).simulate(
        ("customers", "orders"), full_truth=False)
    c = random_campaign(shop, 0.5, offer="pct20", channel="sms", random_state=4)
    labels = np.where(c.treated, "pct20_sms", "control")
    train = np.arange(len(labels)) < N_TRAIN
    return shop, c, labels, c.converted.astype(int).to_numpy(), train


@pytest.fixture(scope="module")
def fitted(sms_campaign):
    _, c, labels, y, train = sms_campaign
    return {cls: cls(random_state=0).fit(c.features[train], labels[train], y[train])
            for cls in LEARNERS}


def _capture_z(pred: np.ndarray, truth: np.ndarray, *, k: float = 0.3,
               n_perm: int = 400) -> float:
    """True incremental conversions in the top ``k`` by ``pred``, in random-ranking sd."""
    m = int(k * len(pred))
    got = truth[np.argsort(-pred, kind="stable")[:m]].sum()
    rng = np.random.default_rng(0)
    null = np.array([truth[rng.permutation(len(truth))[:m]].sum() for _ in range(n_perm)])
    return float((got - null.mean()) / null.std())


@pytest.mark.parametrize("cls", LEARNERS, ids=lambda c: c.__name__)
def test_learners_rank_by_true_effect(cls, sms_campaign, fitted) -> None:
    _, c, _, _, train = sms_campaign
    truth = c.true_uplift.to_numpy()[~train]
    pred = fitted[cls].predict(c.features[~train])
    assert list(pred.columns) == ["pct20_sms"]
    assert pred.index.equals(c.features.index[~train])
    effect = pred["pct20_sms"].to_numpy()
    rho = spearmanr(effect, truth).statistic
    assert rho > RHO_MIN, f"{cls.__name__}: rho={rho:.3f}"
    # ClassTransformation measured 1.8-2.8 sd over five seeds, the others 2.5-10.8
    bar = 1.0 if cls is ClassTransformation else 2.0
    z = _capture_z(effect, truth)
    assert z > bar, f"{cls.__name__}: top-30 % capture z={z:.2f}"
    # the check can fail: the same predictions shuffled capture no more than random
    shuffled = np.random.default_rng(1).permutation(effect)
    assert abs(_capture_z(shuffled, truth)) < 3.0


def test_tlearner_average_effect_matches_truth(sms_campaign, fitted) -> None:
    _, c, _, _, train = sms_campaign
    pred = fitted[TLearner].predict(c.features[~train])["pct20_sms"].mean()
    # difference of two conversion means of ~5,000 rows each: se ~ sqrt(2 * 0.1 / 5,000)
    # = 0.0063; three se
    assert pred == pytest.approx(c.true_uplift[~train].mean(), abs=0.019)


def test_tlearner_and_class_transformation_equal_sklift(sms_campaign) -> None:
    _, c, labels, y, train = sms_campaign
    X = c.features[train].copy()
    for col in X.select_dtypes(exclude="number"):
        X[col] = X[col].astype("category")
    t, yt = (labels[train] != "control").astype(int), y[train]
    base = LGBMClassifier(n_estimators=200, learning_rate=0.05, num_leaves=15,
                          min_child_samples=50, verbose=-1, random_state=0, n_jobs=1)
    peer = sklift_models.TwoModels(clone(base), clone(base)).fit(X, yt, t).predict(X)
    ours = TLearner(base=base).fit(X, labels[train], yt).predict(X)["pct20_sms"]
    np.testing.assert_allclose(ours, peer, rtol=0, atol=1e-12)
    peer = sklift_models.ClassTransformation(clone(base)).fit(X, yt, t).predict(X)
    ours = ClassTransformation(base=base, balance=False).fit(X, labels[train], yt).predict(X)
    np.testing.assert_allclose(ours["pct20_sms"], peer, rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def multi_campaign():
    """Control and three offers, a quarter of 20,000 customers each; true effects per arm."""
    shop = Market(n_customers=20_000, n_days=365, random_state=2).simulate(
        ("customers", "orders"), full_truth=False)
    feats = random_campaign(shop, 0.5, random_state=2).features
    rng = np.random.default_rng(2)
    arms = {"pct10_email": ("pct10", "email"), "pct20_sms": ("pct20", "sms"),
            "freeship_push": ("freeship", "push")}
    labels = np.array(["control", *arms])[rng.integers(0, 4, len(feats))]
    p = np.empty(len(feats))
    truth = {}
    for name, (offer, channel) in arms.items():
        resp = true_response(shop.truth, feats.index, _action(offer, channel))
        truth[name] = resp["uplift"].to_numpy()
        p[labels == name] = resp["p_convert"].to_numpy()[labels == name]
        p[labels == "control"] = resp["p_baseline"].to_numpy()[labels == "control"]
    y = (rng.random(len(feats)) < p).astype(int)
    return feats, labels, y, truth


@pytest.mark.parametrize("cls", LEARNERS, ids=lambda c: c.__name__)
def test_several_treatments(cls, multi_campaign) -> None:
    feats, labels, y, truth = multi_campaign
    train = np.arange(len(y)) < 14_000
    model = cls(random_state=0).fit(feats[train], labels[train], y[train])
    assert model.treatments_ == ["freeship_push", "pct10_email", "pct20_sms"]
    pred = model.predict(feats[~train])
    assert pred.shape == (int((~train).sum()), 3)
    assert list(pred.columns) == model.treatments_
    # true means: pct20_sms 0.026, pct10_email 0.003, freeship_push -0.001
    assert pred.mean().idxmax() == "pct20_sms"
    if cls is not ClassTransformation:  # measured 0.019-0.066 for it over four seeds
        rho = spearmanr(pred["pct20_sms"], truth["pct20_sms"][~train]).statistic
        assert rho > RHO_MIN, f"{cls.__name__}: rho={rho:.3f}"
    reports = evaluate_arms(y[~train], pred, labels[~train], n_bootstrap=20, n_random=20)
    assert set(reports) == set(model.treatments_)


@pytest.mark.parametrize("cls", [TLearner, XLearner, DRLearner], ids=lambda c: c.__name__)
def test_continuous_outcome(cls, sms_campaign) -> None:
    shop, c, labels, y, train = sms_campaign
    resp = true_response(shop.truth, c.features.index, _action("pct20", "sms"))
    base_value = shop.truth.customers.loc[c.features.index, "mean_spend"].to_numpy()
    true_gain = (resp["p_convert"] * resp["expected_order_value"]).to_numpy() - (
        resp["p_baseline"].to_numpy() * base_value)
    paid = np.where(c.treated, resp["expected_order_value"].to_numpy(), base_value)
    revenue = y * paid * np.random.default_rng(4).gamma(4.0, 0.25, len(y))
    model = cls(random_state=0).fit(c.features[train], labels[train], revenue[train])
    assert model.outcome_ == "continuous"
    pred = model.predict(c.features[~train])["pct20_sms"]
    rho = spearmanr(pred, true_gain[~train]).statistic
    assert rho > RHO_MIN, f"{cls.__name__}: rho={rho:.3f}"


# -- metrics equal scikit-uplift's ---------------------------------------------------------


@st.composite
def uplift_inputs(draw):
    n = draw(st.integers(8, 300))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    y, t = rng.integers(0, 2, n), rng.integers(0, 2, n)
    y[:2], t[:2], t[2:4] = (0, 1), (0, 1), (1, 0)  # both outcomes and both arms present
    tied = draw(st.booleans())
    u = rng.integers(0, 4, n) / 4.0 if tied else rng.normal(size=n)
    return y, u, t


def _sk(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklift's own deprecation and empty-mean warnings
        try:
            return fn(*args, **kwargs)
        except ZeroDivisionError:  # an ideal no better than random: ours says NaN or inf
            return None


def _close(a: float, b: float | None) -> bool:
    if b is None:
        return not np.isfinite(a)
    if np.isnan(a) or np.isnan(b) or np.isinf(b):
        return bool(a == b or (np.isnan(a) and np.isnan(b)))
    return abs(a - b) <= 1e-9 * max(1.0, abs(b))


@given(uplift_inputs())
def test_metrics_equal_sklift(data) -> None:
    y, u, t = data
    assert _close(qini_coefficient(y, u, t), _sk(sklift_metrics.qini_auc_score, y, u, t))
    if y[t == 1].sum() - (t == 1).sum() * y[t == 0].sum() / (t == 0).sum() >= 0:
        assert _close(qini_coefficient(y, u, t, negative_effect=False),
                      _sk(sklift_metrics.qini_auc_score, y, u, t, negative_effect=False))
    assert _close(auuc(y, u, t), _sk(sklift_metrics.uplift_auc_score, y, u, t))
    for ours, theirs in ((qini_curve, sklift_metrics.qini_curve),
                         (uplift_curve, sklift_metrics.uplift_curve)):
        (x1, v1), (x2, v2) = ours(y, u, t), _sk(theirs, y, u, t)
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_allclose(v1, v2, rtol=1e-9, atol=1e-9)
    for k in (0.3, 0.5, 3):
        for strategy in ("overall", "by_group"):
            try:
                theirs = _sk(sklift_metrics.uplift_at_k, y, u, t, strategy=strategy, k=k)
            except ValueError:  # k rows more than an arm holds: both refuse
                with pytest.raises(ConfigError):
                    uplift_at_k(y, u, t, k=k, strategy=strategy)
                continue
            assert _close(uplift_at_k(y, u, t, k=k, strategy=strategy), theirs)


def test_metrics_take_amounts() -> None:
    rng = np.random.default_rng(0)
    t = rng.integers(0, 2, 2_000)
    gain = rng.random(2_000)
    revenue = rng.gamma(2.0, 20.0, 2_000) * (rng.random(2_000) < 0.1 + 0.2 * t * gain)
    assert qini_coefficient(revenue, gain, t) > qini_coefficient(revenue, -gain, t)
    assert 0 < auuc(revenue, gain, t) <= 1


# -- evaluation against random -------------------------------------------------------------


def _planted(n: int = 6_000, strength: float = 0.2, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 2, n)
    gain = rng.random(n)
    y = (rng.random(n) < 0.1 + strength * t * gain).astype(int)
    return y, gain, t


def test_evaluate_uplift_tells_signal_from_noise() -> None:
    y, gain, t = _planted()
    report = evaluate_uplift(y, gain, t, n_bootstrap=100, n_random=100)
    q = report["qini_coefficient"]
    assert report["beats_random"] and report["z_vs_random"] > 5
    assert q["low"] < q["value"] < q["high"]
    assert abs(q["random_mean"]) < 3 * q["random_sd"]
    assert q["value"] == pytest.approx(qini_coefficient(y, gain, t))
    assert report["uplift_at_k"]["value"] == pytest.approx(uplift_at_k(y, gain, t, k=0.3))
    noise = evaluate_uplift(y, np.random.default_rng(9).random(len(y)), t,
                            n_bootstrap=0, n_random=100)
    assert not noise["beats_random"] and np.isnan(noise["qini_coefficient"]["low"])
    assert "not distinguishable from random" in noise["verdict"]
    again = evaluate_uplift(y, gain, t, n_bootstrap=100, n_random=100)
    assert again == report  # one seed, one report


# -- estimator behaviour, persistence and refusals -----------------------------------------


def _small(n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.choice(["x", "y", "z"], size=n)},
                     index=pd.Index([f"c{i}" for i in range(n)], name="customer_id"))
    t = rng.choice(["control", "coupon"], size=n)
    y = (rng.random(n) < 0.3 + 0.2 * (t == "coupon") * (X["a"].to_numpy() > 0)).astype(int)
    return X, t, y


@pytest.mark.parametrize("cls", LEARNERS, ids=lambda c: c.__name__)
def test_estimator_contract(cls, tmp_path) -> None:
    X, t, y = _small()
    model = cls(random_state=0)
    assert not [k for k in vars(model) if k.endswith("_")]
    with pytest.raises(NotFittedError):
        model.predict(X)
    assert clone(model).get_params() == model.get_params()
    first = model.fit(X, t, y).predict(X)
    assert first.equals(cls(random_state=0).fit(X, t, y).predict(X))
    path = tmp_path / "model.joblib"
    model.save(path)
    assert load_model(path).predict(X).equals(first)
    assert pickle.loads(pickle.dumps(model)).predict(X).equals(first)
    # a new category at predict time is unknown, not an error
    X2 = X.assign(b=np.where(X["a"] > 1.5, "new", X["b"]))
    assert model.predict(X2).shape == first.shape
    with pytest.raises(SchemaError, match=re.escape("(b missing)")):
        model.predict(X[["a"]])


def test_numpy_input_and_outcome_option() -> None:
    X, t, y = _small()
    arr = X[["a"]].to_numpy()
    model = TLearner(random_state=0, outcome="continuous").fit(arr, t, y)
    assert model.outcome_ == "continuous" and model.feature_names_in_ == ["x0"]
    assert isinstance(model.models_[0], LGBMRegressor)
    assert model.predict(arr).index.equals(pd.RangeIndex(len(arr)))


@pytest.mark.parametrize(("cls", "min_corr"), [(XLearner, 0.8), (DRLearner, 0.55)],
                         ids=["XLearner", "DRLearner"])
def test_modelled_propensity_on_confounded_data(cls, min_corr: float) -> None:
    """Treatment more likely for high x0, which also raises the outcome; true effect 1 + x1."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6_000, 3))
    treated = rng.random(6_000) < 1.0 / (1.0 + np.exp(-1.5 * X[:, 0]))
    y = 2.0 * X[:, 0] + treated * (1.0 + X[:, 1]) + rng.normal(size=6_000)
    model = cls(propensity="model", random_state=0).fit(X, np.where(treated, "t", "control"), y)
    effect = model.predict(X)["t"]
    # the mean effect is 1; LightGBM's fit of 2 x0 leaves a bias well under 0.15 here
    assert effect.mean() == pytest.approx(1.0, abs=0.15)
    # DR pseudo-outcomes divide by the propensity: noisier per row than X's imputed effects
    assert np.corrcoef(effect, X[:, 1])[0, 1] > min_corr


def test_refusals() -> None:
    X, t, y = _small()
    with pytest.raises(SchemaError, match=re.escape(
            "TLearner.fit: expected at least one treatment arm besides control; found only "
            "control rows ('control').")):
        TLearner().fit(X, np.full(len(X), "control"), y)
    with pytest.raises(SchemaError, match=re.escape("expected control rows labelled 'none'")):
        TLearner(control="none").fit(X, t, y)
    with pytest.raises(SchemaError, match=re.escape(
            "TLearner.fit: expected one treatment label per row of X (600); found 599 labels.")):
        TLearner().fit(X, t[:-1], y)
    with pytest.raises(SchemaError, match=re.escape("expected one outcome per row (600 rows)")):
        XLearner().fit(X, t, y[:-1])
    y_nan = y.astype(float)
    y_nan[5] = np.nan
    with pytest.raises(SchemaError, match=re.escape(
            "DRLearner.fit: expected finite outcomes; found 1 NaN or infinite values (first "
            "at row 5). Drop those rows or fill the outcome (0 for no order).")):
        DRLearner().fit(X, t, y_nan)
    with pytest.raises(ConfigError, match=re.escape(
            "ClassTransformation.fit: expected a binary outcome; found a continuous outcome. "
            "Use TLearner, XLearner or DRLearner for amounts.")):
        ClassTransformation().fit(X, t, y * 12.5)
    with pytest.raises(SchemaError, match="expected both outcomes"):
        TLearner().fit(X, t, np.where(t == "coupon", 1, y))
    with pytest.raises(SchemaError, match="missing labels"):
        TLearner().fit(X, np.where(np.arange(len(t)) == 3, None, t), y)
    with pytest.raises(SchemaError, match="binary outcome"):
        TLearner(outcome="binary").fit(X, t, y * 2.5)
    with pytest.raises(ConfigError, match="outcome 'auto', 'binary' or 'continuous'"):
        TLearner(outcome="count").fit(X, t, y)
    with pytest.raises(ConfigError, match="propensity"):
        XLearner(propensity="logit").fit(X, t, y)
    with pytest.raises(ConfigError, match="n_folds"):
        DRLearner(n_folds=1).fit(X, t, y)


def test_metric_refusals() -> None:
    y, u, t = _planted(200)
    with pytest.raises(SchemaError, match=re.escape(
            "qini_coefficient: expected y, uplift and treatment of equal length; found "
            "lengths 200, 199 and 200.")):
        qini_coefficient(y, u[:-1], t)
    with pytest.raises(SchemaError, match="treatment of 0 \\(control\\) and 1"):
        auuc(y, u, np.ones_like(t))
    with pytest.raises(SchemaError, match="finite uplift"):
        uplift_at_k(y, np.where(np.arange(200) == 0, np.nan, u), t)
    with pytest.raises(ConfigError, match="k a share in"):
        uplift_at_k(y, u, t, k=1.5)
    with pytest.raises(ConfigError, match="strategy"):
        uplift_at_k(y, u, t, strategy="top")
    with pytest.raises(ConfigError, match="n_random"):
        evaluate_uplift(y, u, t, n_random=1)


def test_load_model_refuses_other_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_model(tmp_path / "absent.joblib")
    junk = tmp_path / "junk.joblib"
    junk.write_bytes(b"not a pickle at all")
    with pytest.raises(ConfigError, match="an unreadable file"):
        load_model(junk)
    other = tmp_path / "other.joblib"
    joblib.dump({"weights": [1, 2]}, other)
    with pytest.raises(ConfigError, match=re.escape('expected "format": "marketloop-uplift"')):
        load_model(other)
    old = tmp_path / "old.joblib"
    joblib.dump({"format": "marketloop-uplift", "version": 0, "model": None}, old)
    with pytest.raises(ConfigError, match="Save the model again"):
        load_model(old)
    with pytest.raises(NotFittedError):
        TLearner().save(tmp_path / "unfitted.joblib")


def test_nobody_to_score_is_an_empty_answer_not_a_lightgbm_error() -> None:
    from marketloop.predict import ChurnModel, NextPurchaseModel

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(400, 3)), columns=list("abc"))
    t, y = rng.choice(["control", "pct10"], 400), (rng.random(400) < 0.3).astype(int)
    for learner in (TLearner, XLearner, DRLearner, ClassTransformation):
        got = learner(random_state=0).fit(X, t, y).predict(X.iloc[:0])
        assert got.shape == (0, 1) and list(got.columns) == ["pct10"], learner
    churned = pd.Series(y, index=X.index)
    churn = ChurnModel(n_estimators=20, features=list("abc"), random_state=0).fit(X, churned)
    assert churn.predict(X.iloc[:0]).empty and churn.contributions(X.iloc[:0]).shape == (0, 4)
    labels = pd.DataFrame({"purchased": y, "days_to_next": rng.integers(1, 30, 400)},
                          index=X.index)
    nxt = NextPurchaseModel(n_estimators=20, features=list("abc"), random_state=0).fit(X, labels)
    assert nxt.predict(X.iloc[:0]).empty and nxt.expected_days(X.iloc[:0]).empty
    with pytest.raises(SchemaError, match="at least one profile row to learn from"):
        ChurnModel(features=list("abc")).fit(X.iloc[:0], churned.iloc[:0])


def test_arms_too_small_for_the_default_model_are_warned_about() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(120, 3)), columns=list("abc"))
    t = np.where(rng.random(120) < 0.3, "control", "pct10")
    y = (rng.random(120) < 0.3).astype(int)
    with pytest.warns(MarketloopWarning, match=r"TLearner.fit: arms \{'control': \d+, 'pct10': "
                      r"\d+\} have fewer than 100 rows"):
        flat = TLearner(random_state=0).fit(X, t, y)
    assert flat.predict(X)["pct10"].nunique() == 1  # what the warning is about
    with warnings.catch_warnings():
        warnings.simplefilter("error", MarketloopWarning)
        from sklearn.linear_model import LogisticRegression

        TLearner(base=LogisticRegression()).fit(X, t, y)  # a model for small data: no warning
        ClassTransformation(random_state=0).fit(X, t, y)  # one model over every row


def test_next_purchase_labels_of_a_longer_window_are_refused() -> None:
    from marketloop.predict import NextPurchaseModel

    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(200, 3)), columns=list("abc"))
    labels = pd.DataFrame({"purchased": rng.random(200) < 0.4,
                           "days_to_next": rng.uniform(1, 89, 200)}, index=X.index)
    labels["purchased"] = labels["purchased"].astype(int)
    with pytest.raises(SchemaError, match=r"days_to_next <= horizon_days 30\); found "
                                          r"days_to_next up to 8\d"):
        NextPurchaseModel(horizon_days=30, features=list("abc")).fit(X, labels)
