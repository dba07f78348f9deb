"""The demo's online stage: contextual bandits against a fixed A/B/n test and the oracle."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd

from marketloop.simulate import MarketEnv, Shop
from marketloop.strategy.bandits import EpsilonGreedy, LinUCB
from marketloop.strategy.online import run_season, simulator_actions


@dataclass
class SeasonFigures:
    """Per policy and day of the season (``run_season``'s table) and its headline numbers."""

    daily: pd.DataFrame
    n_days: int
    contacts_per_day: int
    n_actions: int

    def final(self) -> pd.DataFrame:
        """One row per policy: cumulative conversions, profit and regret at the season's end."""
        last = self.daily.groupby("policy", sort=False).last()
        return last[["cum_conversions", "cum_profit", "cum_expected_profit", "cum_regret"]]


def season_stage(
    shop: Shop, *, n_days: int = 30, contacts_per_day: int = 400, random_state: int = 0
) -> SeasonFigures:
    """LinUCB and epsilon-greedy learn offer, channel, send hour and format over a season.

    (Linear Thompson sampling is left out here: its exact propensities cost about 6 ms a
    decision with the shared model on this action set, too slow for the demo's budget;
    ``bench/bench_bandits.py --season`` runs it.)
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    actions = simulator_actions(
        channels=("email", "app"), hours=(9, 19), formats=("plain", "personal")
    )
    policies = {
        "epsilon-greedy": EpsilonGreedy(actions, model="shared", epsilon=0.1, ridge=30.0),
        "LinUCB": LinUCB(actions, model="shared", alpha=5.0, ridge=30.0),
        "A/B/n test": "ab",
    }
    daily = run_season(
        lambda: MarketEnv(shop, random_state=random_state + 1),
        policies,
        n_days=n_days,
        contacts_per_day=contacts_per_day,
        actions=actions,
        seed=random_state,
    )
    return SeasonFigures(daily, n_days, contacts_per_day, len(actions))
