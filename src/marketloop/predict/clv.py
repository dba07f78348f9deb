"""Customer lifetime value: BG/NBD and Pareto/NBD for purchases, Gamma-Gamma for spend.

Fit a repeat-purchase model on the (frequency, recency, T) summary of a calibration
period (:func:`summary_from_transactions`), a spend model on the repeat buyers' mean
purchase value, and combine them with :meth:`BetaGeoModel.clv`. Everything is maximum
likelihood in log space; see docs/clv.md for the equations and the CDNow reproduction.
"""

from __future__ import annotations

import warnings
from typing import ClassVar, Self

import numpy as np
import pandas as pd
from scipy.special import hyp2f1

from marketloop._validation import check_fitted, check_in_range
from marketloop.exceptions import ConfigError, MarketloopWarning, describe
from marketloop.predict._clv_base import (
    Array,
    ConvergenceError,
    ParamsMixin,
    distinct_rows,
    maximise,
    rfm_arrays,
)
from marketloop.predict._clv_likelihood import (
    Rows,
    bgnbd_loglik,
    bgnbd_loglik_grad,
    bgnbd_loglik_grad_rows,
    bgnbd_loglik_rows,
    gamma_gamma_loglik,
    gamma_gamma_loglik_grad,
    pareto_loglik,
    pareto_terms,
)
from marketloop.predict._clv_repeat import RepeatPurchaseModel
from marketloop.predict._clv_summary import summary_from_transactions

__all__ = [
    "BetaGeoModel",
    "ConvergenceError",
    "GammaGammaModel",
    "ParetoNBDModel",
    "summary_from_transactions",
]


class BetaGeoModel(RepeatPurchaseModel):
    """BG/NBD: Poisson purchases with Gamma rates, Beta-geometric dropout after each purchase.

    Parameters
    ----------
    max_iter : int, default=1000
        Iterations of the L-BFGS-B optimiser.
    tol : float, default=1e-12
        Relative change of the mean log-likelihood at which the optimiser stops.

    Attributes
    ----------
    params_ : dict of str to float
        ``r``, ``alpha`` (Gamma purchase rates), ``a``, ``b`` (Beta dropout probability).
    log_likelihood_ : float
        Summed log-likelihood at the estimate.
    n_customers_, n_distinct_ : int
        Customers fitted, and distinct (frequency, recency, T) rows the likelihood summed.

    References
    ----------
    Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). "Counting your customers" the easy
    way: an alternative to the Pareto/NBD model. Marketing Science 24(2), 275-284:
    eq. (6) likelihood (coded with its analytic gradient), eq. (9) E[X(t)], eq. (10)
    conditional expectation, and P(alive) from its appendix.

    Examples
    --------
    >>> summary = pd.DataFrame({"frequency": [2, 1, 0, 0, 5], "recency": [30.4, 1.7, 0, 0, 36],
    ...                         "T": [38.9, 38.9, 38.9, 30.0, 38.0]})
    >>> model = BetaGeoModel().fit(summary)
    >>> sorted(model.params_)
    ['a', 'alpha', 'b', 'r']
    """

    _names: ClassVar[tuple[str, ...]] = ("r", "alpha", "a", "b")
    _analytic_gradient: ClassVar[bool] = True

    def _loglik(self, theta: Array, x: Array, t_x: Array, T: Array) -> Array:
        return bgnbd_loglik(theta, x, t_x, T)

    def _loglik_grad(self, theta: Array, x: Array, t_x: Array, T: Array) -> tuple[Array, Array]:
        return bgnbd_loglik_grad(theta, x, t_x, T)

    def _prepare(self, x: Array, t_x: Array, T: Array) -> object:
        return Rows(x, t_x, T)

    def _loglik_grad_prepared(self, theta: Array, rows: object) -> tuple[Array, Array]:
        return bgnbd_loglik_grad_rows(theta, rows)  # type: ignore[arg-type]

    def _loglik_prepared(self, theta: Array, rows: object) -> Array:
        return bgnbd_loglik_rows(theta, rows)  # type: ignore[arg-type]

    def _log_p_alive(self, theta: Array, x: Array, t_x: Array, T: Array) -> Array:
        r, alpha, a, b = theta
        ratio = np.zeros_like(x)
        rep = x > 0
        ratio[rep] = np.exp(
            np.log(a) - np.log(b + x[rep] - 1.0)
            + (r + x[rep]) * (np.log(alpha + T[rep]) - np.log(alpha + t_x[rep]))
        )
        return -np.log1p(ratio)

    def _expected(self, theta: Array, t: Array, x: Array, t_x: Array, T: Array) -> Array:
        r, alpha, a, b = theta
        one_minus_z = (alpha + T) / (alpha + T + t)
        # ((a+T)/(a+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z), Euler-transformed so it cannot
        # overflow for large x: (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z)
        h = one_minus_z ** (a - 1.0) * hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0,
                                              1.0 - one_minus_z)
        numerator = (a + b + x - 1.0) / (a - 1.0) * (1.0 - h)
        return numerator * np.exp(self._log_p_alive(theta, x, t_x, T))


