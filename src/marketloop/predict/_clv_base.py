"""What the CLV estimators share: parameters as in scikit-learn, input checks, the optimiser."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.optimize import minimize

from marketloop._validation import check_frame
from marketloop.exceptions import MarketloopError, SchemaError, describe

Array = NDArray[np.float64]
Objective = Callable[[Array], tuple[float, Array] | float]


class ConvergenceError(MarketloopError, RuntimeError):
    """The maximum-likelihood optimiser stopped without reaching a finite optimum."""


class ParamsMixin:
    """``get_params`` / ``set_params`` / ``repr`` from the ``__init__`` signature, as in
    scikit-learn's ``BaseEstimator`` (which marketloop does not depend on)."""

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [n for n in sig.parameters if n != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters and their values."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> ParamsMixin:
        """Set constructor parameters; unknown names raise ``ValueError``."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for {type(self).__name__}.")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def rfm_arrays(
    summary: pd.DataFrame, *, where: str, columns: tuple[str, ...] = ("frequency", "recency", "T")
) -> list[Array]:
    """The named columns as finite float arrays, with the BTYD constraints checked."""
    check_frame(summary, required=columns, where=where)
    arrays = []
    for name in columns:
        values = pd.to_numeric(summary[name], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values) | (values < 0)
        if bad.any():
            first = summary.index[np.flatnonzero(bad)[0]]
            raise SchemaError(
                describe(
                    f"{where}, column {name!r}",
                    "finite numbers >= 0",
                    f"{int(bad.sum())} bad value(s), first for {first!r}: "
                    f"{summary[name].loc[first]!r}",
                )
            )
        arrays.append(values)
    if "recency" in columns and "T" in columns:
        x, t_x, T = arrays[0], arrays[1], arrays[2]
        bad = (t_x > T + 1e-9) | ((x == 0) & (t_x != 0)) | (x != np.round(x))
        if bad.any():
            first = summary.index[np.flatnonzero(bad)[0]]
            raise SchemaError(
                describe(
                    where,
                    "integer frequency, recency <= T, and recency 0 when frequency is 0",
                    f"{int(bad.sum())} row(s) breaking it, first {first!r}",
                    "Build the summary with summary_from_transactions.",
                )
            )
    return arrays


def distinct_rows(*columns: Array) -> tuple[list[Array], Array]:
    """The distinct rows of the columns and how often each occurs (hash-based, O(n))."""
    key = np.zeros(len(columns[0]), dtype=np.int64)
    for col in columns:
        codes, uniques = pd.factorize(col)
        key, _ = pd.factorize(key * (len(uniques) + 1) + codes)  # stays below n rows
    n_distinct = int(key.max()) + 1 if len(key) else 0
    first = np.empty(n_distinct, dtype=np.int64)
    first[key[::-1]] = np.arange(len(key) - 1, -1, -1)  # first occurrence of each row
    counts = np.bincount(key, minlength=n_distinct).astype(float)
    return [col[first] for col in columns], counts


def maximise(
    objective: Callable[[Array], tuple[float, Array]] | Callable[[Array], float],
    start: Array,
    *,
    names: tuple[str, ...],
    where: str,
    jac: bool | str,
    max_iter: int,
    tol: float,
) -> tuple[Array, float]:
    """Maximise a log-likelihood over log-parameters with L-BFGS-B; refuse a bad optimum.

    ``objective`` returns the negative log-likelihood (and its gradient when ``jac`` is
    True). Returns the parameters on their natural scale and the maximised log-likelihood.
    """
    result = minimize(
        objective,
        np.log(start),
        method="L-BFGS-B",
        jac=jac,
        bounds=[(-20.0, 20.0)] * len(start),
        options={"maxiter": max_iter, "ftol": tol, "gtol": 1e-6},
    )
    params = np.exp(result.x)
    value = float(result.fun)
    hit_bound = np.any(np.abs(result.x) > 19.9)
    if not result.success or not np.isfinite(value) or not np.all(np.isfinite(params)) or hit_bound:
        found = ", ".join(f"{n}={v:.6g}" for n, v in zip(names, params, strict=True))
        raise ConvergenceError(
            describe(
                where,
                "the optimiser to converge to a finite maximum of the log-likelihood",
                f"{result.message!s} after {result.nit} iterations "
                f"(log-likelihood {-value:.6g}; {found})",
                "Check the summary (enough repeat buyers? recency and T in the same unit?) "
                "or raise max_iter.",
            )
        )
    return params, -value
