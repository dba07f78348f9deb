"""Calibration diagnostics: reliability table and expected calibration error (ECE)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from marketloop.exceptions import ConfigError, describe

__all__ = ["expected_calibration_error", "reliability_table"]


def _arrays(y_true: object, p: object, where: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=float)
    q = np.asarray(p, dtype=float)
    if y.shape != q.shape or y.ndim != 1 or y.size == 0:
        raise ConfigError(describe(where, "two 1-d arrays of equal, non-zero length",
                                   f"shapes {y.shape} and {q.shape}"))
    if not np.isin(y, (0.0, 1.0)).all():
        raise ConfigError(describe(where, "labels 0 or 1", f"{np.unique(y)[:5].tolist()}"))
    if not (np.isfinite(q).all() and (q >= 0).all() and (q <= 1).all()):
        raise ConfigError(describe(where, "probabilities in [0, 1]", "values outside it"))
    return y, q


def reliability_table(y_true: object, p: object, *, n_bins: int = 10) -> pd.DataFrame:
    """Predicted against observed frequency in ``n_bins`` equal-width bins of ``p``.

    Returns
    -------
    pandas.DataFrame
        One row per non-empty bin (``bin_low``, ``bin_high``): ``count``, ``p_mean`` (mean
        prediction), ``observed`` (share of positives) and ``gap`` (``observed - p_mean``).

    Examples
    --------
    >>> reliability_table([0, 1, 1, 1], [0.1, 0.9, 0.8, 0.7], n_bins=2)[["count", "observed"]]
       count  observed
    0      1       0.0
    1      3       1.0
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ConfigError(describe("reliability_table(n_bins)", "an integer >= 1", repr(n_bins)))
    y, q = _arrays(y_true, p, "reliability_table")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, q, side="right") - 1, 0, n_bins - 1)
    frame = pd.DataFrame({"bin": which, "y": y, "p": q})
    g = frame.groupby("bin", sort=True)
    table = pd.DataFrame({"count": g.size(), "p_mean": g["p"].mean(), "observed": g["y"].mean()})
    table.insert(0, "bin_high", edges[table.index + 1])
    table.insert(0, "bin_low", edges[table.index])
    table["gap"] = table["observed"] - table["p_mean"]
    return table.reset_index(drop=True)


def expected_calibration_error(y_true: object, p: object, *, n_bins: int = 10) -> float:
    """ECE: the count-weighted mean of ``|observed - p_mean|`` over :func:`reliability_table`.

    Examples
    --------
    >>> expected_calibration_error([0, 1, 1, 1], [0.1, 0.9, 0.8, 0.7], n_bins=2)
    0.175
    """
    table = reliability_table(y_true, p, n_bins=n_bins)
    weights = table["count"] / table["count"].sum()
    return round(float((weights * table["gap"].abs()).sum()), 12)
