"""Does a ranking beat random? Metrics with bootstrap intervals beside random rankings."""

from __future__ import annotations

import numpy as np
import pandas as pd

from marketloop.exceptions import ConfigError, SchemaError, describe
from marketloop.strategy.uplift._metrics import (
    _area,
    check_uplift_inputs,
    curve_counts,
    descending,
    ideal_qini_area,
    ideal_uplift_area,
    normalised,
    qini_points,
    top_k_rows,
    uplift_points,
)

METRICS = ("qini_coefficient", "auuc", "uplift_at_k")


def _scores(y: np.ndarray, t: np.ndarray, order: np.ndarray, ties: np.ndarray | None,
            n_top: int, ideal: tuple[tuple[float, float], tuple[float, float]]) -> np.ndarray:
    """Qini coefficient, AUUC and uplift at the top ``n_top`` rows of one ranking."""
    counts = curve_counts(y, t, order, ties)
    qini = normalised(_area(*qini_points(counts)), ideal[0])
    area = normalised(_area(*uplift_points(counts)), ideal[1])
    y_top, t_top = y[order[:n_top]], t[order[:n_top]]
    treated, control = t_top == 1, t_top == 0
    at_k = (y_top[treated].mean() - y_top[control].mean()
            if treated.any() and control.any() else np.nan)
    return np.array([qini, area, at_k])


