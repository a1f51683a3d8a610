"""Exact training data (f, u) with A u = f for any problem, evaluated on a node range.

    fourier   constant coefficients: f = sum of the K leading eigenmodes with
              a_k ~ N(0, k^(-2 alpha)), u = sum a_k / lambda_k s_k (closed form)
    probe     any A: u white (or with spectral decay where the modes are known), f = A u
    solve     any A: f white, u = A^-1 f by the problem's sparse factorization (once)

Every sampler has ``coefficients(count, stream, index)`` (a function of the
seed and the two indices alone, so a resumed or re-distributed run sees the
same data) and ``evaluate(coef, lo, hi)`` returning (f, u) of shape
(count, hi - lo). :func:`evaluate_rows` evaluates any set of rows, as a rank
of a distributed run needs (the cores of its subdomains): white noise is a
counter-based function of (seed, stream, index, sample, node) (:class:`Noise`),
so a rank draws only its rows; probe data needs A's own rows and the noise at
their neighbours; solve data on several ranks is a distributed MUMPS solve
(parallel/direct.py). laplace1d keeps its spectral samplers (laplace1d.py),
which make any node range without touching the others.
"""
from __future__ import annotations

import numpy as np
import scipy.fft
from scipy.sparse.linalg import eigsh

from ..parallel.direct import DistributedSolver
from . import laplace1d
from .spectra import mode_order

__all__ = ["DATA_KINDS", "make_sampler", "evaluate_rows", "Noise", "SineSampler", "WhiteSampler", "backward_error"]

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

    def evaluate_rows(self, coef, rows, comm=None):
        """(f, u) at the given nodes: synthesised on their bounding box of the grid only."""
        nx, ny = self.grid
        i, j = rows % nx, rows // nx
        (i0, i1), (j0, j1) = (i.min(), i.max() + 1), (j.min(), j.max() + 1)
        if (i1 - i0) * (j1 - j0) == self.n:
            both = self._synthesise(np.concatenate([coef, coef / self._lambda]))
            return both[: len(coef), rows], both[len(coef):, rows]
        # Separable: F_box = S_y T S_x^T with the box's rows of sin(l pi y) and columns of sin(k pi x),
        # O(count K + box side x modes) memory; a rows x modes basis would be O(n^2 / P).
        both = np.concatenate([coef, coef / self._lambda])
        kx, ky = self._waves[:, 0], self._waves[:, 1]
        table = np.zeros((len(both), ky.max(), kx.max()))
        table[:, ky - 1, kx - 1] = both
        sx = np.sin(np.pi * np.outer(np.arange(i0 + 1, i1 + 1), np.arange(1, kx.max() + 1)) / (nx + 1))
        sy = np.sin(np.pi * np.outer(np.arange(j0 + 1, j1 + 1), np.arange(1, ky.max() + 1)) / (ny + 1))
        box = sy @ (table @ sx.T)                                          # (2 count, box rows, box columns)
        values = box[:, j - j0, i - i0]
        return values[: len(coef)], values[len(coef):]

    def sample(self, count, stream=0, index=0, lo=0, hi=None):
        return self.evaluate(self.coefficients(count, stream, index), lo, hi)


