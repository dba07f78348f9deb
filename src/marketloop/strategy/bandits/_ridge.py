"""Bayesian ridge regressions behind the linear policies, updated by Sherman-Morrison.

Both keep the precision ``A = ridge I + sum w z z'``, its inverse and ``b = sum w r z``;
the posterior mean is ``theta = A^-1 b`` and the posterior covariance (up to the noise
scale) ``A^-1`` (Li, Chu, Langford & Schapire 2010; Agrawal & Goyal 2013).
"""

from __future__ import annotations

import numpy as np


def _inverse(a: np.ndarray) -> np.ndarray:
    """Inverse of symmetric positive definite matrices (stacked on the first axes)."""
    eye = np.broadcast_to(np.eye(a.shape[-1]), a.shape)
    inv = np.linalg.solve(a, eye)
    return 0.5 * (inv + np.swapaxes(inv, -1, -2))


class DisjointRidge:
    """One ridge regression per action on the context ``z`` (disjoint LinUCB/LinTS)."""

    def __init__(self, n_actions: int, dim: int, ridge: float) -> None:
        eye = np.eye(dim)
        self.A = np.repeat((ridge * eye)[None], n_actions, axis=0)
        self.A_inv = np.repeat((eye / ridge)[None], n_actions, axis=0)
        self.b = np.zeros((n_actions, dim))
        self.theta = np.zeros((n_actions, dim))

    def update(self, z: np.ndarray, action: int, reward: float, weight: float = 1.0) -> None:
        """Sherman-Morrison: ``(A + w z z')^-1 = A^-1 - w u u' / (1 + w z'u)``, ``u = A^-1 z``."""
        a_inv = self.A_inv[action]
        u = a_inv @ z
        a_inv -= np.outer(u, u) * (weight / (1.0 + weight * (z @ u)))
        self.A[action] += weight * np.outer(z, z)
        self.b[action] += weight * reward * z
        self.theta[action] = a_inv @ self.b[action]

    def add_batch(self, Z: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                  weights: np.ndarray) -> None:
        """Add many rows at once; the touched inverses are recomputed exactly."""
        touched = np.unique(actions)
        for a in touched:
            sel = actions == a
            zw = Z[sel] * weights[sel, None]
            self.A[a] += zw.T @ Z[sel]
            self.b[a] += zw.T @ rewards[sel]
        self.A_inv[touched] = _inverse(self.A[touched])
        self.theta[touched] = np.einsum("kij,kj->ki", self.A_inv[touched], self.b[touched])

    def mean_var(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and variance (per unit noise) of every action's reward at ``z``."""
        k, d = self.b.shape
        u = (self.A_inv.reshape(k * d, d) @ z).reshape(k, d)   # one gemv, not k small ones
        return self.theta @ z, np.maximum(u @ z, 0.0)

    def mean_var_batch(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``mean_var`` for every row of ``Z``: two arrays of shape (n_rows, n_actions)."""
        var = np.einsum("nd,kde,ne->nk", Z, self.A_inv, Z, optimize=True)
        return Z @ self.theta.T, np.maximum(var, 0.0)

    def state(self) -> dict[str, np.ndarray]:
        return {"A": self.A, "A_inv": self.A_inv, "b": self.b}

    def load(self, A: np.ndarray, A_inv: np.ndarray, b: np.ndarray) -> None:
        self.A, self.A_inv, self.b = A, A_inv, b
        self.theta = np.einsum("kij,kj->ki", A_inv, b)


class SharedRidge:
    """One ridge regression on ``phi(z, a) = z kron f_a`` (contexts times action features).

    ``f_a`` is ``[1, action features]``: the model holds a main effect of every action
    attribute and its interaction with every context feature, so actions that share an
    attribute share what was learned about it.
    """

    def __init__(self, features: np.ndarray, dim: int, ridge: float) -> None:
        self.F = np.column_stack([np.ones(len(features)), features])
        self.dz, self.df = dim, self.F.shape[1]
        size = self.dz * self.df
        self.A = ridge * np.eye(size)
        self.A_inv = np.eye(size) / ridge
        self.b = np.zeros(size)
        self.theta = np.zeros(size)

    def phi(self, z: np.ndarray, action: int) -> np.ndarray:
        return np.kron(z, self.F[action])

    def update(self, z: np.ndarray, action: int, reward: float, weight: float = 1.0) -> None:
        """Sherman-Morrison on the joint feature vector."""
        p = self.phi(z, action)
        u = self.A_inv @ p
        self.A_inv -= np.outer(u, u) * (weight / (1.0 + weight * (p @ u)))
        self.A += weight * np.outer(p, p)
        self.b += weight * reward * p
        self.theta = self.A_inv @ self.b

    def add_batch(self, Z: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                  weights: np.ndarray) -> None:
        phi = (Z[:, :, None] * self.F[actions][:, None, :]).reshape(len(Z), -1)
        pw = phi * weights[:, None]
        self.A += pw.T @ phi
        self.b += pw.T @ rewards
        self.A_inv = _inverse(self.A)
        self.theta = self.A_inv @ self.b

    def latent(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of ``g = Theta' z``: every action's score is ``F @ g``."""
        mean = z @ self.theta.reshape(self.dz, self.df)
        block = self.A_inv.reshape(self.dz, self.df * self.dz * self.df)
        half = (z @ block).reshape(self.df, self.dz, self.df)      # two BLAS contractions
        cov = np.tensordot(half, z, axes=(1, 0))
        return mean, 0.5 * (cov + cov.T)

    def mean_var(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, cov = self.latent(z)
        var = ((self.F @ cov) * self.F).sum(axis=1)
        return self.F @ mean, np.maximum(var, 0.0)

    def mean_var_batch(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = [self.mean_var(z) for z in Z]
        return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])

    def state(self) -> dict[str, np.ndarray]:
        return {"A": self.A, "A_inv": self.A_inv, "b": self.b}

    def load(self, A: np.ndarray, A_inv: np.ndarray, b: np.ndarray) -> None:
        self.A, self.A_inv, self.b = A, A_inv, b
        self.theta = A_inv @ b
