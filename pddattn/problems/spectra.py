"""Smallest eigenpairs of A: closed form for constant coefficients, shift-invert Lanczos otherwise.

Constant coefficients (laplace1d, poisson2d, and the diffusion families with
``const``): eigenvectors are (products of) sines s_k(x_j) = sin(k pi x_j),
eigenvalues 4 h^-2 sin^2(k pi h / 2) (summed over the axes). Used by the
Fourier sampler and by the capacity of the global baseline.
"""
from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator, eigsh

__all__ = ["sine_eigenvalues", "mode_order", "smallest_eigenpairs"]


def sine_eigenvalues(m):
    """4 h^-2 sin^2(k pi h / 2), k = 1..m, h = 1 / (m + 1)."""
    h = 1.0 / (m + 1)
    k = np.arange(1, m + 1)
    return 4.0 / h**2 * np.sin(k * np.pi * h / 2.0) ** 2


def mode_order(grid):
    """Modes of a constant-coefficient problem sorted by eigenvalue.

    Returns (lam, modes): eigenvalues ascending, and an integer array (M, dim)
    of 1-based wave numbers per axis (ties broken by the wave numbers, so the
    order is deterministic).
    """
    lams = [sine_eigenvalues(m) for m in grid]
    if len(grid) == 1:
        return lams[0], np.arange(1, grid[0] + 1)[:, None]
    kx, ky = np.meshgrid(np.arange(1, grid[0] + 1), np.arange(1, grid[1] + 1), indexing="ij")
    lam = (lams[0][kx - 1] + lams[1][ky - 1]).ravel()
    order = np.lexsort((kx.ravel(), ky.ravel(), lam))
    return lam[order], np.stack([kx.ravel()[order], ky.ravel()[order]], axis=1)


def _sine_vectors(grid, modes):
    """Orthonormal sine eigenvectors for the given wave numbers, (n, len(modes))."""
    out = None
    for axis, m in enumerate(grid):
        j = np.arange(1, m + 1)[:, None]
        v = np.sqrt(2.0 / (m + 1)) * np.sin(np.pi * (j * modes[None, :, axis] % (2 * (m + 1))) / (m + 1))
        out = v if out is None else (v[:, None, :] * out[None, :, :]).reshape(-1, len(modes))
    return out


def smallest_eigenpairs(problem, k):
    """(lam ascending (k,), V (n, k) orthonormal) of problem.A, k <= n."""
    n = problem.n
    k = int(min(k, n))
    if problem.constant:
        lam, modes = mode_order(problem.grid)
        return lam[:k], _sine_vectors(problem.grid, modes[:k])
    if n <= 2000 or k >= n // 2:
        lam, V = np.linalg.eigh(problem.A.toarray())
        return lam[:k], V[:, :k]
    # Shift-invert at 0 with the cached factorization: the smallest of A are the largest of A^-1.
    inv = LinearOperator((n, n), matvec=lambda x: problem.solve(x.reshape(-1, 1)).ravel(), dtype=np.float64)
    mu, V = eigsh(inv, k=k, which="LA", tol=1e-10)
    order = np.argsort(-mu)
    return 1.0 / mu[order], V[:, order]
