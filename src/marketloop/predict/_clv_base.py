"""What the CLV estimators share: parameters as in scikit-learn, input checks, the optimiser."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.optimize import minimize

from marketloop._validation import check_frame
from marketloop.exceptions import MarketloopError, SchemaError, describe

Array = NDArray[np.float64]
Objective = Callable[[Array], tuple[float, Array] | float]
#: Summed log-likelihood, its gradient and Hessian in log-parameters, at natural parameters.
SummedLoglik = Callable[[Array], tuple[float, Array, Array]]

#: Largest |log-parameter| the optimisers may reach; beyond it a fit has run away.
LOG_BOUND = 20.0

#: Objective value (minus the mean log-likelihood) where the likelihood is not finite.
_PENALTY = 1e6


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


@runtime_checkable
class SummableRows(Protocol):
    """Prepared distinct rows that sum their own weighted log-likelihood with its Hessian."""

    def summed(self, weight: Array) -> SummedLoglik:
        """The summed log-likelihood of the rows, each counted ``weight`` times."""
        ...


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
    """The distinct rows of the columns and how often each occurs (hash-based, O(n)).

    Each column is coded by hashing, the codes are packed into one int64 key (mixed
    radix, the product of the distinct counts) and the key is hashed once more; the
    distinct keys decode back to each column's values.
    """
    codes, uniques = [], []
    for col in columns:
        code, unique = column_codes(col)
        codes.append(code)
        uniques.append(unique)
    sizes = [max(len(u), 1) for u in uniques]
    if math.prod(sizes) >= 2**62:  # cannot pack: re-code the key after each column
        key = np.zeros(len(columns[0]), dtype=np.int64)
        for code, size in zip(codes, sizes, strict=True):
            key, _ = pd.factorize(key * size + code)
        return _distinct_by_first(columns, key)
    key = codes[0]
    for code, size in zip(codes[1:], sizes[1:], strict=True):
        key = key * size + code
    key_code, keys = pd.factorize(key)
    keys = np.asarray(keys, dtype=np.int64)
    rows = []
    for unique, size in zip(uniques[::-1], sizes[::-1], strict=True):
        keys, code = np.divmod(keys, size)
        rows.append(unique[code])
    counts = np.bincount(key_code, minlength=len(rows[0])).astype(float)
    return rows[::-1], counts


def column_codes(values: Array) -> tuple[NDArray[np.int64], Array]:
    """Codes of a column's values and the values coded, ``values == uniques[codes]``.

    Small non-negative whole numbers (frequencies, days) are their own codes, with every
    value up to the largest listed; anything else is hashed.
    """
    if values.dtype.kind == "f" and len(values) and values[:64].min() >= 0:
        top = values.max()
        if top < _MAX_DIRECT_CODE and values.min() >= 0:
            code = values.astype(np.int64)
            if np.array_equal(code[:64], values[:64]) and np.array_equal(code, values):
                return code, np.arange(int(top) + 1, dtype=values.dtype)
    code, unique = pd.factorize(values)
    return code.astype(np.int64, copy=False), np.asarray(unique)


#: Largest whole number :func:`column_codes` uses as its own code (a table of 4 MB).
_MAX_DIRECT_CODE = 2**19


def _distinct_by_first(
    columns: tuple[Array, ...], key: NDArray[np.int64]
) -> tuple[list[Array], Array]:
    """Distinct rows from a dense row code: each row's first occurrence, and the counts."""
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
        bounds=[(-LOG_BOUND, LOG_BOUND)] * len(start),
        options={"maxiter": max_iter, "ftol": tol, "gtol": 1e-6},
    )
    params = np.exp(result.x)
    value = float(result.fun)
    hit_bound = np.any(np.abs(result.x) > LOG_BOUND - 0.1)
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


def maximise_newton(
    summed: SummedLoglik, start: Array, *, n: float, max_iter: int, gtol: float = 1e-9
) -> tuple[Array, float] | None:
    """Maximise a log-likelihood with its analytic Hessian (scipy's ``trust-exact``).

    Newton steps in a trust region over log-parameters, on the mean log-likelihood per
    customer (``n`` customers). Returns the parameters on their natural scale and the
    maximised mean log-likelihood, or None where the optimiser does not reach a finite
    interior maximum with a gradient norm below ``gtol`` (the caller then falls back to
    :func:`maximise`, which explains a failure).
    """
    cache: dict[bytes, tuple[float, Array, Array]] = {}

    def evaluate(log_theta: Array) -> tuple[float, Array, Array]:
        key = log_theta.tobytes()
        if key not in cache:  # scipy asks for the Hessian and the value at the same point
            cache.clear()
            size = len(log_theta)
            found: tuple[float, Array, Array] = (_PENALTY, np.zeros(size), np.eye(size))
            if np.all(np.abs(log_theta) <= LOG_BOUND):
                with np.errstate(all="ignore"):
                    value, grad, hess = summed(np.exp(log_theta))
                if np.isfinite(value) and np.all(np.isfinite(grad)) and np.all(
                        np.isfinite(hess)):
                    found = (-value / n, -grad / n, -hess / n)
            cache[key] = found
        return cache[key]

    result = minimize(
        lambda v: evaluate(v)[:2],
        np.log(start),
        method="trust-exact",
        jac=True,
        hess=lambda v: evaluate(v)[2],
        options={"maxiter": max_iter, "gtol": gtol},
    )
    if not result.success or not np.isfinite(result.fun) or result.fun >= _PENALTY:
        return None
    if np.any(np.abs(result.x) > LOG_BOUND - 0.1):
        return None
    return np.exp(result.x), -float(result.fun)