class ParetoNBDModel(RepeatPurchaseModel):
    """Pareto/NBD: Poisson purchases with Gamma rates, exponential lifetimes with Gamma rates.

    Parameters
    ----------
    max_iter : int, default=1000
        Iterations of the L-BFGS-B optimiser (central-difference gradient).
    tol : float, default=1e-12
        Relative change of the mean log-likelihood at which the optimiser stops.

    Attributes
    ----------
    params_ : dict of str to float
        ``r``, ``alpha`` (purchase rates), ``s``, ``beta`` (dropout rates).
    log_likelihood_ : float
        Summed log-likelihood at the estimate.
    n_customers_, n_distinct_ : int
        Customers fitted and distinct (frequency, recency, T) rows.

    References
    ----------
    Schmittlein, D. C., Morrison, D. G. & Colombo, R. (1987). Counting your customers: who
    are they and what will they do next? Management Science 33(1), 1-24.
    Fader, P. S. & Hardie, B. G. S. (2005). A note on deriving the Pareto/NBD model and
    related expressions: eq. (22)-(23) likelihood with the Gaussian hypergeometric 2F1
    (branch by alpha >= beta), eq. (18) P(alive), eq. (27) conditional expectation.

    Examples
    --------
    >>> summary = pd.DataFrame({"frequency": [2, 1, 0, 0, 5], "recency": [30.4, 1.7, 0, 0, 36],
    ...                         "T": [38.9, 38.9, 38.9, 30.0, 38.0]})
    >>> sorted(ParetoNBDModel().fit(summary).params_)
    ['alpha', 'beta', 'r', 's']
    """

    _names: ClassVar[tuple[str, ...]] = ("r", "alpha", "s", "beta")

    def _loglik(self, theta: Array, x: Array, t_x: Array, T: Array) -> Array:
        return pareto_loglik(theta, x, t_x, T)

    def _log_p_alive(self, theta: Array, x: Array, t_x: Array, T: Array) -> Array:
        _, log_alive, log_dead = pareto_terms(theta, x, t_x, T)
        return log_alive - np.logaddexp(log_alive, log_dead)

    def _expected(self, theta: Array, t: Array, x: Array, t_x: Array, T: Array) -> Array:
        r, alpha, s, beta = theta
        scale = (r + x) * (beta + T) / (alpha + T)
        if abs(s - 1.0) < 1e-9:
            alive_part = scale * np.log((beta + T + t) / (beta + T))
        else:
            alive_part = scale / (s - 1.0) * (1.0 - ((beta + T) / (beta + T + t)) ** (s - 1.0))
        return alive_part * np.exp(self._log_p_alive(theta, x, t_x, T))


