"""u = A^-1 f on distributed rows, by MUMPS through PETSc (one factorization, reused).

Training on ``solve`` data under mpirun: each rank makes its own rows of f
and receives its own rows of u; no sample is ever assembled on one rank.
The rows a rank holds (``own``: sorted global nodes, e.g. the cores of a box
of subdomains) need not be a range: the PETSc matrix is built in the model's
ordering, rank p's rows numbered contiguously after rank p-1's, which is a
symmetric permutation of A (same solution, permuted).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import CollectiveError

__all__ = ["DistributedSolver"]


class DistributedSolver:
    """A distributed LDL^T (MUMPS) of A whose local rows are ``own``; refuses an A that is not SPD.

    Parameters
    ----------
    rows : scipy.sparse matrix (len(own), n)
        A's rows at ``own``, global columns (a Problem's ``rows(own)``: no
        rank needs the whole A).
    own : int array
        This rank's rows, sorted global node indices; over the ranks of
        ``comm`` they partition range(n).
    comm : mpi4py.MPI.Comm
    """

    def __init__(self, rows, own, comm):
        from petsc4py import PETSc
        every = comm.allgather(np.asarray(own, dtype=np.int64))
        order = np.concatenate(every)
        n = rows.shape[1]
        if len(order) != n or not np.array_equal(np.sort(order), np.arange(n)):
            raise ValueError("the ranks' rows do not partition the matrix rows")
        new = np.empty_like(order)
        new[order] = np.arange(len(order))                  # model position of every global node
        rows = (sp.csr_matrix(rows) @ _permutation(new)).tocsr()          # columns in the model ordering
        rows.sort_indices()
        m = len(own)
        pcomm = PETSc.Comm(comm)
        csr = (rows.indptr.astype(PETSc.IntType), rows.indices.astype(PETSc.IntType), rows.data.astype(float))
        self.A = PETSc.Mat().createAIJ(((m, n), (m, n)), csr=csr, comm=pcomm)
        self.A.assemble()
        ksp = PETSc.KSP().create(pcomm)
        ksp.setOperators(self.A)
        ksp.setType("preonly")
        pc = ksp.getPC()
        pc.setType("cholesky")  # MUMPS's LDL^T (SYM=2): its inertia is the SPD check of A on its rows
        pc.setFactorSolverType("mumps")
        ksp.setUp()
        self.factor, self.m, self.n, self.comm = pc.getFactorMatrix(), m, n, pcomm
        self._ksp = ksp  # keeps the factorization alive
        negative = self.factor.getMumpsInfog(12)  # global: the same on every rank
        if negative:
            self.free()
            raise CollectiveError(f"the matrix is not positive definite ({negative} negative pivots in its "
                                  "distributed LDL^T); pddattn needs a symmetric positive definite operator")

    def free(self):
        """The factorization and its matrix (PETSc objects)."""
        for obj in (getattr(self, "_ksp", None), getattr(self, "A", None)):
            if obj is not None:
                obj.destroy()
        self._ksp = self.A = None

    def solve(self, f):
        """Own rows of u = A^-1 f for own rows f, shape (m, B)."""
        from petsc4py import PETSc
        batch = f.shape[1]
        B = PETSc.Mat().createDense(((self.m, self.n), (None, batch)), comm=self.comm)
        B.setUp()
        B.getDenseArray()[:] = f
        B.assemble()
        X = PETSc.Mat().createDense(((self.m, self.n), (None, batch)), comm=self.comm)
        X.setUp()
        X.assemble()
        self.factor.matSolve(B, X)
        u = np.array(X.getDenseArray(), copy=True)
        B.destroy()
        X.destroy()
        return u


def _permutation(new):
    """P with (A P)[:, new[j]] = A[:, j]: renumbers columns old -> new."""
    n = len(new)
    return sp.csr_matrix((np.ones(n), (np.arange(n), new)), shape=(n, n))
