"""The model problem: -u'' = f on (0, 1), u(0) = u(1) = 0, and exact data for it.

n interior nodes x_j = j h, h = 1 / (n + 1), j = 1..n (0-based index j - 1).
Finite differences give A = h^-2 tridiag(-1, 2, -1), symmetric positive
definite, with exact eigenpairs

    s_k(x_j) = sin(k pi x_j),   lambda_k = 4 h^-2 sin^2(k pi h / 2),  k = 1..n.

A right-hand side f = sum_k a_k s_k therefore has the discrete solution
u = sum_k (a_k / lambda_k) s_k exactly: no linear solve, and any node range
[lo, hi) can be evaluated on its own, so every MPI rank makes its own slice
of every sample from the same spectral coefficients and no data moves.

A is never formed densely except by :func:`laplacian_dense` (tests only).
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "check_size", "mesh_width", "apply_laplacian", "laplacian_dense",
    "laplacian_eigenvalues", "sine_modes", "sine_synthesis",
    "FourierSampler", "ProbeSampler",
]

# Largest sine table a sampler caches (entries); past it we synthesise by FFT.
_TABLE_LIMIT = 1 << 24


def check_size(n):
    """Return ``n`` as an int, or raise ValueError unless it is a positive integer."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer (number of interior nodes), got {n!r}")
    return int(n)


def mesh_width(n):
    """h = 1 / (n + 1)."""
    return 1.0 / (check_size(n) + 1)


def apply_laplacian(u, n, lo=0, left=0.0, right=0.0):
    """Apply A = h^-2 tridiag(-1, 2, -1) to the rows of ``u``.

    Parameters
    ----------
    u : ndarray, shape (..., m)
        Values at nodes lo..lo+m-1 of an n-node grid.
    n : int
        Global number of interior nodes (fixes h).
    lo : int
        Global index of the first column of ``u``.
    left, right : float or ndarray, shape (...)
        u at nodes lo - 1 and lo + m (the Dirichlet value 0 at the boundary).

    Returns
    -------
    ndarray, shape (..., m)
        (A u) at nodes lo..lo+m-1.
    """
    h2 = mesh_width(n) ** -2
    padded = np.concatenate(
        [np.broadcast_to(np.asarray(left, u.dtype)[..., None], u.shape[:-1] + (1,)), u,
         np.broadcast_to(np.asarray(right, u.dtype)[..., None], u.shape[:-1] + (1,))],
        axis=-1)
    return h2 * (2.0 * u - padded[..., :-2] - padded[..., 2:])


def laplacian_dense(n, dtype=np.float64):
    """The dense n x n matrix A (for tests and small diagnostics only)."""
    n = check_size(n)
    A = 2.0 * np.eye(n, dtype=dtype) - np.eye(n, k=1, dtype=dtype) - np.eye(n, k=-1, dtype=dtype)
    return A * mesh_width(n) ** -2


def laplacian_eigenvalues(n, k=None):
    """lambda_k = 4 h^-2 sin^2(k pi h / 2) for k = 1..n (or the given k)."""
    n = check_size(n)
    k = np.arange(1, n + 1) if k is None else np.asarray(k)
    h = mesh_width(n)
    return 4.0 / h**2 * np.sin(k * np.pi * h / 2.0) ** 2


def sine_modes(n, modes, lo=0, hi=None):
    """Table S[k-1, j-lo] = sin(k pi x_{j+1}) for k = 1..modes, j = lo..hi-1.

    The argument k (j+1) pi / (n+1) is reduced modulo 2 pi in integer
    arithmetic first, so high modes on long grids stay accurate to rounding.
    """
    hi = n if hi is None else hi
    period = 2 * (n + 1)
    k = np.arange(1, modes + 1, dtype=np.int64)[:, None]
    j = np.arange(lo + 1, hi + 1, dtype=np.int64)[None, :]
    return np.sin(np.pi * ((k * j) % period) / (n + 1))


def _synthesis_fft(coef, n, lo, hi):
    """sum_k coef[..., k-1] sin(k pi x_j) at all nodes by one real FFT, then sliced."""
    shifted = torch.nn.functional.pad(torch.as_tensor(coef, dtype=torch.float64), (1, 0))  # index = k
    # rfft gives sum_k c_k exp(-i pi k j / (n+1)); its imaginary part is -sum c_k sin(.).
    spectrum = torch.fft.rfft(shifted, n=2 * (n + 1), dim=-1)
    return spectrum.imag[..., lo + 1:hi + 1].neg().numpy()