def _ideal(y: np.ndarray, t: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    return ideal_qini_area(y, t), ideal_uplift_area(y, t)


def evaluate_uplift(
    y: object,
    uplift: object,
    treatment: object,
    *,
    k: float = 0.3,
    n_bootstrap: int = 200,
    n_random: int = 200,
    confidence: float = 0.95,
    z_threshold: float = 1.96,
    random_state: int | None = 0,
) -> dict[str, object]:
    """Qini coefficient, AUUC and uplift at ``k`` with bootstrap intervals, against random.

    The interval resamples rows with replacement within each arm (so every resample keeps
    the arm sizes) and takes percentiles. The random baseline scores ``n_random`` random
    permutations of the same rows; ``z = (value - random mean) / random sd`` says how many
    random-ranking standard deviations the model is above chance. A Qini ``z`` of at least
    ``z_threshold`` is the verdict "beats random"; below it, the ranking cannot be told
    apart from a random one on these rows.

    Parameters
    ----------
    y : array-like
        Observed outcome (0/1 or an amount).
    uplift : array-like
        Predicted effect of the treatment; higher means target first.
    treatment : array-like
        1 (or True) for treated rows, 0 for control.
    k : float or int, default=0.3
        Top share (or rows) for uplift at ``k`` (strategy ``overall``).
    n_bootstrap : int, default=200
        Bootstrap resamples; 0 skips the intervals (``low`` and ``high`` are NaN).
    n_random : int, default=200
        Random permutations for the baseline (at least 2).
    confidence : float, default=0.95
        Coverage of the percentile interval.
    z_threshold : float, default=1.96
        Qini ``z`` needed for ``beats_random``.
    random_state : int or None, default=0
        Seed of the resampling and the permutations.

    Returns
    -------
    dict
        ``qini_coefficient``, ``auuc``, ``uplift_at_k``: each a dict with ``value``, ``low``,
        ``high`` (the interval), ``random_mean``, ``random_sd`` and ``z``;
        ``beats_random`` (bool), ``z_vs_random`` (the Qini ``z``), ``p_vs_random`` (share of
        random rankings at least as good, with the +1 correction), ``verdict`` (a sentence),
        and ``n_rows``, ``n_treated``, ``n_control``, ``k``, ``n_bootstrap``, ``n_random``,
        ``confidence``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> t = rng.integers(0, 2, 4_000)
    >>> gain = rng.random(4_000)
    >>> y = (rng.random(4_000) < 0.1 + 0.2 * t * gain).astype(int)
    >>> report = evaluate_uplift(y, gain, t, n_bootstrap=50, n_random=50)
    >>> report["beats_random"], report["qini_coefficient"]["value"] > 0
    (True, True)
    """
    where = "evaluate_uplift"
    y_a, u_a, t_a = check_uplift_inputs(y, uplift, treatment, where)
    _check_counts(n_bootstrap, n_random, confidence)
    n_top = top_k_rows(k, len(y_a), where)
    rng = np.random.default_rng(random_state)
    ideal = _ideal(y_a, t_a)
    value = _scores(y_a, t_a, descending(u_a), u_a, n_top, ideal)
    random = np.array([_scores(y_a, t_a, rng.permutation(len(y_a)), None, n_top, ideal)
                       for _ in range(n_random)])
    boot = np.full((max(n_bootstrap, 1), 3), np.nan)
    arms = [np.flatnonzero(t_a == 1), np.flatnonzero(t_a == 0)]
    for b in range(n_bootstrap):
        rows = np.concatenate([rng.choice(a, size=len(a), replace=True) for a in arms])
        yb, ub, tb = y_a[rows], u_a[rows], t_a[rows]
        boot[b] = _scores(yb, tb, descending(ub), ub, n_top, _ideal(yb, tb))

    alpha = (1.0 - confidence) / 2.0
    report: dict[str, object] = {}
    for j, name in enumerate(METRICS):
        low, high = (np.nanquantile(boot[:, j], [alpha, 1.0 - alpha]) if n_bootstrap
                      else (np.nan, np.nan))
        mean, sd = np.nanmean(random[:, j]), np.nanstd(random[:, j], ddof=1)
        report[name] = {"value": float(value[j]), "low": float(low), "high": float(high),
                        "random_mean": float(mean), "random_sd": float(sd),
                        "z": float((value[j] - mean) / sd) if sd > 0 else float("nan")}
    z = report["qini_coefficient"]["z"]  # type: ignore[index]
    p = (1 + int(np.sum(random[:, 0] >= value[0]))) / (n_random + 1)
    beats = bool(np.isfinite(z) and z >= z_threshold)
    report.update({
        "beats_random": beats, "z_vs_random": z, "p_vs_random": p,
        "verdict": (f"Qini {value[0]:.4f} is {z:.2f} random-ranking sd above random "
                    f"(mean {report['qini_coefficient']['random_mean']:.4f}, "  # type: ignore[index]
                    f"p={p:.3f}): " + ("beats random" if beats else
                                       f"not distinguishable from random at z >= {z_threshold}")),
        "n_rows": len(y_a), "n_treated": int(t_a.sum()), "n_control": int(len(t_a) - t_a.sum()),
        "k": k, "n_bootstrap": n_bootstrap, "n_random": n_random, "confidence": confidence,
    })
    return report


def _check_counts(n_bootstrap: int, n_random: int, confidence: float) -> None:
    where = "evaluate_uplift"
    if not isinstance(n_bootstrap, int | np.integer) or n_bootstrap < 0:
        raise ConfigError(describe(where, "n_bootstrap an int >= 0", repr(n_bootstrap)))
    if not isinstance(n_random, int | np.integer) or n_random < 2:
        raise ConfigError(describe(where, "n_random an int >= 2", repr(n_random)))
    if not 0.0 < confidence < 1.0:
        raise ConfigError(describe(where, "confidence in (0, 1)", repr(confidence)))


def evaluate_arms(
    y: object,
    uplift: pd.DataFrame,
    treatment: object,
    *,
    control: object = "control",
    **options: float | int | None,
) -> dict[object, dict[str, object]]:
    """:func:`evaluate_uplift` for each treatment of a multi-treatment model against control.

    Parameters
    ----------
    y : array-like
        Observed outcome, one per row.
    uplift : pandas.DataFrame
        What an uplift model's ``predict`` returns: one column per treatment label.
    treatment : array-like
        The arm label of every row.
    control : object, default="control"
        The label of the control arm.
    **options
        Passed to :func:`evaluate_uplift` (``k``, ``n_bootstrap``, ``random_state``, ...).

    Returns
    -------
    dict
        Treatment label -> the report of :func:`evaluate_uplift` on that arm's and the
        control's rows, scored by that arm's column.
    """
    where = "evaluate_arms"
    labels = np.asarray(treatment, dtype=object)
    y_a = np.asarray(y)
    if not isinstance(uplift, pd.DataFrame):
        raise SchemaError(describe(where, "uplift as a DataFrame with one column per treatment",
                                   type(uplift).__name__, "Pass model.predict(X)."))
    if not len(labels) == len(y_a) == len(uplift):
        raise SchemaError(describe(where, "y, uplift and treatment of equal length",
                                   f"lengths {len(y_a)}, {len(uplift)} and {len(labels)}"))
    missing = [c for c in uplift.columns if not (labels == c).any()]
    if missing or not (labels == control).any():
        raise SchemaError(describe(where, f"rows of control {control!r} and of every column "
                                   f"{list(uplift.columns)}", f"no rows of "
                                   f"{missing or [control]}"))
    out = {}
    for label in uplift.columns:
        rows = (labels == label) | (labels == control)
        out[label] = evaluate_uplift(y_a[rows], uplift[label].to_numpy()[rows],
                                     (labels[rows] == label).astype(int), **options)
    return out
