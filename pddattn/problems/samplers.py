"""Exact training data (f, u) with A u = f for any problem, evaluated on a node range.

    fourier   constant coefficients: f = sum of the K leading eigenmodes with
              a_k ~ N(0, k^(-2 alpha)), u = sum a_k / lambda_k s_k (closed form)
    probe     any A: u white (or with spectral decay where the modes are known), f = A u
    solve     any A: f white, u = A^-1 f by the problem's sparse factorization (once)

Every sampler has ``coefficients(count, stream, index)`` (a function of the
seed and the two indices alone, so a resumed or re-distributed run sees the
same data) and ``evaluate(coef, lo, hi)`` returning (f, u) of shape
(count, hi - lo). laplace1d keeps its spectral samplers (laplace1d.py), which
make any node range without touching the others.
"""
from __future__ import annotations

import numpy as np
import scipy.fft

from . import laplace1d
from .spectra import mode_order

__all__ = ["DATA_KINDS", "make_sampler", "SineSampler", "WhiteSampler", "backward_error"]

DATA_KINDS = ("fourier", "probe", "solve")


def _check_alpha(alpha):
    if not (np.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha (spectral decay) must be finite and >= 0, got {alpha!r}")
    return float(alpha)


class SineSampler:
    """Fourier data in the K leading modes of a constant-coefficient 2D problem (DST-I synthesis)."""

    def __init__(self, problem, modes, alpha=0.0, seed=0):
        self.n, self.grid = problem.n, tuple(problem.grid)
        if isinstance(modes, bool) or not isinstance(modes, (int, np.integer)) or not 1 <= modes <= self.n:
            raise ValueError(f"modes must be an integer in 1..n={self.n}, got {modes!r}")
        self.modes, self.alpha, self.seed = int(modes), _check_alpha(alpha), int(seed)
        lam, waves = mode_order(self.grid)
        self._lambda, self._waves = lam[: self.modes], waves[: self.modes]

    def coefficients(self, count, stream=0, index=0):
        rng = np.random.default_rng([self.seed, stream, index])
        scale = np.arange(1, self.modes + 1, dtype=np.float64) ** -self.alpha
        return rng.standard_normal((count, self.modes)) * scale

    def _synthesise(self, coef):
        nx, ny = self.grid
        table = np.zeros((len(coef), ny, nx))
        table[:, self._waves[:, 1] - 1, self._waves[:, 0] - 1] = coef
        # Two 1D transforms: 3-4x faster than scipy's dstn on these shapes (measured).
        out = scipy.fft.dst(scipy.fft.dst(table, type=1, axis=1), type=1, axis=2)
        return 0.25 * out.reshape(len(coef), -1)

    def evaluate(self, coef, lo=0, hi=None):
        hi = self.n if hi is None else hi
        both = self._synthesise(np.concatenate([coef, coef / self._lambda]))  # one transform for f and u
        return both[: len(coef), lo:hi], both[len(coef):, lo:hi]

    def sample(self, count, stream=0, index=0, lo=0, hi=None):
        return self.evaluate(self.coefficients(count, stream, index), lo, hi)


class WhiteSampler:
    """probe (u white, f = A u) or solve (f white, u = A^-1 f) for any SPD A."""

    def __init__(self, problem, kind, seed=0):
        self.problem, self.kind, self.seed, self.n = problem, kind, int(seed), problem.n
        if kind == "solve":
            problem.factor()  # once, reused by every batch

    def coefficients(self, count, stream=0, index=0):
        return np.random.default_rng([self.seed, stream, index]).standard_normal((count, self.n))

    def evaluate(self, coef, lo=0, hi=None):
        hi = self.n if hi is None else hi
        if self.kind == "probe":
            u, f = coef, (self.problem.A @ coef.T).T
        else:
            f, u = coef, self.problem.solve(coef.T).T
        return f[:, lo:hi], u[:, lo:hi]

    def sample(self, count, stream=0, index=0, lo=0, hi=None):
        return self.evaluate(self.coefficients(count, stream, index), lo, hi)


def make_sampler(kind, problem, modes=None, alpha=0.0, seed=0):
    """The sampler ``kind`` for ``problem``; ValueError when it does not apply."""
    if kind not in DATA_KINDS:
        raise ValueError(f"unknown data kind {kind!r}; choose one of {DATA_KINDS}")
    _check_alpha(alpha)
    one_d_sines = problem.constant and problem.dim == 1 and problem.family != "matrix"
    if kind == "fourier":
        if not problem.constant or problem.family == "matrix":
            raise ValueError(f"--data fourier needs constant coefficients (exact sine modes); use --data "
                             f"probe or solve for {problem.family} {problem.coefficient}")
        if one_d_sines:
            return laplace1d.FourierSampler(problem.n, problem.n if modes is None else modes, alpha, seed)
        return SineSampler(problem, problem.n if modes is None else modes, alpha, seed)
    if modes is not None and modes != problem.n:
        raise ValueError(f"--modes applies to --data fourier only, not {kind}")
    if kind == "probe" and one_d_sines:
        return laplace1d.ProbeSampler(problem.n, alpha, seed)
    if alpha:
        raise ValueError(f"--alpha needs known eigenmodes (--data fourier, or probe on a 1D constant "
                         f"coefficient); {kind} data on {problem.family} is white")
    return WhiteSampler(problem, kind, seed)


def backward_error(A, f, u):
    """max over samples of ||A u - f|| / (||A|| ||u||), rows of f and u are samples (whole vectors)."""
    from scipy.sparse.linalg import eigsh
    norm_a = float(eigsh(A, k=1, which="LA", return_eigenvectors=False, tol=1e-6)[0]) if A.shape[0] > 2 \
        else float(np.linalg.norm(A.toarray(), 2))
    r = (A @ u.T).T - f
    return float((np.linalg.norm(r, axis=1) / (norm_a * np.linalg.norm(u, axis=1))).max())