def sine_synthesis(coef, n, lo=0, hi=None, table=None):
    """Evaluate sum_k coef[..., k-1] s_k at nodes lo..hi-1.

    Uses the sine table when given (O(K m) per row), else an FFT of length
    2 (n + 1) (O(n log n) per row). Both agree to rounding.
    """
    hi = n if hi is None else hi
    if table is not None:
        return coef @ table
    return _synthesis_fft(np.asarray(coef, dtype=np.float64), n, lo, hi)


class _SpectralSampler:
    """Shared machinery: seeded spectral coefficients, evaluated on a node range."""

    def __init__(self, n, modes, alpha=0.0, seed=0):
        self.n = check_size(n)
        if isinstance(modes, bool) or not isinstance(modes, (int, np.integer)) or not 1 <= modes <= n:
            raise ValueError(f"modes must be an integer in 1..n={n}, got {modes!r}")
        if not (np.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"alpha (spectral decay) must be finite and >= 0, got {alpha!r}")
        self.modes, self.alpha, self.seed = int(modes), float(alpha), int(seed)
        self._tables = {}
        self._lambda = laplacian_eigenvalues(self.n, np.arange(1, self.modes + 1))

    def coefficients(self, count, stream=0, index=0):
        """Spectral coefficients a_k ~ N(0, k^(-2 alpha)), shape (count, modes).

        Every process that asks for the same (seed, stream, index) gets the
        same numbers, whatever its rank or node range.
        """
        rng = np.random.default_rng([self.seed, stream, index])
        scale = np.arange(1, self.modes + 1, dtype=np.float64) ** -self.alpha
        return rng.standard_normal((count, self.modes)) * scale

    def _table(self, lo, hi, count):
        """The cached sine table for [lo, hi) when that is cheaper than an FFT."""
        m, period = hi - lo, 2 * (self.n + 1)
        direct_cost = self.modes * m * (count + 1)
        fft_cost = 8 * count * period * math.log2(period)
        if self.modes * m > _TABLE_LIMIT or direct_cost > fft_cost:
            return None
        if (lo, hi) not in self._tables:
            self._tables = {(lo, hi): sine_modes(self.n, self.modes, lo, hi)}
        return self._tables[(lo, hi)]

    def _synthesise(self, coef, lo, hi):
        return sine_synthesis(coef, self.n, lo, hi, self._table(lo, hi, coef.shape[0]))


class FourierSampler(_SpectralSampler):
    """Fourier data: f = sum_{k<=K} a_k s_k and its exact solution u.

    Parameters
    ----------
    n : int
        Number of interior nodes.
    modes : int
        K, the number of leading sine modes (1 <= K <= n).
    alpha : float
        Decay: a_k ~ N(0, k^(-2 alpha)); 0 is white in the first K modes.
    seed : int
        Base seed; batches are indexed by (stream, index).
    """

    def evaluate(self, coef, lo=0, hi=None):
        """(f, u) at nodes lo..hi-1 for the given coefficient rows."""
        hi = self.n if hi is None else hi
        both = self._synthesise(np.concatenate([coef, coef / self._lambda]), lo, hi)  # one transform
        return both[: len(coef)], both[len(coef):]

    def sample(self, count, stream=0, index=0, lo=0, hi=None):
        """A batch of ``count`` exact pairs (f, u), each of shape (count, hi - lo)."""
        return self.evaluate(self.coefficients(count, stream, index), lo, hi)


class ProbeSampler(_SpectralSampler):
    """Probe data for preconditioning: u with all n modes, f = A u.

    u = sum_k b_k s_k, b_k ~ N(0, k^(-2 alpha)), k = 1..n (alpha = 0 makes u
    white noise); f is A u by the three-point stencil, so the pair is exact
    by construction. A node range needs u one node beyond each end, which it
    synthesises itself: still no communication.
    """

    def __init__(self, n, alpha=0.0, seed=0):
        super().__init__(n, n, alpha, seed)

    def evaluate(self, coef, lo=0, hi=None):
        hi = self.n if hi is None else hi
        a, b = max(lo - 1, 0), min(hi + 1, self.n)
        u = self._synthesise(coef, a, b)
        zero = np.zeros(u.shape[:-1])
        left = u[..., 0] if lo > 0 else zero
        right = u[..., -1] if hi < self.n else zero
        u = u[..., lo - a: u.shape[-1] - (b - hi)]
        return apply_laplacian(u, self.n, lo, left, right), u

    def sample(self, count, stream=0, index=0, lo=0, hi=None):
        return self.evaluate(self.coefficients(count, stream, index), lo, hi)
