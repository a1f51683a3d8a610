"""Factor parametrizations of a DD-attention level: what its blocks Q_i K_i^T and Q_0 K_0^T are.

    random   the paper's free parameters, random: entry (i, j) of subdomain s a
             counter-based function of (seed, factor, s, i, j), so a rank draws
             only its own subdomains and equals the serial model
    schwarz  free parameters started from A: Q_i K_i^T the best rank-r part of
             A_i^-1, Q_0 K_0^T of A_0^-1 (two-level additive Schwarz truncated
             to the ranks); they follow new values of A (:meth:`follow`)
    exact    no parameters: A_i^-1 and A_top^-1 applied through sparse
             factorizations (exact.py), refactored numerically for new values
    none     free parameters of the right shapes, all zero, that a checkpoint
             fills (needs neither A nor data)

One interface, so the operator (operators.py) applies every level alike and
never asks which it has: ``make`` sets the level's parameters Q, K, Q0, K0
(None where there are none), ``local`` and ``top`` apply the level's blocks,
``follow`` takes new values of A, ``count`` and ``flops`` say what it costs.
The next parametrization, ``generated`` (factors from the operator by a
shared network), joins them here.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .exact import BlockDiagonalSolve, SparseSolve
from .kernels import subdomain_attention
from .problems.samplers import Noise
from .schwarz import natural_scale, coarse_top_inverse_eigenvalue, local_top_inverse_eigenvalue, schwarz_factors

__all__ = ["PARAMETRIZATIONS", "Free", "Schwarz", "Exact", "Loaded", "parametrization", "counter_normal"]


def counter_normal(seed, stream, count, size, rows=None):
    """Standard normals (len(rows), size) of rows ``rows`` (default all ``count``): entry (i, j) is a
    function of (seed, stream, i, j) alone (see problems.samplers.Noise)."""
    noise = Noise(seed, stream, 0, count, size)
    noise = noise if rows is None else noise[np.asarray(rows)]
    step = max(1, (1 << 18) // max(size, 1))  # a few MB of counters at a time
    columns = np.arange(size)
    parts = [noise[a:a + step].at(columns) for a in range(0, len(noise), step)]
    return np.concatenate(parts) if parts else np.zeros((0, size))


def _top_size(level):
    """Rows of the level's dense top block: its coarse size where it is the last level, else 0."""
    return level.decomposition.coarse_size if level.last else 0


class Free:
    """The paper's parameters Q_i, K_i (padded (N_held, L, r)) and Q_0, K_0 ((n_0, r0), last level only)."""

    exact = False
    follows_A = False

    def make(self, level, init_scale, seed, dtype, device):
        Q, K, Q0, K0 = (None if a is None else torch.as_tensor(a).to(dtype=dtype, device=device)
                        for a in self.initial(level, init_scale, seed))
        level.Q = nn.Parameter(Q.contiguous())
        level.K = None if level.symmetric else nn.Parameter(K.contiguous())
        dense_top = level.coarse and level.last
        level.Q0 = nn.Parameter(Q0) if dense_top else None
        level.K0 = nn.Parameter(K0) if dense_top and not level.symmetric else None

    def initial(self, level, init_scale, seed):
        """(Q, K, Q0, K0) as arrays: counter-based normals at the level's natural scales."""
        d, held, L = level.decomposition, level.held, level.decomposition.max_size
        scales = level._own_scales()
        std, std0 = init_scale * scales["Q"], init_scale * scales["Q0"]
        mask = (np.arange(L)[None, :] < d.sizes[held][:, None])[..., None]
        Q, K = (counter_normal(seed, stream, d.N, L * level.r, held).reshape(len(held), L, level.r) * mask * std
                for stream in (0, 1))
        top = _top_size(level)
        Q0, K0 = (counter_normal(seed, stream, top, level.r0).reshape(top, level.r0) * std0 for stream in (2, 3))
        return Q, K, Q0, K0

    def local(self, level, x_ext, transpose=False):
        Q, K, _, _ = level.factors(transpose)
        return subdomain_attention(x_ext, level.index, level.weight, Q, K)

    def top(self, level, c, transpose=False):
        _, _, Q0, K0 = level.factors(transpose)
        return Q0 @ (K0.T @ c)

    def follow(self, level):
        """Take the level's new A (its decomposition and problem are already the new ones): free factors
        do not depend on A, so nothing changes; False says so."""
        return False

    def count(self, level):
        """Learned numbers of the level: sum_i n_i r + n_0 r0 (dense top only), twice unless symmetric."""
        d = level.decomposition
        count = int(d.sizes.sum()) * level.r + (d.coarse_size * level.r0 if level.coarse and
                                                level.last else 0)
        return count if level.symmetric else 2 * count

    def flops(self, level, batch):
        """Multiply-adds x 2 of the level's batched kernel on ``batch`` vectors (its padded dense factors)."""
        return 4 * int(np.prod(level.Q.shape)) * batch

    def rank(self, level):
        """An upper bound on the rank of the level's local part."""
        return int(np.minimum(level.r, level.decomposition.sizes).sum())

    def release(self):
        """What the factors hold outside Python (dense factors: nothing)."""


