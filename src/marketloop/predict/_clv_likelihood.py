"""Log-likelihoods of BG/NBD, Pareto/NBD and Gamma-Gamma, in log space, per distinct row.

Every function takes arrays of distinct rows (the caller weights them by their counts) and
parameters on their natural scale; the ``*_grad`` functions return the gradient of the
log-likelihood per row with respect to the *logarithm* of each parameter, which is what the
optimiser moves.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.integrate import quad
from scipy.special import betaln, digamma, gammaln, hyp2f1

Array = NDArray[np.float64]


def bgnbd_terms(
    r: float, alpha: float, a: float, b: float, x: Array, t_x: Array, T: Array
) -> tuple[Array, Array, Array]:
    """The pieces of the BG/NBD log-likelihood: shared part, log A3 and log A4 (-inf for x=0)."""
    base = (
        gammaln(r + x)
        - gammaln(r)
        + r * np.log(alpha)
        + betaln(a, b + x)
        - betaln(a, b)
    )
    log_a3 = -(r + x) * np.log(alpha + T)
    repeat = x > 0
    log_a4 = np.full_like(x, -np.inf)
    xr = x[repeat]
    log_a4[repeat] = (
        np.log(a) - np.log(b + xr - 1.0) - (r + xr) * np.log(alpha + t_x[repeat])
    )
    return base, log_a3, log_a4


def bgnbd_loglik(params: Array, x: Array, t_x: Array, T: Array) -> Array:
    """Individual BG/NBD log-likelihood, Fader, Hardie & Lee (2005), eq. (6)."""
    r, alpha, a, b = params
    base, log_a3, log_a4 = bgnbd_terms(r, alpha, a, b, x, t_x, T)
    return base + np.logaddexp(log_a3, log_a4)


def bgnbd_loglik_grad(params: Array, x: Array, t_x: Array, T: Array) -> tuple[Array, Array]:
    """BG/NBD log-likelihood per row and its gradient in log-parameters (shape (4, n))."""
    r, alpha, a, b = params
    base, log_a3, log_a4 = bgnbd_terms(r, alpha, a, b, x, t_x, T)
    total = np.logaddexp(log_a3, log_a4)
    w3 = np.exp(log_a3 - total)  # weights of the two mixture terms; they sum to one
    w4 = 1.0 - w3
    psi_ab = digamma(a + b)
    psi_abx = digamma(a + b + x)
    # x = 0 rows have w4 = 0; keep their t_x-term finite so 0 * finite stays 0
    b_x1 = np.where(x > 0, b + x - 1.0, 1.0)
    d_r = (
        digamma(r + x) - digamma(r) + np.log(alpha)
        - w3 * np.log(alpha + T) - w4 * np.log(alpha + t_x)
    )
    d_alpha = r / alpha - w3 * (r + x) / (alpha + T) - w4 * (r + x) / (alpha + t_x)
    d_a = psi_ab - psi_abx + w4 / a
    d_b = psi_ab + digamma(b + x) - digamma(b) - psi_abx - w4 / b_x1
    grad = np.vstack([r * d_r, alpha * d_alpha, a * d_a, b * d_b])
    return base + total, grad


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
