"""T-learner fit and scoring on 1,000,000 customers: marketloop vs scikit-uplift, one run.

Synthetic randomised campaign drawn with numpy: 15 standard-normal features, half the
customers treated, conversion ``sigmoid(-2.2 + 0.5 x0 - 0.4 x1 + 0.3 x2 x3 + t (0.4 x4 +
0.3 x5 - 0.1))`` (the effect depends on x4 and x5). Both sides fit a LightGBM classifier per
arm with the same settings (200 trees, learning rate 0.05, 15 leaves, at least 50 rows per
leaf, ``n_jobs`` threads, seed 0) and score all 1,000,000 rows:
``TLearner(base=...).fit(X, arm, y).predict(X)`` against
``sklift.models.TwoModels(base, base, method="vanilla").fit(X, y, t).predict(X)``. The
largest difference between the two predictions is printed (the same models: it should be
0). The machine's load average is printed before and after: on a shared 2-core machine it
moves every timing, and LightGBM's OpenMP threads slow down sharply when the other core is
busy.

Run: .venv/bin/python bench/bench_uplift.py [n_customers] [--n-jobs 2] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier
from sklearn.base import clone

from marketloop.strategy.uplift import TLearner

N_FEATURES = 15


def draw(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Features, treatment (0/1) and conversion of ``n`` customers."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, N_FEATURES), dtype=np.float32)
    t = rng.integers(0, 2, n)
    effect = 0.4 * x[:, 4] + 0.3 * x[:, 5] - 0.1
    logit = -2.2 + 0.5 * x[:, 0] - 0.4 * x[:, 1] + 0.3 * x[:, 2] * x[:, 3] + t * effect
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    frame = pd.DataFrame(x, columns=[f"x{j}" for j in range(N_FEATURES)])
    return frame, t, y


def timed(fn: Callable[[], np.ndarray]) -> tuple[float, float, np.ndarray]:
    """(fit seconds, predict seconds, predictions) of ``fn`` returning (fit, predict) stages."""
    start = time.perf_counter()
    predict = fn()
    fitted = time.perf_counter()
    out = predict()
    return fitted - start, time.perf_counter() - fitted, np.asarray(out, dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    X, t, y = draw(args.n)
    arm = np.where(t == 1, "coupon", "control")
    base = LGBMClassifier(n_estimators=200, learning_rate=0.05, num_leaves=15,
                          min_child_samples=50, verbose=-1, random_state=0, n_jobs=args.n_jobs)

    def ours() -> Callable[[], np.ndarray]:
        model = TLearner(base=base).fit(X, arm, y)
        return lambda: model.predict(X)["coupon"].to_numpy()

    def peer() -> Callable[[], np.ndarray]:
        from sklift.models import TwoModels

        model = TwoModels(clone(base), clone(base), method="vanilla").fit(X, y, t)
        return lambda: model.predict(X)

    print(f"uplift T-learner n_customers={args.n:,} features={N_FEATURES} "
          f"treated={t.mean():.3f} conversion={y.mean():.4f} n_jobs={args.n_jobs} "
          f"load_before={os.getloadavg()[0]:.2f}")
    best: dict[str, tuple[float, float]] = {}
    preds: dict[str, np.ndarray] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklift's use of a deprecated sklearn helper
        for _ in range(args.repeat):
            for name, fn in (("marketloop", ours), ("sklift", peer)):
                fit_s, predict_s, preds[name] = timed(fn)
                old = best.get(name, (np.inf, np.inf))
                best[name] = (min(old[0], fit_s), min(old[1], predict_s))
                print(f"  {name:10s} fit={fit_s:.2f}s predict={predict_s:.2f}s")
    (of, op), (pf, pp) = best["marketloop"], best["sklift"]
    diff = float(np.max(np.abs(preds["marketloop"] - preds["sklift"])))
    print(f"marketloop fit={of:.2f}s predict={op:.2f}s total={of + op:.2f}s | "
          f"sklift fit={pf:.2f}s predict={pp:.2f}s total={pf + pp:.2f}s | "
          f"ratio sklift/marketloop={(pf + pp) / (of + op):.2f}x max|diff|={diff:.1e} "
          f"load_after={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
