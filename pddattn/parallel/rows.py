"""A x on distributed vectors: a rank's own rows of A and one ghost plan for the columns they read.

The Lanczos iteration of the condition loss (spectrum.py) multiplies by A in
the model's layout: each rank holds the rows ``own`` of x and of A x. Its rows
of A read x at their columns, own or not; the ghosts come in by one exchange
plan made from those reads (GhostExchange.from_reads: each rank tells the
owners what it reads, so nobody needs another rank's index sets).
A distributed model makes its own: ``model.operator_rows()(x_own)``
(parallel/operator.py), which ``spectrum.operator_apply`` returns under mpirun.
"""
from __future__ import annotations

import scipy.sparse as sp

from ..kernels import torch_csr
from .ghosts import GhostExchange

__all__ = ["RowOperator"]


class RowOperator:
    """x_own -> (A x)_own for node-major x of shape (len(own), B).

    Parameters
    ----------
    rows : scipy.sparse matrix
        A's rows at ``own`` (len(own) x n, global column indices).
    own : int array
        This rank's rows, sorted: the order of x's and the result's rows.
    owner_of : callable
        Global rows -> their owning ranks.
    comm : mpi4py.MPI.Comm
        The domain group.
    """

    def __init__(self, rows, own, owner_of, comm):
        rows = sp.csr_matrix(rows)
        self.plan = GhostExchange.from_reads(own, rows.indices, owner_of, comm)
        cols = self.plan.positions(rows.indices)
        self._local = sp.csr_matrix((rows.data, cols, rows.indptr), shape=(len(own), self.plan.m_ext))
        self._tensor = None

    def _csr(self, like):
        key = (like.dtype, like.device)
        if self._tensor is None or self._tensor[0] != key:
            self._tensor = (key, torch_csr(self._local, like.dtype, like.device))
        return self._tensor[1]

    def __call__(self, x):
        """(A x)_own; A is data, not a parameter: no gradient flows through it."""
        x = x.detach()
        return self._csr(x) @ self.plan.forward(x).contiguous()

    def free(self):
        self.plan.free()
