"""Qini and uplift curves, Qini coefficient, AUUC and uplift at k, as scikit-uplift defines them.

For binary outcomes every function returns what its scikit-uplift namesake returns on the
same inputs (``qini_curve``, ``uplift_curve``, ``qini_auc_score``, ``uplift_auc_score``,
``uplift_at_k``; checked to 1e-9 in tests/strategy/test_uplift.py). Unlike scikit-uplift they
also take a continuous outcome (revenue); the ideal ranking used to normalise is then the
one that puts treated rows by descending outcome first and control rows by descending
outcome last, which is scikit-uplift's ideal Qini ranking written for amounts.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from marketloop.exceptions import ConfigError, SchemaError, describe


def check_uplift_inputs(y: object, uplift: object, treatment: object,
                        where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outcome, scores and 0/1 treatment as float64 arrays, or a :class:`SchemaError`."""
    arrays = []
    for name, value in (("y", y), ("uplift", uplift), ("treatment", treatment)):
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise SchemaError(describe(where, f"numeric {name}",
                                       f"dtype {np.asarray(value).dtype}")) from None
        if arr.ndim != 1:
            raise SchemaError(describe(where, f"a one-dimensional {name}", f"shape {arr.shape}"))
        bad = ~np.isfinite(arr)
        if bad.any():
            raise SchemaError(describe(where, f"finite {name} values",
                                       f"{int(bad.sum())} NaN or infinite (first at row "
                                       f"{int(np.flatnonzero(bad)[0])})"))
        arrays.append(arr)
    y_arr, u_arr, t_arr = arrays
    if not len(y_arr) == len(u_arr) == len(t_arr):
        raise SchemaError(describe(where, "y, uplift and treatment of equal length",
                                   f"lengths {len(y_arr)}, {len(u_arr)} and {len(t_arr)}"))
    if not np.isin(t_arr, (0.0, 1.0)).all() or np.unique(t_arr).size < 2:
        raise SchemaError(describe(where, "treatment of 0 (control) and 1 (treated), both present",
                                   f"values {np.unique(t_arr)[:5].tolist()}",
                                   "For several treatments evaluate each against control "
                                   "(evaluate_arms)."))
    return y_arr, u_arr, t_arr


def descending(scores: np.ndarray) -> np.ndarray:
    """Row order by descending score, ties in reverse row order (as scikit-uplift sorts)."""
    return np.argsort(scores, kind="mergesort")[::-1]


def curve_counts(y: np.ndarray, t: np.ndarray, order: np.ndarray, ties: np.ndarray | None
                 ) -> tuple[np.ndarray, ...]:
    """Rows, treated rows and their outcome sums at each threshold of the ranking ``order``.

    ``ties`` (the scores) groups equal scores into one threshold; ``None`` makes every row
    one, as for a random permutation.
    """
    y, t = y[order], t[order]
    if ties is None:
        idx = np.arange(len(y))
    else:
        s = ties[order]
        idx = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    n_t = np.cumsum(t)[idx]
    y_t = np.cumsum(np.where(t == 1, y, 0.0))[idx]
    y_c = np.cumsum(np.where(t == 0, y, 0.0))[idx]
    n_all = idx + 1
    return n_all, n_t, n_all - n_t, y_t, y_c


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b != 0)