class Loaded(Free):
    """Free parameters of the right shapes, zero: a checkpoint's values replace them (no A, no data)."""

    def initial(self, level, init_scale, seed):
        shapes = ((len(level.held), level.decomposition.max_size, level.r),) * 2 + ((_top_size(level), level.r0),) * 2
        return tuple(np.zeros(s) for s in shapes)


class Schwarz(Free):
    """Free parameters started as truncated two-level additive Schwarz, held subdomains only."""

    follows_A = True

    def initial(self, level, init_scale, seed):
        r0 = level.r0 if level.last else 0  # the coarse levels initialise themselves
        Q, Q0 = schwarz_factors(level.problem, level.decomposition, level.r, r0, subdomains=level.held)
        return Q, None if level.symmetric else Q.copy(), Q0, Q0.copy()

    def follow(self, level):
        """New Schwarz factors from the new A_i and A_0, copied into the parameters."""
        level.__dict__.pop("_scales", None)
        new = self.initial(level, None, None)
        with torch.no_grad():
            for mine, value in zip((level.Q, level.K, level.Q0, level.K0), new):
                if mine is not None:
                    mine.copy_(torch.as_tensor(value, dtype=mine.dtype))
        return True


class Exact(Free):
    """Full-rank additive Schwarz with nothing to learn: one sparse factorization of the held blocks
    diag(A_i), and of A_top on the last level; new values of A are refactored numerically."""

    exact = True
    follows_A = True

    def __init__(self):
        self.local_solve = self.top_solve = None

    def make(self, level, init_scale, seed, dtype, device):
        d = level.decomposition
        level.r, level.r0 = d.max_size, d.coarse_size if level.last else level.r0
        level.Q = level.K = level.Q0 = level.K0 = None
        self._factorize(level)

    def _factorize(self, level):
        d = level.decomposition
        self.local_solve = BlockDiagonalSolve(level.problem.rows, d.held_subdomains(level.held),
                                              level.index.cpu().numpy(), level.weight[..., 0].cpu().numpy())
        dense_top = level.coarse and d.coarse_size and level.last
        self.top_solve = SparseSolve(d.coarse_operator(level.problem)) if dense_top else None

    def local(self, level, x_ext, transpose=False):
        return self.local_solve(x_ext)  # Q_i K_i^T = A_i^-1: symmetric

    def top(self, level, c, transpose=False):
        return self.top_solve(c)

    def follow(self, level):
        """The same patterns with new values: the numeric factorizations only."""
        d = level.decomposition
        self.local_solve.refactor(level.problem.rows)
        if self.top_solve is not None:
            self.top_solve.refactor(d.coarse_operator(level.problem))
        return True

    def count(self, level):
        return 0  # nothing learned: A_i and A_0 are factored

    def flops(self, level, batch):
        raise ValueError("level_flops counts the dense factors; init='exact' applies sparse factorizations")

    def rank(self, level):
        return level.n  # A_i^-1 and A_0^-1: SPD, so M^-1 is

    def release(self):
        for solve in (self.local_solve, self.top_solve):
            if solve is not None:
                solve.free()
        self.local_solve = self.top_solve = None


PARAMETRIZATIONS = {"random": Free, "schwarz": Schwarz, "exact": Exact, "none": Loaded}


def parametrization(init):
    """A new parametrization object for ``init`` (one per level: Exact holds the level's factorizations)."""
    if init not in PARAMETRIZATIONS:
        raise ValueError(f"unknown init {init!r}; choose one of {tuple(k for k in PARAMETRIZATIONS if k != 'none')}")
    return PARAMETRIZATIONS[init]()


def natural_scales(level):
    """The level's natural scales (computed once per set of values of A): local from max_i of the top
    eigenvalue of A_i^-1, coarse from that of (Phi^T A Phi)^-1."""
    d, p = level.decomposition, level.problem
    local = natural_scale(level._max_over_ranks(local_top_inverse_eigenvalue(p, d, level.held)), d.max_size)
    dense = d.coarse_size and level.last
    coarse = natural_scale(coarse_top_inverse_eigenvalue(p, d), d.coarse_size) if dense else 1.0
    return {"Q": local, "K": local, "Q0": coarse, "K0": coarse}