class Noise:
    """Standard normal samples (count, n) as a counter-based function of their indices.

    Entry (s, v) depends only on (seed, stream, index, s, v), so any rank
    draws any rows alone: ``at(rows)``. Slicing selects samples, as an array
    would. Box-Muller on two splitmix64 hashes of the counter.
    """

    def __init__(self, seed, stream, index, count, n, samples=None):
        with np.errstate(over="ignore"):
            self.key = _mix(np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
                            ^ _mix(np.uint64(stream) << np.uint64(32) ^ np.uint64(index)))
        self.n, self.samples = n, np.arange(count) if samples is None else samples

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, which):
        out = Noise.__new__(Noise)
        out.key, out.n, out.samples = self.key, self.n, self.samples[which]
        return out

    def at(self, rows):
        """The (len(self), len(rows)) block of samples at global nodes ``rows``."""
        rows = np.asarray(rows, dtype=np.uint64)
        out = np.empty((len(self.samples), len(rows)))
        step = max(1, (1 << 18) // max(len(self.samples), 1))  # bounded counter temporaries
        for lo in range(0, len(rows), step):
            out[:, lo:lo + step] = self._normals(rows[lo:lo + step])
        return out

    def _normals(self, rows):
        c = (self.samples.astype(np.uint64)[:, None] << np.uint64(32)) | rows[None, :]
        with np.errstate(over="ignore"):
            a = _mix(c ^ self.key)
            b = _mix(a ^ np.uint64(0xD1B54A32D192ED03))
        u1 = ((a >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0 ** 53       # in (0, 1)
        u2 = (b >> np.uint64(11)).astype(np.float64) / 2.0 ** 53
        return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)

    def array(self):
        return self.at(np.arange(self.n))


def _mix(x):
    """splitmix64's finaliser (wrapping uint64 arithmetic)."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class WhiteSampler:
    """probe (u white, f = A u) or solve (f white, u = A^-1 f) for any SPD A."""

    def __init__(self, problem, kind, seed=0):
        self.problem, self.kind, self.seed, self.n = problem, kind, int(seed), problem.n
        if kind == "solve" and not problem.rows_only:
            problem.factor()  # once, reused by every batch (a rank holding rows only solves distributed)

    def coefficients(self, count, stream=0, index=0):
        return Noise(self.seed, stream, index, count, self.n)

    def evaluate(self, coef, lo=0, hi=None):
        return self.evaluate_rows(coef, np.arange(lo, self.n if hi is None else hi))

    def evaluate_rows(self, coef, rows, comm=None):
        """(f, u) at the given nodes; ``comm`` (the ranks that hold the other rows) for solve data."""
        if self.kind == "probe":
            local = self.problem.rows(rows)  # A's own rows only
            cols = np.unique(local.indices)
            u_cols = coef.at(cols)
            f = (local[:, cols] @ u_cols.T).T
            return f, coef.at(rows)
        f = coef.at(rows)
        if comm is not None and comm.Get_size() > 1:
            return f, self._distributed(rows, comm).solve(f.T.copy()).T
        if len(rows) == self.n:  # rows are sorted: all of them
            return f, self.problem.solve(f.T).T
        return f, self.problem.solve(coef.array().T).T[:, rows]  # a slice, serially (tests, PETSc rhs)

    def _distributed(self, rows, comm):
        key = (id(comm), len(rows), int(rows[0]) if len(rows) else -1)
        if getattr(self, "_solver_key", None) != key:
            self._solver, self._solver_key = DistributedSolver(self.problem.rows(rows), rows, comm), key
        return self._solver

    def sample(self, count, stream=0, index=0, lo=0, hi=None):
        return self.evaluate(self.coefficients(count, stream, index), lo, hi)


def evaluate_rows(sampler, coef, rows, comm=None):
    """(f, u) of shape (count, len(rows)) at the sorted global nodes ``rows``.

    ``comm``: the domain group whose ranks hold the other rows (solve data
    needs it). Samplers that only make node ranges (laplace1d) get one.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if hasattr(sampler, "evaluate_rows"):
        return sampler.evaluate_rows(coef, rows, comm)
    lo, hi = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (0, 0)
    if hi - lo != len(rows):
        raise ValueError("this sampler makes node ranges only")
    return sampler.evaluate(coef, lo, hi)


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
    norm_a = float(eigsh(A, k=1, which="LA", return_eigenvectors=False, tol=1e-6)[0]) if A.shape[0] > 2 \
        else float(np.linalg.norm(A.toarray(), 2))
    r = (A @ u.T).T - f
    return float((np.linalg.norm(r, axis=1) / (norm_a * np.linalg.norm(u, axis=1))).max())
