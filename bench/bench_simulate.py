"""Simulator speed: a year of 100k customers (orders, lines, events, texts, consents, truth)
vs lifetimes' BG/NBD generator (frequency, recency, T only) for the same customers, same run.

Run: .venv/bin/python bench/bench_simulate.py [n_customers]
(``pip install lifetimes`` into the venv for the peer; without it a plain-numpy BG/NBD draw
stands in and the output says so.)
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

from marketloop.simulate import Market, write_export


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def peer(n: int, days: int) -> tuple[str, float]:
    """lifetimes' generator with the simulator's BG/NBD parameters (per week, T = 52 weeks)."""
    r, alpha, a, b = 0.9, 6.0, 0.8, 3.0
    T = days / 7.0
    try:
        from lifetimes.generate_data import beta_geometric_nbd_model

        secs, _ = timed(lambda: beta_geometric_nbd_model(T, r, alpha, a, b, size=n))
        return "lifetimes.generate_data.beta_geometric_nbd_model", secs
    except Exception as exc:  # lifetimes absent or broken on this numpy/pandas
        rng = np.random.default_rng(0)

        def numpy_bgnbd() -> object:
            lam = rng.gamma(r, 1 / alpha, n)
            p = rng.beta(a, b, n)
            return np.minimum(rng.poisson(lam * T), rng.geometric(p))

        secs, _ = timed(numpy_bgnbd)
        return f"plain-numpy BG/NBD (lifetimes unavailable: {type(exc).__name__})", secs


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    days = 365
    market = Market(n_customers=n, n_days=days, random_state=0)
    sim_s, shop = timed(market.simulate)
    with tempfile.TemporaryDirectory() as out:
        exp_s, result = timed(lambda: write_export(shop, out, random_state=0))
    peer_name, peer_s = peer(n, days)
    rows = result.rows  # type: ignore[attr-defined]
    total = sim_s + exp_s
    print(f"customers={n:,} days={days} orders={rows['orders']:,} "
          f"lines={rows['order_lines']:,} events={rows['events']:,} | "
          f"simulate {sim_s:.1f}s + csv export {exp_s:.1f}s = {total:.1f}s "
          f"({n / total:,.0f} customers/s; simulate alone {n / sim_s:,.0f}/s) | "
          f"peer {peer_name}: {peer_s:.1f}s ({n / peer_s:,.0f} customers/s) | "
          f"ratio ours/peer time = {total / peer_s:.2f}x")


if __name__ == "__main__":
    main()
