"""Decisions per second, 50 actions x 30 context features, one core: marketloop vs Vowpal Wabbit.

Every policy first learns the same 5,000 logged rows (uniform logging, rewards linear in the
context per action plus noise), then decides for 2,000-20,000 fresh contexts; a decision is
``policy.choose(x)``: scores, the whole probability vector with guardrails (LinTS: the exact
probability that each action's posterior draw is the largest, by quadrature), one draw, the
propensity. The peer is Vowpal Wabbit 9 through its Python binding, ``--cb_explore_adf
--epsilon 0.05 -q SA``: a shared line with the 30 context features and one line per action
(its one-hot), pre-formatted once; a VW decision formats the shared line, calls ``predict``
(VW's probability mass function) and draws from it. Best of 3 runs each; numpy/BLAS pinned
to one thread; the load average is printed (a shared 2-core machine moves every timing).

``--season`` prints instead a season against the simulator (bandits, VW, a fixed A/B/n
split and the oracle; the figures of docs/bandits.md).

Run: .venv/bin/python bench/bench_bandits.py [--season]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from marketloop.strategy.bandits import EpsilonGreedy, LinTS, LinUCB  # noqa: E402

N_ACTIONS, N_FEATURES, N_LOG = 50, 30, 5_000


def logged(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N_LOG, N_FEATURES))
    W = rng.normal(0, 0.1, size=(N_ACTIONS, N_FEATURES))
    a = rng.integers(0, N_ACTIONS, N_LOG)
    r = (X * W[a]).sum(axis=1) + rng.normal(0, 0.5, N_LOG)
    return X, a, r


def rate(decide: Callable[[np.ndarray], object], contexts: np.ndarray) -> float:
    """Decisions per second, best of 3 passes over ``contexts``."""
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        for x in contexts:
            decide(x)
        best = min(best, time.perf_counter() - start)
    return len(contexts) / best


def vw_peer(X: np.ndarray, a: np.ndarray, r: np.ndarray) -> Callable[[np.ndarray], int]:
    import vowpalwabbit

    vw = vowpalwabbit.Workspace("--cb_explore_adf --epsilon 0.05 -q SA --quiet "
                                "--random_seed 0")
    lines = [f"|A a{i}" for i in range(N_ACTIONS)]
    names = [f"x{j}" for j in range(N_FEATURES)]

    def shared(x: np.ndarray) -> str:
        return "shared |S " + " ".join(f"{n}:{v:.6g}" for n, v in zip(names, x, strict=True))

    for x, ai, ri in zip(X, a, r, strict=True):
        ex = [shared(x), *lines]
        ex[1 + ai] = f"0:{-ri:.6g}:{1 / N_ACTIONS} {ex[1 + ai]}"
        vw.learn(ex)
    rng = np.random.default_rng(0)

    def decide(x: np.ndarray) -> int:
        pmf = np.asarray(vw.predict([shared(x), *lines]))
        return int(np.searchsorted(np.cumsum(pmf), rng.random() * pmf.sum()))

    return decide


def decisions() -> None:
    X, a, r = logged()
    p = np.full(N_LOG, 1 / N_ACTIONS)
    contexts = np.random.default_rng(1).normal(size=(20_000, N_FEATURES))
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    peer = rate(vw_peer(X, a, r), contexts[:4_000])
    print(f"n_actions={N_ACTIONS} n_features={N_FEATURES} one thread; "
          f"vowpalwabbit cb_explore_adf: {peer:,.0f} decisions/s ({1e6 / peer:.0f} us)")
    policies = {
        "LinUCB (disjoint)": (LinUCB(N_ACTIONS, alpha=0.5, random_state=0), 20_000),
        "EpsilonGreedy (disjoint)": (EpsilonGreedy(N_ACTIONS, random_state=0), 20_000),
        "LinTS (disjoint, exact propensity)": (LinTS(N_ACTIONS, scale=0.5, random_state=0),
                                               4_000),
        "LinUCB (min_exploration=0.05)": (
            LinUCB(N_ACTIONS, alpha=0.5, min_exploration=0.05, random_state=0), 20_000),
    }
    for name, (policy, n) in policies.items():
        policy.fit(X, a, r, p)
        ours = rate(policy.choose, contexts[:n])
        print(f"marketloop {name}: {ours:,.0f} decisions/s ({1e6 / ours:.0f} us); "
              f"ratio marketloop/vw = {ours / peer:.1f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def season() -> None:
    from marketloop.simulate import Market, MarketEnv
    from marketloop.strategy.bandits import VWPolicy
    from marketloop.strategy.online import run_season, simulator_actions

    actions = simulator_actions()
    shop = Market(n_customers=3_000, n_days=180, random_state=0).simulate(
        ("customers", "orders"), full_truth=False)
    policies = {
        "lin_ts": LinTS(actions, model="shared", scale=5.0, ridge=30.0),
        "lin_ucb": LinUCB(actions, model="shared", alpha=5.0, ridge=30.0),
        "epsilon_greedy": EpsilonGreedy(actions, model="shared", epsilon=0.1, ridge=30.0),
        "vw": VWPolicy(actions, random_state=0),
        "ab": "ab",
    }
    start = time.perf_counter()
    out = run_season(lambda: MarketEnv(shop, random_state=1), policies, n_days=30,
                     contacts_per_day=400, actions=actions, seed=0)
    final = out.groupby("policy").last()
    half = out["day"] >= 15
    regret = out.groupby(["policy", half])["regret"].mean().unstack()
    ab = final.loc["ab"]
    print(f"season: 3,000 customers, 30 days x 400 decisions, {len(actions)} actions, seed 0, "
          f"{time.perf_counter() - start:.0f} s")
    print("policy            conversions   profit  exp.profit   regret  vs A/B/n  "
          "regret/day 1st->2nd half")
    for name, row in final.sort_values("cum_expected_profit").iterrows():
        print(f"{name:<16} {row.cum_conversions:>12,.0f} {row.cum_profit:>8,.0f} "
              f"{row.cum_expected_profit:>11,.0f} {row.cum_regret:>8,.0f} "
              f"{row.cum_profit / ab.cum_profit - 1:>+8.1%}  "
              f"{regret.loc[name, False]:>7,.0f} -> {regret.loc[name, True]:,.0f}")


if __name__ == "__main__":
    season() if "--season" in sys.argv else decisions()
