"""Online season against the simulator: bandits beat a fixed A/B/n test, regret shrinks."""

from __future__ import annotations

import os
import re

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pandas as pd
import pytest

from marketloop.exceptions import SchemaError
from marketloop.simulate import Market, MarketEnv
from marketloop.strategy.bandits import Choice, LinTS, LinUCB
from marketloop.strategy.online import (
    play_season,
    run_season,
    simulator_actions,
    simulator_profiles,
    summarise_season,
)

N_DAYS, PER_DAY, SEED = 30, 400, 0
ACTIONS = simulator_actions(channels=("email", "app"), hours=(9, 19),
                            formats=("plain", "personal"))        # 32 contacts + no contact


class RecordingLinTS(LinTS):
    """LinTS that keeps every Choice it returned, to compare with the season's log."""

    def choose(self, *args, **kwargs) -> Choice:
        choice = super().choose(*args, **kwargs)
        self.__dict__.setdefault("_returned", []).append(choice)
        return choice


@pytest.fixture(scope="module")
def shop():
    return Market(n_customers=3_000, n_days=180, random_state=0).simulate(
        ("customers", "orders"), full_truth=False)


@pytest.fixture(scope="module")
def season(shop):
    lin_ts = RecordingLinTS(ACTIONS, model="shared", scale=5.0, ridge=30.0)
    lin_ucb = LinUCB(ACTIONS, model="shared", alpha=5.0, ridge=30.0)
    log = play_season(lambda: MarketEnv(shop, random_state=1),
                      {"lin_ts": lin_ts, "lin_ucb": lin_ucb, "ab": "ab"},
                      n_days=N_DAYS, contacts_per_day=PER_DAY, actions=ACTIONS, seed=SEED)
    return log, lin_ts


def test_a_bandit_beats_the_ab_test_in_cumulative_profit(season) -> None:
    log, _ = season
    final = summarise_season(log).groupby("policy").last()
    best = final.loc[["lin_ts", "lin_ucb"], "cum_profit"].max()
    # The environments share their random stream (same seed, same draws per day), so
    # outcomes are common random numbers and the gap is the policies'. The best bandit's
    # profit over the A/B/n test's, this set-up with seeds 0-3: 1.21, 1.22, 1.09, 1.12
    # (seed 0 here); a policy linear in the observable features can reach at best
    # 3.40 EUR per decision against 2.82 for the A/B/n split (the oracle: 3.82).
    assert best > 1.05 * final.loc["ab", "cum_profit"]
    assert final.loc[["lin_ts", "lin_ucb"], "cum_expected_profit"].max() > (
        1.05 * final.loc["ab", "cum_expected_profit"])
    assert final.loc["oracle", "cum_expected_profit"] > final["cum_expected_profit"].drop(
        "oracle").max()


def test_regret_is_positive_and_shrinks(season) -> None:
    log, _ = season
    summary = summarise_season(log)
    daily = summary.set_index(["policy", "day"])["regret"]
    assert (daily.loc["oracle"] == 0).all()
    half = N_DAYS // 2
    ab = daily.loc["ab"].to_numpy()
    assert (ab > 0).all() and ab[half:].mean() > ab[:half].mean()  # the world gets harder

    def shrink(x: np.ndarray) -> float:
        return x[half:].mean() / x[:half].mean()

    # Regret per day as a share of the A/B/n split's on the same customers (which removes
    # the day-to-day mix), second half over first half, seeds 0-3 (seed 0 here):
    # LinTS 0.92, 0.81, 1.00, 0.87; LinUCB 0.81, 0.79, 0.95, 0.84.
    for name in ("lin_ts", "lin_ucb"):
        regret = daily.loc[name].to_numpy()
        assert (regret > 0).all()
        assert shrink(regret / ab) < 0.97, name
    # the best bandit's own regret per day falls (LinUCB, seed 0: 0.90)
    best = summary.groupby("policy")["cum_profit"].last().drop(["oracle", "ab"]).idxmax()
    assert shrink(daily.loc[best].to_numpy()) < 1.0


def test_logged_propensities_are_the_ones_used(season) -> None:
    log, lin_ts = season
    mine = log[log["policy"] == "lin_ts"]
    returned = lin_ts._returned
    assert len(returned) == len(mine) == N_DAYS * PER_DAY
    np.testing.assert_array_equal(mine["action"], [c.action for c in returned])
    np.testing.assert_array_equal(mine["propensity"], [c.propensity for c in returned])
    assert all(c.propensity == c.probabilities[c.action] > 0 for c in returned)
    ab = log[log["policy"] == "ab"]
    np.testing.assert_allclose(ab["propensity"], 1 / len(ACTIONS))


def test_run_season_is_deterministic(shop) -> None:
    def once() -> pd.DataFrame:
        return run_season(lambda: MarketEnv(shop, random_state=3),
                          {"lin_ucb": LinUCB(ACTIONS, model="shared"), "ab": "ab"},
                          n_days=2, contacts_per_day=40, actions=ACTIONS, seed=5)

    first = once()
    pd.testing.assert_frame_equal(first, once())
    assert list(first.columns) == [
        "policy", "day", "decisions", "conversions", "profit", "expected_profit", "regret",
        "cum_conversions", "cum_profit", "cum_expected_profit", "cum_regret"]


def test_profiles_are_observable_features_only(shop) -> None:
    profiles = simulator_profiles(shop)
    assert profiles.index.equals(pd.Index(shop.customers["customer_id"], name="customer_id"))
    assert np.isfinite(profiles.to_numpy()).all()
    assert not set(profiles.columns) & set(shop.truth.customers.columns)


def test_profiles_must_cover_every_customer(shop) -> None:
    partial = simulator_profiles(shop).iloc[10:]
    with pytest.raises(SchemaError, match=re.escape(
            "play_season profiles: expected a row for every customer; found 10 customers "
            "missing")):
        play_season(lambda: MarketEnv(shop, random_state=1), {"ab": "ab"}, n_days=1,
                    actions=ACTIONS, profiles=partial)
