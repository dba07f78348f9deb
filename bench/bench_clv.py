"""BG/NBD fit on 1,000,000 customers: marketloop vs lifetimes and pymc-marketing, one run.

The data are drawn directly from the BG/NBD generative process with numpy (not the shop
simulator, which would spend minutes on orders nobody reads here): lambda ~ Gamma(r, alpha)
per week, p ~ Beta(a, b), T a whole number of days (1-365) in weeks, N ~ Poisson(lambda T),
dropout at the J-th purchase, J ~ Geometric(p), x = min(N, J), recency the x-th of N uniform
purchase times rounded to the day. All three fit the same (frequency, recency, T) frame:
``BetaGeoModel().fit`` (maximum likelihood summed over distinct rows, Newton steps with the
analytic Hessian), ``lifetimes.BetaGeoFitter(penalizer_coef=0).fit`` and
``pymc_marketing.clv.BetaGeoModel`` with flat priors on r, alpha, a, b and
``fit(method="map")``, which is maximum likelihood.
pymc-marketing runs twice: the first run includes compiling the model. The machine's load
average is printed before and after: on a shared 2-core machine it moves every timing.

Run: .venv/bin/python bench/bench_clv.py [n_customers]
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

from marketloop.predict import BetaGeoModel

TRUE = {"r": 0.9, "alpha": 6.0, "a": 0.8, "b": 3.0}
NAMES = ("r", "alpha", "a", "b")


def draw(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lam = rng.gamma(TRUE["r"], 1.0 / TRUE["alpha"], n)
    p = rng.beta(TRUE["a"], TRUE["b"], n)
    T = rng.integers(1, 366, n) / 7.0
    N = rng.poisson(lam * T)
    x = np.minimum(N, rng.geometric(p))
    t_x = np.zeros(n)
    rep = x > 0
    t_x[rep] = T[rep] * rng.beta(x[rep], N[rep] - x[rep] + 1)
    return pd.DataFrame(
        {"customer_id": np.arange(n), "frequency": x, "recency": np.round(t_x * 7) / 7, "T": T}
    )


def timed(fn: Callable[[], dict[str, float]]) -> tuple[float, dict[str, float]]:
    start = time.perf_counter()
    params = fn()
    return time.perf_counter() - start, params


def ours(data: pd.DataFrame) -> dict[str, float]:
    return BetaGeoModel().fit(data.set_index("customer_id")).params_


def lifetimes_fit(data: pd.DataFrame) -> dict[str, float]:
    from lifetimes import BetaGeoFitter

    fitter = BetaGeoFitter(penalizer_coef=0.0)
    fitter.fit(data["frequency"], data["recency"], data["T"])
    return {k: float(fitter.params_[k]) for k in NAMES}


def pymc_fit(data: pd.DataFrame) -> dict[str, float]:
    from pymc_extras.prior import Prior
    from pymc_marketing.clv import BetaGeoModel as PymcBetaGeo

    config = {k: Prior("HalfFlat") for k in NAMES}
    model = PymcBetaGeo(model_config=config)
    model.fit(data=data, method="map", progressbar=False)
    post = model.fit_result
    return {k: float(post[k].values.ravel()[0]) for k in NAMES}


def max_rel_diff(a: dict[str, float], b: dict[str, float]) -> float:
    return max(abs(a[k] - b[k]) / abs(b[k]) for k in NAMES)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    print("load average (1, 5, 15 min) before: " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    data = draw(n)
    distinct = len(data[["frequency", "recency", "T"]].drop_duplicates())
    print(f"bgnbd fit n_customers={n:,} distinct_rows={distinct:,} "
          f"repeat_buyers={int((data.frequency > 0).sum()):,}")
    runs = [timed(lambda: ours(data)) for _ in range(3)]
    t_ours, p_ours = min(runs, key=lambda r: r[0])
    print(f"marketloop  {t_ours:7.2f}s (best of 3)  "
          + " ".join(f"{k}={p_ours[k]:.4f}" for k in NAMES))
    peers: list[tuple[str, float, dict[str, float]]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            t, p = timed(lambda: lifetimes_fit(data))
            peers.append(("lifetimes", t, p))
        except Exception as exc:  # a peer that cannot run is reported, not fatal
            print(f"lifetimes   could not run: {type(exc).__name__}: {exc}")
        try:
            t1, _ = timed(lambda: pymc_fit(data))
            t, p = timed(lambda: pymc_fit(data))
            print(f"pymc-marketing first (compiling) run {t1:.2f}s")
            peers.append(("pymc-marketing", t, p))
        except Exception as exc:
            print(f"pymc-marketing could not run: {type(exc).__name__}: {exc}")
    for name, t, p in peers:
        print(f"{name:<14}{t:7.2f}s  " + " ".join(f"{k}={p[k]:.4f}" for k in NAMES)
              + f"  speedup={t / t_ours:.1f}x  max_rel_param_diff={max_rel_diff(p_ours, p):.2e}")
    print("load average (1, 5, 15 min) after: " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
