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
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1, polygamma

from marketloop.predict._clv_base import column_codes

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

    def summed(self, weight: Array) -> BetaGeoSums:
        """The BG/NBD log-likelihood of the rows, each counted ``weight`` times, summed."""
        return BetaGeoSums(self, weight)


def _factorize(values: Array) -> tuple[NDArray[np.int64], Array]:
    codes, uniques = column_codes(values)
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


class BetaGeoSums:
    """The BG/NBD log-likelihood of weighted distinct rows, summed, with gradient and Hessian.

    Per row, ln L = c(x) + r ln(alpha) - (r+x) ln(alpha+T) + 1{x>0} softplus(d), with
    c(x) = ln Gamma(r+x) - ln Gamma(r) + ln B(a, b+x) - ln B(a, b) and
    d = ln a - ln(b+x-1) + (r+x) (ln(alpha+T) - ln(alpha+t_x)), the log of the ratio of the
    two bracket terms of Fader, Hardie & Lee (2005), eq. (6). Everything but the softplus
    is summed per distinct x and per distinct T from weights aggregated once; the terms of
    alpha in d are computed per distinct (t_x, T) pair and gathered, so an evaluation costs
    about thirty vector operations over the rows with a repeat purchase.
    """

    def __init__(self, rows: Rows, weight: Array) -> None:
        self.n = float(weight.sum())
        self.x_values = rows.x_values
        self.w_x = np.bincount(rows.x_code, weights=weight, minlength=len(rows.x_values))
        # one grid of the times recency and T take, so ln(alpha + .) is one table
        self.grid = np.union1d(rows.t_values, rows.T_values)
        T_grid = np.searchsorted(self.grid, rows.T_values)[rows.T_code]
        self.w_T = np.bincount(T_grid, weights=weight, minlength=len(self.grid))
        self.wx_T = np.bincount(T_grid, weights=weight * rows.x, minlength=len(self.grid))
        rep = rows.x > 0
        t_grid = np.searchsorted(self.grid, rows.t_values)[rows.t_code[rep]]
        self.pair_code, pairs = _pair_codes(t_grid, T_grid[rep], len(self.grid))
        self.pair_t, self.pair_T = np.divmod(pairs, len(self.grid))
        self.w = weight[rep]
        self.x = rows.x[rep]
        self.x_code = rows.x_code[rep]

    def __call__(self, theta: Array) -> tuple[float, Array, Array]:
        """Summed log-likelihood, gradient and Hessian in log-parameters at ``theta``."""
        value, grad, hess = self._separable(theta)
        v2, g2, h2 = self._softplus(theta)
        return value + v2, grad + g2, hess + h2

    def _separable(self, theta: Array) -> tuple[float, Array, Array]:
        """The terms of one column only, summed per distinct x and T."""
        r, alpha, a, b = theta
        xv, w_x, n = self.x_values, self.w_x, self.n
        log_at = np.log(alpha + self.grid)
        inv_at = 1.0 / (alpha + self.grid)
        coef = r * self.w_T + self.wx_T  # weighted r + x per T
        log_alpha = np.log(alpha)
        value = (_dot(w_x, gammaln(r + xv) + betaln(a, b + xv))
                 - n * (gammaln(r) + betaln(a, b) - r * log_alpha) - _dot(coef, log_at))
        psi_ab, psi_abx = digamma(a + b), digamma(a + b + xv)
        d_r = (_dot(w_x, digamma(r + xv)) - n * (digamma(r) - log_alpha)
               - _dot(self.w_T, log_at))
        d_alpha = n * r / alpha - _dot(coef, inv_at)
        d_a = n * psi_ab - _dot(w_x, psi_abx)
        d_b = _dot(w_x, digamma(b + xv) - psi_abx) + n * (psi_ab - digamma(b))
        tri_ab, tri_abx = polygamma(1, a + b), polygamma(1, a + b + xv)
        h_rr = _dot(w_x, polygamma(1, r + xv)) - n * polygamma(1, r)
        h_ralpha = n / alpha - _dot(self.w_T, inv_at)
        h_alpha = -n * r / alpha**2 + _dot(coef, inv_at**2)
        h_aa = n * tri_ab - _dot(w_x, tri_abx)
        h_bb = _dot(w_x, polygamma(1, b + xv) - tri_abx) + n * (tri_ab - polygamma(1, b))
        grad_nat = np.array([d_r, d_alpha, d_a, d_b])
        hess_nat = np.array([[h_rr, h_ralpha, 0.0, 0.0], [h_ralpha, h_alpha, 0.0, 0.0],
                             [0.0, 0.0, h_aa, h_aa], [0.0, 0.0, h_aa, h_bb]])
        # to log-parameters: d2f/du_i du_j = th_i th_j f_ij + [i == j] th_i f_i
        return (float(value), theta * grad_nat,
                np.outer(theta, theta) * hess_nat + np.diag(theta * grad_nat))

    def _softplus(self, theta: Array) -> tuple[float, Array, Array]:
        """Sum of w softplus(d) over the rows with a repeat purchase, in log-parameters."""
        r, alpha, a, b = theta
        xv = self.x_values
        log_at = np.log(alpha + self.grid)
        inv_at = 1.0 / (alpha + self.grid)
        pt, pT, code = self.pair_t, self.pair_T, self.pair_code
        D = np.take(log_at[pT] - log_at[pt], code)  # ln(alpha+T) - ln(alpha+t_x) <= 0
        E = np.take(inv_at[pT] - inv_at[pt], code)  # its derivative in alpha
        F = np.take(inv_at[pt] ** 2 - inv_at[pT] ** 2, code)  # and the second
        q_x = 1.0 / np.where(xv > 0, b + xv - 1.0, 1.0)  # x = 0 is never gathered
        q = np.take(q_x, self.x_code)
        rx = self.x + r
        d = np.take(np.log(a) + np.log(q_x), self.x_code) + rx * D
        # exp(-|d|), floored at exp(-60) ~ 1e-26 (an error far below the sums' rounding):
        # far from the optimum |d| reaches thousands, and subnormal results of exp and of
        # the products below slow the arithmetic a hundredfold
        e = np.exp(-np.minimum(np.abs(d), 60.0))
        p = 1.0 / (1.0 + e)  # sigmoid(|d|), in [1/2, 1]
        w = self.w
        value = _dot(w, np.maximum(d, 0.0)) + _dot(w, np.log1p(e))  # softplus(d)
        s = w * (np.copysign(p - 0.5, d) + 0.5)  # w sigmoid(d)
        v = w * (e * p * p)  # w sigmoid(d) (1 - sigmoid(d))
        G = rx * E
        s_D, s_G, s_1, s_q = _dot(s, D), _dot(s, G), s.sum(), _dot(s, q)
        grad = np.array([r * s_D, alpha * s_G, s_1, -b * s_q])
        vD, vG, vq = v * D, v * G, v * q
        m = np.array([  # sum v g_j g_k with g = (D, G, 1, q) before scaling
            [_dot(vD, D), _dot(vD, G), vD.sum(), _dot(vD, q)],
            [0.0, _dot(vG, G), vG.sum(), _dot(vG, q)],
            [0.0, 0.0, v.sum(), _dot(v, q)],
            [0.0, 0.0, 0.0, _dot(vq, q)],
        ])
        m = np.triu(m) + np.triu(m, 1).T
        scale = np.array([r, alpha, 1.0, -b])
        hess = np.outer(scale, scale) * m
        # plus sum s d2(d)/du_j du_k: (r D), (r alpha E), (alpha G + alpha^2 rx F),
        # (-b q + b^2 q^2); d is linear in ln a
        cross = r * alpha * _dot(s, E)
        hess[0, 0] += r * s_D
        hess[0, 1] += cross
        hess[1, 0] += cross
        hess[1, 1] += alpha * s_G + alpha**2 * _dot(s, rx * F)
        hess[3, 3] += -b * s_q + b**2 * _dot(s * q, q)
        return float(value), grad, hess


def _dot(a: Array, b: Array) -> float:
    """Inner product without BLAS: on a busy machine OpenBLAS threads spinning between
    calls take the cores from the elementwise work around them (measured 10x slower)."""
    return float(np.einsum("i,i->", a, b))


def _pair_codes(
    first: NDArray[np.intp], second: NDArray[np.intp], size: int
) -> tuple[NDArray[np.intp], NDArray[np.int64]]:
    """Codes of the distinct (first, second) pairs of grid indices, and the packed pairs."""
    key = first.astype(np.int64) * size + second
    if size * size <= 4 * len(key) + 100_000:  # a dense table is cheaper than hashing
        present = np.zeros(size * size, dtype=bool)
        present[key] = True
        lookup = np.cumsum(present) - 1
        return lookup[key], np.flatnonzero(present)
    code, pairs = pd.factorize(key)
    return code, np.asarray(pairs, dtype=np.int64)


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
