"""Log-likelihoods of BG/NBD, Pareto/NBD and Gamma-Gamma, in log space, per distinct row.

Every function takes arrays of distinct rows (the caller weights them by their counts) and
parameters on their natural scale; the ``*_grad`` functions return the gradient of the
log-likelihood per row with respect to the *logarithm* of each parameter, which is what the
optimiser moves.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.integrate import quad
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

Array = NDArray[np.float64]


class Rows:
    """(frequency, recency, T) rows with each column's distinct values and codes.

    Terms that depend on one column only (Gamma and digamma functions of r + x, logs of
    alpha + T) are computed once per distinct value and gathered, so an evaluation costs
    a few cheap vector operations per row.
    """

    def __init__(self, x: Array, t_x: Array, T: Array) -> None:
        self.x, self.t_x, self.T = x, t_x, T
        self.x_code, self.x_values = _factorize(x)
        self.t_code, self.t_values = _factorize(t_x)
        self.T_code, self.T_values = _factorize(T)


def _factorize(values: Array) -> tuple[NDArray[np.intp], Array]:
    codes, uniques = pd.factorize(values)
    return codes, np.asarray(uniques, dtype=float)


def _bgnbd_parts(params: Array, rows: Rows) -> tuple[Array, Array, Array, Array, Array]:
    """Shared log term, log A3, log A4 (-inf for x = 0), log(alpha+T), log(alpha+t_x)."""
    r, alpha, a, b = params
    xv = rows.x_values
    base = (gammaln(r + xv) - gammaln(r) + r * np.log(alpha) + betaln(a, b + xv)
            - betaln(a, b))[rows.x_code]
    with np.errstate(divide="ignore"):
        log_ab = np.where(xv > 0, np.log(a) - np.log(np.maximum(b + xv - 1.0, 1e-300)),
                          -np.inf)[rows.x_code]
    log_aT = np.log(alpha + rows.T_values)[rows.T_code]
    log_at = np.log(alpha + rows.t_values)[rows.t_code]
    rx = r + rows.x
    return base, -rx * log_aT, log_ab - rx * log_at, log_aT, log_at


def bgnbd_loglik_rows(params: Array, rows: Rows) -> Array:
    """Individual BG/NBD log-likelihood, Fader, Hardie & Lee (2005), eq. (6)."""
    base, log_a3, log_a4, _, _ = _bgnbd_parts(params, rows)
    return base + np.logaddexp(log_a3, log_a4)


def bgnbd_loglik_grad_rows(params: Array, rows: Rows) -> tuple[Array, Array]:
    """BG/NBD log-likelihood per row and its gradient in log-parameters (shape (4, n))."""
    r, alpha, a, b = params
    base, log_a3, log_a4, log_aT, log_at = _bgnbd_parts(params, rows)
    d = log_a4 - log_a3
    w4 = expit(d)  # weight of the dropout term; the two weights sum to one
    w3 = 1.0 - w4
    xv, code = rows.x_values, rows.x_code
    psi_ab = digamma(a + b)
    psi_abx = digamma(a + b + xv)
    per_x_r = (digamma(r + xv) - digamma(r) + np.log(alpha))[code]
    per_x_a = (psi_ab - psi_abx)[code]
    per_x_b = (psi_ab + digamma(b + xv) - digamma(b) - psi_abx)[code]
    inv_b = (1.0 / np.where(xv > 0, b + xv - 1.0, 1.0))[code]  # x = 0 rows have w4 = 0
    inv_aT = (1.0 / (alpha + rows.T_values))[rows.T_code]
    inv_at = (1.0 / (alpha + rows.t_values))[rows.t_code]
    rx = r + rows.x
    d_r = per_x_r - w3 * log_aT - w4 * log_at
    d_alpha = r / alpha - rx * (w3 * inv_aT + w4 * inv_at)
    grad = np.vstack([r * d_r, alpha * d_alpha, a * (per_x_a + w4 / a),
                      b * (per_x_b - w4 * inv_b)])
    return base + log_a3 + np.logaddexp(0.0, d), grad


def bgnbd_loglik(params: Array, x: Array, t_x: Array, T: Array) -> Array:
    """Individual BG/NBD log-likelihood, Fader, Hardie & Lee (2005), eq. (6)."""
    return bgnbd_loglik_rows(params, Rows(x, t_x, T))


def bgnbd_loglik_grad(params: Array, x: Array, t_x: Array, T: Array) -> tuple[Array, Array]:
    """BG/NBD log-likelihood per row and its gradient in log-parameters (shape (4, n))."""
    return bgnbd_loglik_grad_rows(params, Rows(x, t_x, T))


def _log_a0(r: float, alpha: float, s: float, beta: float, x: Array, t: Array) -> Array:
    """log of 2F1(r+s+x, c; r+s+x+1; z) / (m + t)^(r+s+x), the branch chosen by alpha vs beta.

    Fader & Hardie (2005), "A Note on Deriving the Pareto/NBD Model", eq. (22)-(23). The
    Euler transformation 2F1(a, c; a+1; z) = (1-z)^(1-c) 2F1(1, a+1-c; a+1; z) gives a
    series of positive, decaying terms, which scipy evaluates accurately for large x.
    """
    rsx = r + s + x
    if alpha >= beta:
        m, c, z = alpha, s + 1.0, (alpha - beta) / (alpha + t)
    else:
        m, c, z = beta, r + x, (beta - alpha) / (beta + t)
    log_f = (1.0 - c) * np.log1p(-z) + np.log(hyp2f1(1.0, rsx + 1.0 - c, rsx + 1.0, z))
    return log_f - rsx * np.log(m + t)


def pareto_terms(
    params: Array, x: Array, t_x: Array, T: Array
) -> tuple[Array, Array, Array]:
    """Pareto/NBD pieces: shared part, log of the alive term, log of the dropout term."""
    r, alpha, s, beta = params
    base = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    log_alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    upper, lower = _log_a0(r, alpha, s, beta, x, t_x), _log_a0(r, alpha, s, beta, x, T)
    # A0 = exp(upper) - exp(lower) >= 0; -inf when t_x == T (no time to drop out unseen)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = upper + np.log1p(-np.exp(np.minimum(lower - upper, 0.0)))
    log_dead = np.log(s) - np.log(r + s + x) + diff
    bad = np.flatnonzero(np.isnan(log_dead))
    if 0 < len(bad) <= _MAX_QUADRATURE_ROWS:
        log_dead[bad] = [_log_dead_quad(params, x[i], t_x[i], T[i]) for i in bad]
    return base, log_alive, log_dead


#: Rows per call for which the integral replaces a failed 2F1 (far from any optimum, the
#: optimiser may wander where scipy's 2F1 overflows for every row; it then backs off).
_MAX_QUADRATURE_ROWS = 1_000


def _log_dead_quad(params: Array, x: float, t_x: float, T: float) -> float:
    """log of s * int_{t_x}^{T} (alpha+u)^-(r+x) (beta+u)^-(s+1) du, by adaptive quadrature.

    The same dropout term as the 2F1 form (Fader & Hardie 2005 note, eq. (21)), scaled by
    its value at ``t_x`` so the integrand runs from 1 down, never under- or overflowing.
    """
    r, alpha, s, beta = params

    def integrand(u: float) -> float:
        return float(np.exp(-(r + x) * np.log1p((u - t_x) / (alpha + t_x))
                            - (s + 1.0) * np.log1p((u - t_x) / (beta + t_x))))

    value, _ = quad(integrand, t_x, T, limit=200)
    return float(np.log(s) + np.log(value) - (r + x) * np.log(alpha + t_x)
                 - (s + 1.0) * np.log(beta + t_x))


def pareto_loglik(params: Array, x: Array, t_x: Array, T: Array) -> Array:
    """Individual Pareto/NBD log-likelihood, Fader & Hardie (2005) note, eq. (22)."""
    base, log_alive, log_dead = pareto_terms(params, x, t_x, T)
    return base + np.logaddexp(log_alive, log_dead)


def gamma_gamma_loglik(params: Array, x: Array, zbar: Array) -> Array:
    """Log density of the mean spend ``zbar`` over ``x`` transactions, Fader, Hardie & Lee
    (2005) "RFM and CLV", Appendix, the marginal of z-bar under Gamma-Gamma."""
    p, q, gamma = params
    px = p * x
    return (
        gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(gamma)
        + px * np.log(x) + (px - 1.0) * np.log(zbar) - (px + q) * np.log(gamma + x * zbar)
    )


def gamma_gamma_loglik_grad(params: Array, x: Array, zbar: Array) -> tuple[Array, Array]:
    """Gamma-Gamma log-likelihood per row and its gradient in log-parameters (shape (3, n))."""
    p, q, gamma = params
    px = p * x
    psi = digamma(px + q)
    log_den = np.log(gamma + x * zbar)
    d_p = x * (psi - digamma(px) + np.log(x) + np.log(zbar) - log_den)
    d_q = psi - digamma(q) + np.log(gamma) - log_den
    d_gamma = q / gamma - (px + q) / (gamma + x * zbar)
    grad = np.vstack([p * d_p, q * d_q, gamma * d_gamma])
    return gamma_gamma_loglik(params, x, zbar), grad
