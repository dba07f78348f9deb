"""Online runs against the market simulator: bandits, a fixed A/B/n test and the oracle.

Each policy plays a season of days in its own :class:`~marketloop.simulate.MarketEnv`
(the same seed, so the same starting world), on the same customers each day: it chooses
an action per customer from the customer's profile and live state, the environment draws
the outcomes, and the policy learns that day's rewards (realised profit) in one batch.
The oracle picks, per customer, the action of best *true* expected profit given the
world's state; regret is the true expected profit the policy left on the table.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, Protocol

import numpy as np
import pandas as pd

from marketloop.exceptions import ConfigError, SchemaError, describe
from marketloop.simulate import Market, MarketEnv, Shop, action_catalogue
from marketloop.strategy.bandits import ActionSet, Choice, Uniform

#: Columns a decision needs in the simulator.
DECISION_COLUMNS = ("offer", "channel", "send_hour", "format")
#: The no-contact action's attributes.
NO_CONTACT = {"offer": "no_contact", "channel": "no_contact", "send_hour": 12,
              "format": "none", "discount": 0.0, "depth": 0.0}
_DEPTH = {"none": 0.0, "pct10": 0.10, "pct20": 0.20, "freeship": 0.08}


class Policy(Protocol):
    """What :func:`run_season` needs of a policy."""

    def choose(self, x: object = None, allowed: object = None,
               rng: np.random.Generator | int | None = None) -> Choice: ...

    def partial_fit(self, X: object, actions: object, rewards: object,
                    propensities: object = None) -> object: ...


def simulator_actions(
    offers: Sequence[str] = ("none", "pct10", "pct20", "freeship"),
    channels: Sequence[str] = ("email", "sms", "push", "app"),
    hours: Sequence[int] = (9, 13, 19),
    formats: Sequence[str] = ("plain", "visual", "personal"),
    *,
    no_contact: bool = True,
) -> ActionSet:
    """The simulator's actions: offer x channel x send hour x format (and no contact).

    Each action has the simulator's decision columns plus ``discount`` (the share off,
    from :func:`~marketloop.simulate.action_catalogue`) and ``depth`` (the offer's depth
    as a price-sensitive customer sees it), and ``send_hour`` is encoded cyclically.

    Examples
    --------
    >>> len(simulator_actions()), len(simulator_actions(channels=["email"], formats=["plain"]))
    (145, 13)
    """
    cat = action_catalogue().drop_duplicates("offer").set_index("offer")["discount"]
    unknown = [o for o in offers if o not in _DEPTH]
    if unknown:
        raise ConfigError(describe("simulator_actions offers", f"offers among {list(_DEPTH)}",
                                   f"{unknown}"))
    records: list[dict[str, str | int | float]] = [
        {"offer": o, "channel": c, "send_hour": int(h), "format": f,
         "discount": float(cat[o]), "depth": _DEPTH[o]}
        for o, c, h, f in itertools.product(offers, channels, hours, formats)]
    if no_contact:
        records.append(dict(NO_CONTACT))
    return ActionSet(records, cyclic={"send_hour": 24})


def simulator_profiles(shop: Shop | Market) -> pd.DataFrame:
    """Observable features per customer at the period end, standardised, by ``customer_id``.

    From the shop's own tables only (never the truth): log recency, frequency, average
    order value and tenure; the circular mean of the order hours (``hour_sin``,
    ``hour_cos``; orders cluster around the customer's preferred hour); device and income
    band one-hot.
    """
    if isinstance(shop, Market):
        shop = shop.simulate(("customers", "orders"), full_truth=False)
    orders = shop.orders.loc[shop.orders["status"] != "cancelled"]
    end = pd.Timestamp(shop.truth.params["end"])
    hours = orders["ordered_at"].dt.hour + orders["ordered_at"].dt.minute / 60.0
    angle = 2 * np.pi * hours / 24
    per = pd.DataFrame({"customer_id": orders["customer_id"], "amount": orders["amount"],
                        "at": orders["ordered_at"], "s": np.sin(angle), "c": np.cos(angle)})
    g = per.groupby("customer_id")
    agg = pd.DataFrame({
        "recency": np.log1p((end - g["at"].max()).dt.total_seconds() / 86_400),
        "frequency": np.log1p(g.size()),
        "avg_order_value": np.log(g["amount"].mean().clip(lower=1.0)),
        "hour_sin": g["s"].mean(),
        "hour_cos": g["c"].mean(),
    })
    customers = shop.customers.set_index("customer_id")
    tenure = (end - pd.to_datetime(customers["first_seen"])).dt.total_seconds() / 86_400
    agg = agg.reindex(customers.index)
    agg["tenure"] = np.log1p(tenure.clip(lower=0))
    agg = agg.fillna({"recency": np.log1p(3650.0), "frequency": 0.0,
                      "avg_order_value": 0.0, "hour_sin": 0.0, "hour_cos": 0.0})
    numeric = ["recency", "frequency", "avg_order_value", "tenure"]
    agg[numeric] = (agg[numeric] - agg[numeric].mean()) / agg[numeric].std(ddof=0).replace(0, 1)
    dummies = pd.get_dummies(customers[["device", "income_band"]].astype(str), dtype=float)
    out = pd.concat([agg, dummies], axis=1)
    out.index.name = "customer_id"
    return out.astype(np.float64)


def _daily_customers(ids: pd.Index, n_days: int, per_day: int, seed: int) -> list[np.ndarray]:
    """The customers contacted each day (positions), the same for every policy."""
    rng = np.random.default_rng([seed, 1])
    size = min(per_day, len(ids))
    return [np.sort(rng.choice(len(ids), size=size, replace=False)) for _ in range(n_days)]


def _truth_matrix(env: MarketEnv, ids: np.ndarray, frame: pd.DataFrame) -> np.ndarray:
    """True expected profit of every action for every customer, (n_customers, n_actions)."""
    n, k = len(ids), len(frame)
    grid = frame.iloc[np.tile(np.arange(k), n)].reset_index(drop=True)
    grid.insert(0, "customer_id", np.repeat(ids, k))
    return env.expected(grid)["expected_profit"].to_numpy().reshape(n, k)


def _rewards(outcomes: pd.DataFrame, frame: pd.DataFrame, chosen: np.ndarray,
             margin: float) -> np.ndarray:
    """Realised profit per decision: margin on the paid order, coupon and contact costs."""
    cat = action_catalogue().drop_duplicates("offer").set_index("offer")
    coupon = frame["offer"].map(cat["coupon_cost"]).fillna(0.0).to_numpy()[chosen]
    contact = frame["channel"].map(
        action_catalogue().drop_duplicates("channel").set_index("channel")["contact_cost"]
    ).fillna(0.0).to_numpy()[chosen]
    delivered = outcomes["delivered"].to_numpy()
    converted = outcomes["converted"].to_numpy()
    return (converted * (outcomes["revenue"].to_numpy() * margin - coupon * delivered)
            - contact * delivered)


def play_season(
    env_factory: Callable[[], MarketEnv],
    policies: Mapping[str, Policy | Literal["ab"]],
    *,
    n_days: int = 30,
    contacts_per_day: int = 200,
    actions: ActionSet | None = None,
    profiles: pd.DataFrame | None = None,
    margin: float = 0.40,
    seed: int = 0,
) -> pd.DataFrame:
    """Play a season and return every decision (see :func:`run_season` for the parameters).

    Returns
    -------
    pandas.DataFrame
        One row per policy, day and customer: ``policy``, ``day``, ``customer_id``,
        ``action`` (index), ``propensity`` (as the policy reported it when choosing),
        ``converted``, ``reward`` (realised profit), ``expected_profit`` (true, of the
        chosen action), ``oracle_profit`` (true, of the best action) and ``regret``.
    """
    if n_days < 1 or contacts_per_day < 1:
        raise ConfigError(describe("play_season", "n_days >= 1 and contacts_per_day >= 1",
                                   f"{n_days} and {contacts_per_day}"))
    actions = actions if actions is not None else simulator_actions()
    frame = actions.to_frame()
    missing = [c for c in DECISION_COLUMNS if c not in frame.columns]
    if missing:
        raise SchemaError(describe("play_season actions", f"attributes {DECISION_COLUMNS}",
                                   f"{list(frame.columns)} ({missing} missing)"))
    probe = env_factory()
    if profiles is None:
        profiles = simulator_profiles(probe.shop_or_market)
    ids = probe.customer_ids.to_numpy(dtype=object)
    absent = ~probe.customer_ids.isin(profiles.index)
    if absent.any():
        raise SchemaError(describe("play_season profiles", "a row for every customer",
                                   f"{int(absent.sum())} customers missing, e.g. "
                                   f"{ids[absent][:3].tolist()}"))
    static = profiles.loc[ids].to_numpy(dtype=np.float64)
    days = _daily_customers(probe.customer_ids, n_days, contacts_per_day, seed)
    runs = {"oracle": "oracle", **policies}
    logs = []
    for i, (name, policy) in enumerate(runs.items()):
        if policy == "ab":
            policy = Uniform(len(actions))
        # a stream per policy name: a policy's draws do not depend on who else runs
        rng = np.random.default_rng([seed, 2, zlib.crc32(name.encode())])
        env = env_factory() if i else probe
        for day, pos in enumerate(days):
            logs.append(_play_day(env, policy, name, day, pos, ids, static, frame, margin, rng))
    return pd.concat(logs, ignore_index=True)


def _play_day(env: MarketEnv, policy: Policy | str, name: str, day: int, pos: np.ndarray,
              ids: np.ndarray, static: np.ndarray, frame: pd.DataFrame, margin: float,
              rng: np.random.Generator) -> pd.DataFrame:
    """One day of one policy: contexts, choices, outcomes, rewards, learning."""
    recent = np.log1p(env.recent_contacts()[pos])[:, None]
    X = np.hstack([static[pos], recent])
    truth = _truth_matrix(env, ids[pos], frame)
    if isinstance(policy, str):  # the oracle
        chosen, propensity = truth.argmax(axis=1), np.ones(len(pos))
    else:
        choices = [policy.choose(x, rng=rng) for x in X]
        chosen = np.array([c.action for c in choices], dtype=np.int64)
        propensity = np.array([c.propensity for c in choices])
    decisions = frame.loc[chosen, list(DECISION_COLUMNS)].reset_index(drop=True)
    decisions.insert(0, "customer_id", ids[pos])
    outcomes = env.step(decisions)
    reward = _rewards(outcomes, frame, chosen, margin)
    if not isinstance(policy, str):
        policy.partial_fit(X, chosen, reward, propensity)
    rows = np.arange(len(pos))
    expected, best = truth[rows, chosen], truth.max(axis=1)
    return pd.DataFrame({
        "policy": name, "day": day, "customer_id": ids[pos], "action": chosen,
        "propensity": propensity, "converted": outcomes["converted"].to_numpy(),
        "reward": reward, "expected_profit": expected, "oracle_profit": best,
        "regret": best - expected,
    })


def summarise_season(log: pd.DataFrame) -> pd.DataFrame:
    """Per policy and day: decisions, conversions, profit, regret, and their running sums."""
    daily = log.groupby(["policy", "day"], sort=False).agg(
        decisions=("action", "size"), conversions=("converted", "sum"),
        profit=("reward", "sum"), expected_profit=("expected_profit", "sum"),
        regret=("regret", "sum")).reset_index()
    for col in ("conversions", "profit", "expected_profit", "regret"):
        daily[f"cum_{col}"] = daily.groupby("policy", sort=False)[col].cumsum()
    return daily


def run_season(
    env_factory: Callable[[], MarketEnv],
    policies: Mapping[str, Policy | Literal["ab"]],
    *,
    n_days: int = 30,
    contacts_per_day: int = 200,
    actions: ActionSet | None = None,
    profiles: pd.DataFrame | None = None,
    margin: float = 0.40,
    seed: int = 0,
) -> pd.DataFrame:
    """Run policies, a fixed A/B/n test and the oracle over a season against the simulator.

    Parameters
    ----------
    env_factory : callable returning MarketEnv
        Makes a fresh environment; every call must give the same world (same shop, same
        ``random_state``), e.g. ``lambda: MarketEnv(shop, random_state=1)``.
    policies : dict of str to policy or "ab"
        Policies to run (anything with ``choose`` and ``partial_fit``); ``"ab"`` is a
        fixed A/B/n test, an equal random split over every action. The oracle is added
        under the name ``"oracle"``.
    n_days : int, default=30
        Days in the season.
    contacts_per_day : int, default=200
        Customers decided for each day (drawn at random, the same for every policy;
        a decision may be ``no_contact``).
    actions : ActionSet or None, default=None
        Actions with the columns ``offer, channel, send_hour, format``; None is
        :func:`simulator_actions` (145 actions). Policies must be built on the same set.
    profiles : DataFrame or None, default=None
        Context features by ``customer_id``; None is :func:`simulator_profiles` of the
        environment's shop. The live log-count of contacts in the last 14 days is
        appended as the last feature.
    margin : float, default=0.40
        The shop's gross margin on paid order value (the simulator's is 0.40).
    seed : int, default=0
        Seed of the daily customers and of each policy's draws.

    Returns
    -------
    pandas.DataFrame
        One row per policy and day: ``decisions``, ``conversions``, ``profit`` (realised),
        ``expected_profit`` (true expectation of the chosen actions), ``regret`` (vs the
        oracle, in true expected profit) and their cumulative ``cum_*`` columns.

    Examples
    --------
    >>> from marketloop.simulate import Market, MarketEnv
    >>> from marketloop.strategy.bandits import LinTS
    >>> shop = Market(n_customers=500, n_days=90, random_state=0).simulate(
    ...     ("customers", "orders"), full_truth=False)
    >>> acts = simulator_actions(channels=["email"], hours=[19], formats=["plain"])
    >>> out = run_season(lambda: MarketEnv(shop, random_state=0),
    ...                  {"lin_ts": LinTS(acts, model="shared", scale=5.0), "ab": "ab"},
    ...                  n_days=3, contacts_per_day=50, actions=acts)
    >>> sorted(out["policy"].unique())
    ['ab', 'lin_ts', 'oracle']
    """
    log = play_season(env_factory, policies, n_days=n_days, contacts_per_day=contacts_per_day,
                      actions=actions, profiles=profiles, margin=margin, seed=seed)
    return summarise_season(log)