def _with_origin(x: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.r_[0, x], np.r_[0, v]


def qini_points(counts: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Qini curve from :func:`curve_counts`: treated gains minus scaled control gains."""
    n_all, n_t, n_c, y_t, y_c = counts
    return _with_origin(n_all, y_t - y_c * _ratio(n_t, n_c))


def uplift_points(counts: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Uplift curve from :func:`curve_counts`: difference in means times rows targeted."""
    n_all, n_t, n_c, y_t, y_c = counts
    return _with_origin(n_all, (_ratio(y_t, n_t) - _ratio(y_c, n_c)) * n_all)


def qini_curve(y: object, uplift: object, treatment: object) -> tuple[np.ndarray, np.ndarray]:
    """Qini curve: incremental outcomes gained when targeting the top rows by ``uplift``.

    Parameters
    ----------
    y : array-like
        Observed outcome (0/1 or an amount).
    uplift : array-like
        Predicted effect; higher means target first.
    treatment : array-like
        1 (or True) for treated rows, 0 for control.

    Returns
    -------
    x : numpy.ndarray
        Rows targeted, from 0 to ``len(y)``, one point per distinct score.
    qini : numpy.ndarray
        ``Y_t(x) - Y_c(x) N_t(x) / N_c(x)``: treated outcomes minus control outcomes
        scaled to the treated count, among the top ``x`` rows.

    References
    ----------
    Radcliffe (2007), "Using control groups to target on predicted lift", Direct Marketing
    Analytics Journal (3), 14-21.

    Examples
    --------
    >>> x, q = qini_curve([1, 0, 1, 0], [0.9, 0.5, 0.4, 0.1], [1, 1, 0, 0])
    >>> x.tolist(), q.tolist()
    ([0, 1, 2, 3, 4], [0.0, 1.0, 1.0, -1.0, 0.0])
    """
    y_a, u_a, t_a = check_uplift_inputs(y, uplift, treatment, "qini_curve")
    return qini_points(curve_counts(y_a, t_a, descending(u_a), u_a))


def uplift_curve(y: object, uplift: object, treatment: object) -> tuple[np.ndarray, np.ndarray]:
    """Uplift curve: (treated mean - control mean) among the top ``x`` rows, times ``x``.

    Parameters and returns as :func:`qini_curve`.

    Examples
    --------
    >>> x, u = uplift_curve([1, 0, 1, 0], [0.9, 0.5, 0.4, 0.1], [1, 1, 0, 0])
    >>> u.tolist()
    [0.0, 1.0, 1.0, -1.5, 0.0]
    """
    y_a, u_a, t_a = check_uplift_inputs(y, uplift, treatment, "uplift_curve")
    return uplift_points(curve_counts(y_a, t_a, descending(u_a), u_a))


def _area(x: np.ndarray, v: np.ndarray) -> float:
    return float(np.trapezoid(v, x))


def _binary(y: np.ndarray) -> bool:
    return bool(np.isin(y, (0.0, 1.0)).all())


def ideal_qini_area(y: np.ndarray, t: np.ndarray, negative_effect: bool = True
                    ) -> tuple[float, float]:
    """(area under the ideal Qini curve, area under the random diagonal) for these rows."""
    if negative_effect:
        score = y * t - y * (1 - t)
        if _binary(y):
            score = score.astype(np.int8)  # three values: integer sort is linear
        x, v = qini_points(curve_counts(y, t, descending(score), score))
    else:
        n_t, n_c = t.sum(), len(t) - t.sum()
        gain = y[t == 1].sum() - n_t * y[t == 0].sum() / n_c
        # scikit-uplift's ideal: `gain` rows of sure gains, then nothing; the row count is
        # clipped to [0, n] so that a negative gain (or an amount) keeps x increasing
        x = np.array([0, min(max(gain, 0.0), len(y)), len(y)])
        v = np.array([0, gain, gain])
    return _area(x, v), _area(np.array([0, x[-1]]), np.array([0, v[-1]]))


def ideal_uplift_area(y: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """(area under the ideal uplift curve, area under the random diagonal) for these rows."""
    if _binary(y):
        control_responders = np.sum((y == 1) & (t == 0))
        treated_non_responders = np.sum((y == 0) & (t == 1))
        summand = y if control_responders > treated_non_responders else t
        score = (2 * (y == t) + summand).astype(np.int8)
    else:
        score = y * t - y * (1 - t)
    x, v = uplift_points(curve_counts(y, t, descending(score), score))
    return _area(x, v), _area(np.array([0, x[-1]]), np.array([0, v[-1]]))


def normalised(area: float, ideal: tuple[float, float]) -> float:
    """``(area - diagonal) / (ideal - diagonal)``: 0 for random, 1 for the ideal ranking.

    NaN (or infinite) when the ideal ranking is no better than the diagonal, as in
    scikit-uplift: the rows hold nothing a ranking could gain.
    """
    top, diagonal = ideal
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(area - diagonal) / np.float64(top - diagonal))


def qini_coefficient(y: object, uplift: object, treatment: object, *,
                     negative_effect: bool = True) -> float:
    """Qini coefficient: area between the Qini curve and the diagonal, over the ideal's.

    Equal to scikit-uplift's ``qini_auc_score`` for a binary outcome.

    Parameters
    ----------
    y, uplift, treatment : array-like
        As in :func:`qini_curve`.
    negative_effect : bool, default=True
        Whether the ideal ranking may put controls who bought (the customers the treatment
        would have lost) last; ``False`` caps the ideal at the overall gain.

    Returns
    -------
    float
        0 for a random ranking on average, 1 for the ideal one; negative when worse.

    Examples
    --------
    >>> round(qini_coefficient([1, 0, 1, 0, 1, 0], [0.9, 0.8, 0.2, 0.1, 0.6, 0.5],
    ...                        [1, 1, 0, 0, 1, 0]), 4)
    0.6154
    """
    y_a, u_a, t_a = check_uplift_inputs(y, uplift, treatment, "qini_coefficient")
    x, v = qini_points(curve_counts(y_a, t_a, descending(u_a), u_a))
    return normalised(_area(x, v), ideal_qini_area(y_a, t_a, negative_effect))


def auuc(y: object, uplift: object, treatment: object) -> float:
    """Area under the uplift curve above the diagonal, over the ideal's (normalised AUUC).

    Equal to scikit-uplift's ``uplift_auc_score`` for a binary outcome.

    Examples
    --------
    >>> round(auuc([1, 0, 1, 0, 1, 0], [0.9, 0.8, 0.2, 0.1, 0.6, 0.5], [1, 1, 0, 0, 1, 0]), 4)
    0.3
    """
    y_a, u_a, t_a = check_uplift_inputs(y, uplift, treatment, "auuc")
    x, v = uplift_points(curve_counts(y_a, t_a, descending(u_a), u_a))
    return normalised(_area(x, v), ideal_uplift_area(y_a, t_a))


def top_k_rows(k: float, n_rows: int, where: str) -> int:
    """Rows in the top ``k``: a share in (0, 1) of ``n_rows`` or a count in [1, n_rows)."""
    is_int = isinstance(k, int | np.integer) and not isinstance(k, bool)
    if is_int and 0 < k < n_rows:
        return int(k)
    if not is_int and isinstance(k, float | np.floating) and 0.0 < k < 1.0:
        return int(n_rows * k)
    raise ConfigError(describe(where, f"k a share in (0, 1) or a row count in [1, {n_rows})",
                               repr(k)))


def uplift_at_k(y: object, uplift: object, treatment: object, *, k: float = 0.3,
                strategy: Literal["overall", "by_group"] = "overall") -> float:
    """Treated mean minus control mean among the top ``k`` rows by ``uplift``.

    Equal to scikit-uplift's ``uplift_at_k``.

    Parameters
    ----------
    y, uplift, treatment : array-like
        As in :func:`qini_curve`.
    k : float or int, default=0.3
        A share in (0, 1) of the rows (``int(n k)`` rows) or a number of rows.
    strategy : {"overall", "by_group"}, default="overall"
        ``overall``: the top ``k`` of all rows, then treated and control means among them;
        ``by_group``: the top ``k`` share (or count) of each arm separately.

    Returns
    -------
    float
        NaN when the top rows hold no treated or no control row.

    Examples
    --------
    >>> uplift_at_k([1, 0, 1, 0], [0.9, 0.5, 0.4, 0.1], [1, 0, 1, 0], k=0.5)
    1.0
    """
    where = "uplift_at_k"
    y_a, u_a, t_a = check_uplift_inputs(y, uplift, treatment, where)
    if strategy not in ("overall", "by_group"):
        raise ConfigError(describe(where, "strategy 'overall' or 'by_group'", repr(strategy)))
    n_top = top_k_rows(k, len(y_a), where)
    order = descending(u_a)
    y_o, t_o = y_a[order], t_a[order]
    if strategy == "overall":
        y_top, t_top = y_o[:n_top], t_o[:n_top]
        return _mean(y_top[t_top == 1]) - _mean(y_top[t_top == 0])
    n_treated, n_control = int(t_a.sum()), int(len(t_a) - t_a.sum())
    if isinstance(k, int | np.integer):
        if k > n_treated or k > n_control:
            raise ConfigError(describe(where, f"k at most the rows of each arm ({n_treated} "
                                       f"treated, {n_control} control)", repr(k)))
        take_t = take_c = int(k)
    else:
        take_t, take_c = int(n_treated * k), int(n_control * k)
    return _mean(y_o[t_o == 1][:take_t]) - _mean(y_o[t_o == 0][:take_c])


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")
