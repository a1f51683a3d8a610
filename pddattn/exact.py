"""Exact Schwarz parts applied as what they are: sparse factorizations of the A_i and of the top block.

At full ranks and untrained, DD attention initialised from A is additive
Schwarz: R_i^T D_i^1/2 Q_i Q_i^T D_i^1/2 R_i = R_i^T D_i^1/2 A_i^-1 D_i^1/2 R_i
and Phi Q_0 Q_0^T Phi^T = Phi A_0^-1 Phi^T. Dense factors cost n_i^2 numbers
per subdomain, all streamed by every application; here one sparse LU of the
block diagonal diag(A_i) of a rank's subdomains serves them all at once (no
loop over subdomains when applying), and the top block is a sparse LU of
A_0. ``DDAttention(..., init="exact")`` uses these in its local and coarse
terms; everything around them (ghost exchange, Phi^T reductions, levels) is
the operator's own. A test checks it against the dense Schwarz factors to
1e-12.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from .problems.families import block_diagonal

__all__ = ["BlockDiagonalSolve", "SparseSolve", "sparse_lu"]


def sparse_lu(A):
    """SuperLU of a sparse SPD matrix in symmetric mode (diagonal pivots, AMD on A + A^T)."""
    from scipy.sparse.linalg import splu
    return splu(sp.csc_matrix(A), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                options={"SymmetricMode": True})


class SparseSolve:
    """c -> A^-1 c for node-major torch tensors, by one sparse LU computed at construction."""

    def __init__(self, A):
        self.n = A.shape[0]
        self.lu = sparse_lu(A) if self.n else None
        self.nnz = (self.lu.L.nnz + self.lu.U.nnz) if self.n else 0

    def __call__(self, c):
        if not self.n:
            return c
        return torch.from_numpy(self.lu.solve(c.detach().cpu().double().numpy())).to(dtype=c.dtype,
                                                                                      device=c.device)


class BlockDiagonalSolve:
    """x_ext -> sum_i R_i^T D_i^1/2 A_i^-1 D_i^1/2 R_i x_ext over held subdomains, one LU for them all.

    Parameters
    ----------
    problem : Problem
        Gives the blocks R_i A R_i^T (from the rows they need).
    decomposition : Decomposition
    held : int array
        The subdomains of this rank, in the order of ``index``.
    index, weight : arrays (len(held), L)
        Rows of x_ext of each subdomain's nodes and D_i^1/2 (zero at padding),
        as the operator holds them.
    """

    def __init__(self, problem, decomposition, held, index, weight):
        d = decomposition
        valid = np.arange(d.max_size)[None, :] < d.sizes[held][:, None]
        self.rows = torch.as_tensor(np.asarray(index)[valid], dtype=torch.long)
        self.weight = np.asarray(weight)[valid][:, None]
        self.solve = SparseSolve(block_diagonal(problem.rows, [d.subdomains[i] for i in held]))

    def __call__(self, x_ext):
        X = x_ext.detach().cpu().double().numpy()
        rows = self.rows.numpy()
        u = self.weight * self.solve.lu.solve(self.weight * X[rows]) if self.solve.n else np.zeros((0, X.shape[1]))
        if getattr(self, "_scatter", None) is None or self._scatter.shape[0] != X.shape[0]:
            # sum_i R_i^T as one sparse matrix: scipy's single-threaded product (torch's zeros + index_add
            # took 6 ms per call at 255^2 on shared cores; this takes a fraction of one)
            self._scatter = sp.csr_matrix((np.ones(len(rows)), (rows, np.arange(len(rows)))),
                                          shape=(X.shape[0], len(rows)))
        y = torch.from_numpy(np.asarray(self._scatter @ u))
        return y.to(dtype=x_ext.dtype, device=x_ext.device)