class GammaGammaModel(ParamsMixin):
    """Gamma-Gamma spend: purchase values Gamma(p, nu), nu ~ Gamma(q, gamma) per customer.

    Fitted on the repeat buyers' mean repeat-purchase value (``monetary_value``) and number
    of repeat purchases (``frequency``); assumes spend is independent of the purchase process.

    Parameters
    ----------
    max_iter : int, default=1000
        Iterations of the L-BFGS-B optimiser (analytic gradient).
    tol : float, default=1e-12
        Relative change of the mean log-likelihood at which the optimiser stops.

    Attributes
    ----------
    params_ : dict of str to float
        ``p``, ``q``, ``gamma``; the population mean purchase value is p gamma / (q - 1).
    log_likelihood_ : float
        Summed log-likelihood over the repeat buyers.
    n_customers_ : int
        Repeat buyers fitted.

    References
    ----------
    Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). RFM and CLV: using iso-value curves
    for customer base analysis. Journal of Marketing Research 42(4), 415-430: the
    marginal density of the mean spend (its footnote / Hardie's note 025) and eq. (5),
    the conditional expectation E[Z | z-bar, x].

    Examples
    --------
    >>> summary = pd.DataFrame({"frequency": [2, 1, 3, 1, 4, 2],
    ...                         "monetary_value": [22.4, 11.8, 40.0, 18.0, 25.0, 60.0]})
    >>> model = GammaGammaModel().fit(summary)
    >>> bool(model.expected_spend(summary).gt(0).all())
    True
    """

    _names: ClassVar[tuple[str, ...]] = ("p", "q", "gamma")

    def __init__(self, max_iter: int = 1000, tol: float = 1e-12) -> None:
        self.max_iter = max_iter
        self.tol = tol

    def _repeat_buyers(self, summary: pd.DataFrame, verb: str) -> tuple[Array, Array]:
        x, z = rfm_arrays(summary, where=f"GammaGammaModel.{verb}",
                          columns=("frequency", "monetary_value"))
        keep = (x > 0) & (z > 0)
        dropped = int(((x > 0) & (z == 0)).sum())
        if dropped and verb == "fit":
            warnings.warn(f"GammaGammaModel.fit: left out {dropped} repeat buyer(s) whose mean "
                          "repeat-purchase value is 0 (the model needs values > 0).",
                          MarketloopWarning, stacklevel=3)
        return x[keep], z[keep]

    def fit(self, summary: pd.DataFrame) -> Self:
        """Maximum-likelihood (p, q, gamma) from repeat buyers (``frequency`` > 0).

        Parameters
        ----------
        summary : pandas.DataFrame
            Indexed by ``customer_id`` with ``frequency`` and ``monetary_value``; customers
            without repeat purchases are left out.

        Returns
        -------
        self
        """
        check_in_range(self, "max_iter", self.max_iter, low=1)
        x, z = self._repeat_buyers(summary, "fit")
        if len(x) < 2:
            raise ConfigError(describe("GammaGammaModel.fit", "at least 2 repeat buyers with "
                                       "monetary_value > 0", str(len(x))))
        (ux, uz), weight = distinct_rows(x, z)
        n = weight.sum()

        def objective(log_theta: Array) -> tuple[float, Array]:
            ll, grad = gamma_gamma_loglik_grad(np.exp(log_theta), ux, uz)
            return -float(weight @ ll) / n, -(grad @ weight) / n

        theta, mean_ll = maximise(objective, np.ones(3), names=self._names,
                                  where="GammaGammaModel.fit", jac=True,
                                  max_iter=self.max_iter, tol=self.tol)
        self.params_ = {k: float(v) for k, v in zip(self._names, theta, strict=True)}
        self.log_likelihood_ = float(mean_ll * n)
        self.n_customers_ = int(n)
        return self

    def expected_spend(self, summary: pd.DataFrame) -> pd.Series:
        """Expected value of each customer's future purchases, E[Z | z-bar, x].

        ``(q - 1) / (p x + q - 1) * p gamma / (q - 1) + p x / (p x + q - 1) * z-bar``: a
        weighted mean of the population mean and the customer's own mean; customers without
        repeat purchases (x = 0) get the population mean.

        Returns
        -------
        pandas.Series
            ``expected_spend``, same index.
        """
        check_fitted(self)
        p, q, gamma = (self.params_[k] for k in self._names)
        if q <= 1.0:
            raise ConfigError(describe("GammaGammaModel.expected_spend", "q > 1 (finite mean "
                                       "spend)", f"q = {q:.4g}"))
        x, z = rfm_arrays(summary, where="GammaGammaModel.expected_spend",
                          columns=("frequency", "monetary_value"))
        value = (p * (gamma + x * z)) / (p * x + q - 1.0)
        return pd.Series(value, index=summary.index, name="expected_spend")

    def predict(self, summary: pd.DataFrame) -> pd.Series:
        """Expected value per future purchase; see :meth:`expected_spend`."""
        return self.expected_spend(summary)

    def score(self, summary: pd.DataFrame) -> float:
        """Mean log-likelihood per repeat buyer (higher is better)."""
        check_fitted(self)
        x, z = self._repeat_buyers(summary, "score")
        theta = np.array([self.params_[k] for k in self._names])
        return float(np.mean(gamma_gamma_loglik(theta, x, z)))

