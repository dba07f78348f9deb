"""The machinery BG/NBD and Pareto/NBD share: fitting over distinct rows, predictions, CLV."""

from __future__ import annotations

from typing import ClassVar, Self

import numpy as np
import pandas as pd

from marketloop._validation import check_fitted, check_in_range
from marketloop.exceptions import ConfigError, describe
from marketloop.predict._clv_base import (
    Array,
    ParamsMixin,
    SummableRows,
    distinct_rows,
    maximise,
    maximise_newton,
    rfm_arrays,
)

#: Objective value (minus the mean log-likelihood) where the likelihood is not finite.
_PENALTY = 1e6

#: Newton iterations before the quasi-Newton fallback takes over (a fit from the default
#: start takes 6-8; more means the likelihood has no interior maximum to find).
_MAX_NEWTON_ITER = 100

#: Summary time units per month in :meth:`RepeatPurchaseModel.clv`, as lifetimes uses them.
PERIODS_PER_MONTH = {"W": 4.345, "D": 30.0}


class RepeatPurchaseModel(ParamsMixin):
    """Base of the repeat-purchase ("buy till you die") models; see the subclasses."""

    _names: ClassVar[tuple[str, ...]] = ()
    _analytic_gradient: ClassVar[bool] = False

    def __init__(self, max_iter: int = 1000, tol: float = 1e-12) -> None:
        self.max_iter = max_iter
        self.tol = tol

    # ----- subclass hooks: natural-scale parameter vector `theta` -----------------------
    def _loglik(self, theta: Array, x: Array, t_x: Array, T: Array) -> Array:
        raise NotImplementedError

    def _loglik_grad(self, theta: Array, x: Array, t_x: Array, T: Array) -> tuple[Array, Array]:
        raise NotImplementedError

    def _prepare(self, x: Array, t_x: Array, T: Array) -> object:
        """What the fitting objective evaluates on, built once per fit."""
        return (x, t_x, T)

    def _loglik_grad_prepared(self, theta: Array, rows: object) -> tuple[Array, Array]:
        return self._loglik_grad(theta, *rows)  # type: ignore[misc]

    def _loglik_prepared(self, theta: Array, rows: object) -> Array:
        return self._loglik(theta, *rows)  # type: ignore[misc]

    def _expected(self, theta: Array, t: Array, x: Array, t_x: Array, T: Array) -> Array:
        raise NotImplementedError

    def _log_p_alive(self, theta: Array, x: Array, t_x: Array, T: Array) -> Array:
        raise NotImplementedError

    # ----- fitting ----------------------------------------------------------------------
    def fit(self, summary: pd.DataFrame) -> Self:
        """Maximum-likelihood estimates from a (frequency, recency, T) summary.

        The log-likelihood depends on a customer only through (frequency, recency, T), so
        it is summed over the distinct rows weighted by their counts.

        Parameters
        ----------
        summary : pandas.DataFrame
            Indexed by ``customer_id`` with ``frequency``, ``recency`` and ``T`` (see
            :func:`summary_from_transactions`).

        Returns
        -------
        self

        Raises
        ------
        SchemaError
            A column is missing or breaks 0 <= recency <= T.
        ConvergenceError
            The optimiser did not reach a finite maximum.
        """
        where = f"{type(self).__name__}.fit"
        check_in_range(self, "max_iter", self.max_iter, low=1)
        check_in_range(self, "tol", self.tol, low=0.0)
        x, t_x, T = rfm_arrays(summary, where=where)
        if len(x) == 0 or not (x > 0).any():
            raise ConfigError(
                describe(where, "at least one customer with a repeat purchase",
                         f"{len(x)} customer(s), none with frequency > 0")
            )
        (ux, ut, uT), weight = distinct_rows(x, t_x, T)
        start = np.ones(len(self._names))
        theta, mean_ll = self._maximise((ux, ut, uT), weight, start, where)
        n = weight.sum()
        self.params_ = {k: float(v) for k, v in zip(self._names, theta, strict=True)}
        self.log_likelihood_ = float(mean_ll * n)
        self.n_customers_ = int(n)
        self.n_distinct_ = len(ux)
        return self

    def _maximise(
        self, data: tuple[Array, Array, Array], weight: Array, start: Array, where: str
    ) -> tuple[Array, float]:
        """Maximum of the weighted mean log-likelihood over ``data`` from ``start``.

        Rows that sum their own Hessian (BG/NBD) get Newton steps in a trust region;
        otherwise, or where those fail, L-BFGS-B on the per-row log-likelihood.
        """
        rows = self._prepare(*data)
        n = weight.sum()
        if isinstance(rows, SummableRows):
            found = maximise_newton(rows.summed(weight), start, n=n,
                                    max_iter=min(self.max_iter, _MAX_NEWTON_ITER))
            if found is not None:
                return found

        def objective(log_theta: Array) -> tuple[float, Array] | float:
            theta = np.exp(log_theta)
            with np.errstate(all="ignore"):
                if self._analytic_gradient:
                    ll, grad = self._loglik_grad_prepared(theta, rows)
                    value, slope = -float(weight @ ll) / n, -(grad @ weight) / n
                    if not (np.isfinite(value) and np.all(np.isfinite(slope))):
                        return _PENALTY, np.zeros_like(log_theta)
                    return value, slope
                value = -float(weight @ self._loglik_prepared(theta, rows)) / n
            # a non-finite likelihood far from the optimum: a large value makes the line
            # search step back instead of stopping on NaN
            return value if np.isfinite(value) else _PENALTY

        return maximise(
            objective,
            start,
            names=self._names,
            where=where,
            jac=True if self._analytic_gradient else "3-point",
            max_iter=self.max_iter,
            tol=self.tol,
        )

    def _theta(self) -> Array:
        check_fitted(self)
        return np.array([self.params_[k] for k in self._names])

    def _arrays(self, summary: pd.DataFrame, verb: str) -> tuple[Array, Array, Array]:
        x, t_x, T = rfm_arrays(summary, where=f"{type(self).__name__}.{verb}")
        return x, t_x, T

    # ----- predictions ------------------------------------------------------------------
    def expected_purchases(
        self, summary: pd.DataFrame, *, horizon: float | pd.Series | None = None
    ) -> pd.Series:
        """Expected repeat purchases in the next ``horizon`` time units, given each history.

        Parameters
        ----------
        summary : pandas.DataFrame
            Indexed by ``customer_id`` with ``frequency``, ``recency`` and ``T``.
        horizon : float, pandas.Series or None, default=None
            Length of the forecast window in the summary's time unit (weeks from
            :func:`summary_from_transactions` by default); a Series gives one per customer;
            None uses the summary's ``duration_holdout`` column.

        Returns
        -------
        pandas.Series
            ``expected_purchases``, same index.
        """
        theta = self._theta()
        x, t_x, T = self._arrays(summary, "expected_purchases")
        t = self._horizon(summary, horizon)
        return pd.Series(self._expected(theta, t, x, t_x, T), index=summary.index,
                         name="expected_purchases")

    def predict(
        self, summary: pd.DataFrame, *, horizon: float | pd.Series | None = 52.0
    ) -> pd.Series:
        """Expected repeat purchases in ``horizon`` units; see :meth:`expected_purchases`."""
        return self.expected_purchases(summary, horizon=horizon)

    def probability_alive(self, summary: pd.DataFrame) -> pd.Series:
        """Probability that each customer is still active at the end of calibration (``T``)."""
        theta = self._theta()
        x, t_x, T = self._arrays(summary, "probability_alive")
        return pd.Series(np.exp(self._log_p_alive(theta, x, t_x, T)), index=summary.index,
                         name="p_alive")

    def population_expected_purchases(self, horizon: float) -> float:
        """Expected purchases of a newly acquired customer within ``horizon`` units."""
        theta = self._theta()
        zero = np.zeros(1)
        return float(self._expected(theta, np.array([float(horizon)]), zero, zero, zero)[0])

    def log_likelihood(self, summary: pd.DataFrame) -> pd.Series:
        """Each customer's log-likelihood at the fitted parameters."""
        theta = self._theta()
        x, t_x, T = self._arrays(summary, "log_likelihood")
        return pd.Series(self._loglik(theta, x, t_x, T), index=summary.index,
                         name="log_likelihood")

    def score(self, summary: pd.DataFrame) -> float:
        """Mean log-likelihood per customer (higher is better), as ``GaussianMixture.score``."""
        return float(self.log_likelihood(summary).mean())

    def clv(
        self,
        summary: pd.DataFrame,
        spend: pd.Series,
        *,
        months: int = 12,
        monthly_discount_rate: float = 0.01,
        periods_per_month: float = PERIODS_PER_MONTH["W"],
    ) -> pd.Series:
        """Discounted value of each customer's expected purchases over the next ``months``.

        ``CLV = sum_{m=1..months} spend * (E[Y(m P)] - E[Y((m-1) P)]) / (1 + d)^m`` with
        ``P = periods_per_month`` and ``d = monthly_discount_rate``: the purchases expected
        in each month are valued at the expected spend per purchase and discounted at the
        end of that month, as lifetimes' ``customer_lifetime_value`` does.

        Parameters
        ----------
        summary : pandas.DataFrame
            Indexed by ``customer_id`` with ``frequency``, ``recency`` and ``T``.
        spend : pandas.Series
            Expected value of one purchase per customer, e.g.
            ``GammaGammaModel.expected_spend(summary)``; aligned on the index.
        months : int, default=12
            Months ahead.
        monthly_discount_rate : float, default=0.01
            Discount rate per month (0.01 is about 12.7 % a year).
        periods_per_month : float, default=4.345
            Summary time units per month: 4.345 for weeks, 30 for days (lifetimes' factors).

        Returns
        -------
        pandas.Series
            ``clv``, same index as ``summary``.
        """
        check_in_range(self, "months", months, low=1)
        check_in_range(self, "monthly_discount_rate", monthly_discount_rate, low=0.0)
        check_in_range(self, "periods_per_month", periods_per_month, low=1e-9)
        theta = self._theta()
        x, t_x, T = self._arrays(summary, "clv")
        value = spend.reindex(summary.index).to_numpy(dtype=float)
        if np.isnan(value).any():
            missing = summary.index[np.isnan(value)][0]
            raise ConfigError(describe(f"{type(self).__name__}.clv spend",
                                       "a spend for every customer in the summary",
                                       f"none for {missing!r}"))
        total = np.zeros(len(x))
        previous = np.zeros(len(x))
        for m in range(1, months + 1):
            t = np.full(len(x), m * periods_per_month)
            current = self._expected(theta, t, x, t_x, T)
            total += value * (current - previous) / (1.0 + monthly_discount_rate) ** m
            previous = current
        return pd.Series(total, index=summary.index, name="clv")

    def _horizon(self, summary: pd.DataFrame, horizon: float | pd.Series | None) -> Array:
        where = f"{type(self).__name__}.expected_purchases"
        if horizon is None:
            if "duration_holdout" not in summary.columns:
                raise ConfigError(describe(where, "a horizon or a 'duration_holdout' column",
                                           "neither"))
            horizon = summary["duration_holdout"]
        if isinstance(horizon, pd.Series):
            t = horizon.reindex(summary.index).to_numpy(dtype=float)
        else:
            t = np.full(len(summary), float(horizon))
        if not np.all(np.isfinite(t) & (t >= 0)):
            raise ConfigError(describe(where, "a horizon >= 0 for every customer",
                                       "a negative or missing value"))
        return t
