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
from scipy.sparse.linalg import splu

from .patterns import Gather, Pattern, canonical
from .problems.families import block_diagonal

__all__ = ["BlockDiagonalSolve", "SparseSolve", "application_cost", "factor_package", "sparse_factor", "sparse_lu"]


def sparse_lu(A):
    """SuperLU of a sparse SPD matrix in symmetric mode (diagonal pivots, AMD on A + A^T)."""
    return splu(sp.csc_matrix(A), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                options={"SymmetricMode": True})


def factor_package():
    """PETSc's Cholesky package for the exact parts: CHOLMOD where PETSc was built with SuiteSparse
    (Debian's is), else PETSc's own with nested dissection.

    At 255^2 (256 blocks of 400 rows, the PC's default at -m 255) CHOLMOD
    factors in 45-60 ms against PETSc's 75-110 ms, with 14% fewer factor
    entries and solves as fast or faster (measured on one core, both in turn).
    """
    from petsc4py import PETSc
    return "cholmod" if PETSc.Sys.hasExternalPackage("suitesparse") else "petsc"


class _PetscCholesky:
    """A sequential sparse Cholesky through PETSc, as PCASM's sub-solvers use one (:func:`factor_package`).

    Against SciPy's SuperLU at 255^2: 0.07 s to factor and 1.5 ms a solve with
    PETSc's own, against 0.15-0.19 s and 3.9 ms (measured on one core).
    """

    def __init__(self, A, package=None):
        from petsc4py import PETSc
        A = canonical(A)
        # PETSc's Mat over these arrays (petsc4py keeps them alive): no copy row by row, 5 ms of 30 at 255^2
        self._csr = (A.indptr.astype(PETSc.IntType), A.indices.astype(PETSc.IntType), A.data.astype(PETSc.ScalarType))
        self.M = PETSc.Mat().createAIJWithArrays(A.shape, self._csr, comm=PETSc.COMM_SELF)
        self.ksp = PETSc.KSP().create(comm=PETSc.COMM_SELF)  # no prefix of the user's: their options stay theirs
        self.ksp.setOperators(self.M)
        self.ksp.setType("preonly")
        pc = self.ksp.getPC()
        pc.setType("cholesky")
        self.package = package or factor_package()
        pc.setFactorSolverType(self.package)
        if self.package == "petsc":
            pc.setFactorOrdering("nd")  # CHOLMOD orders by its own AMD / METIS choice
        self.ksp.setUp()
        self.b, self.x = self.M.createVecs()
        self.n, self.nnz = A.shape[0], int(pc.getFactorMatrix().getInfo()["nz_used"])  # the triangle, diagonal in

    def same_pattern(self, A):
        """Whether A has the pattern this factorization was made for (so :meth:`refactor` applies)."""
        A = canonical(A)
        return A.shape == self.M.getSize() and np.array_equal(A.indptr, self._csr[0]) and \
            np.array_equal(A.indices, self._csr[1])

    def refactor(self, A):
        """New values of the same pattern: PETSc redoes the numeric factorization only (the ordering and
        symbolic factor stay)."""
        A = canonical(A)
        if not self.same_pattern(A):
            raise ValueError("refactor needs the pattern the factorization was made for")
        self._csr[2][:] = A.data
        self.M.setValuesCSR(*self._csr)
        self.M.assemble()
        self.ksp.getPC().setUp()  # the numeric factorization now (KSPSetUp would leave it to the next solve)
        return self

    def destroy(self):
        """Free the PETSc objects now: petsc4py's garbage collection of a Mat leaves memory behind
        (measured: about 30 kB a Mat, 100 kB a factorization, every refactor of a PC)."""
        for obj in (self.ksp, self.M, self.b, self.x):
            obj.destroy()

    def flops(self, columns=1):
        """Of ``solve`` on that many columns, as PETSc logs the two triangular sweeps: 4 nnz - 3 n with its own
        factor, 4 nnz through CHOLMOD."""
        return columns * (4 * self.nnz - (3 * self.n if self.package == "petsc" else 0))

    def solve(self, X):
        X = np.asarray(X, dtype=np.float64)
        columns = X.reshape(X.shape[0], -1)
        if columns.shape[1] > 1:
            return self._solve_columns(columns).reshape(X.shape)
        self.b.setArray(columns[:, 0])  # one column: PC applications, Lanczos
        self.ksp.solve(self.b, self.x)
        return self.x.getArray(readonly=True).copy().reshape(X.shape)

    def _solve_columns(self, columns):
        """All columns in one MatMatSolve on the factor (the harmonic basis's ~10 slots: 0.14-0.24 s against
        0.18-0.26 s for a KSPSolve each at 511^2 with CHOLMOD)."""
        from petsc4py import PETSc
        B = PETSc.Mat().createDense(columns.shape, array=np.asfortranarray(columns), comm=PETSc.COMM_SELF)
        X = PETSc.Mat().createDense(columns.shape, comm=PETSc.COMM_SELF)
        X.setUp()
        try:
            self.ksp.getPC().getFactorMatrix().matSolve(B, X)
            return X.getDenseArray().copy()
        finally:
            B.destroy()
            X.destroy()


def sparse_factor(A):
    """A factorization of sparse SPD A with ``solve(X)``: PETSc's Cholesky where petsc4py is, else SuperLU."""
    try:
        import petsc4py  # noqa: F401
    except ImportError:
        return sparse_lu(A)
    return _PetscCholesky(A)


def _factor_nnz(factor):
    """Stored entries of a factorization: PETSc's Cholesky triangle, or SuperLU's L and U."""
    return factor.nnz if hasattr(factor, "nnz") else factor.L.nnz + factor.U.nnz


class SparseSolve:
    """c -> A^-1 c for node-major torch tensors, by one sparse factorization computed at construction."""

    def __init__(self, A):
        self.n = A.shape[0]
        self.lu = sparse_factor(A) if self.n else None

    def cost(self, columns=1):
        """(flops, bytes) of one solve: the factor read in both sweeps (8-byte value, 4-byte index), the
        right-hand side and solution once each. SuperLU's flops are 2 per stored entry and sweep."""
        if not self.n:
            return 0, 0
        nnz = _factor_nnz(self.lu)
        flops = self.lu.flops(columns) if hasattr(self.lu, "flops") else columns * 2 * nnz
        return flops, 2 * 12 * nnz + columns * 3 * 8 * self.n

    def solve(self, X):
        """A^-1 X for a numpy array X (n,) or (n, B)."""
        return self.lu.solve(X) if self.n else X

    def refactor(self, A):
        """The factorization of A, of the pattern this one was made for: numeric only where PETSc's."""
        if self.n and hasattr(self.lu, "refactor") and self.lu.same_pattern(A):
            self.lu.refactor(A)
        elif self.n:
            self.free()
            self.n, self.lu = A.shape[0], sparse_factor(A)
        return self

    def free(self):
        """Release the factorization's PETSc objects (SuperLU's go with Python's collection)."""
        if hasattr(self.lu, "destroy"):
            self.lu.destroy()
        self.lu = None

    def __call__(self, c):
        if not self.n:
            return c
        return torch.from_numpy(self.lu.solve(c.detach().cpu().double().numpy())).to(dtype=c.dtype,
                                                                                      device=c.device)


class BlockDiagonalSolve:
    """x_ext -> sum_i R_i^T D_i^1/2 A_i^-1 D_i^1/2 R_i x_ext over held subdomains, one LU for them all.

    Parameters
    ----------
    rows_of : callable
        Global nodes -> A's rows (a Problem's ``rows``): gives the blocks R_i A R_i^T.
    subdomains : list of int arrays
        The held subdomains' nodes, in the order of ``index``.
    index, weight : arrays (len(subdomains), L)
        Rows of x_ext of each subdomain's nodes and D_i^1/2 (zero at padding),
        as the operator holds them.
    """

    def __init__(self, rows_of, subdomains, index, weight):
        sizes = np.array([len(s) for s in subdomains], dtype=np.int64)
        valid = np.arange(np.asarray(index).shape[1])[None, :] < sizes[:, None]
        self.rows = np.asarray(index)[valid].astype(np.int64)
        self.weight = np.asarray(weight)[valid]
        self._subdomains, self._restriction = subdomains, None
        self._nodes = np.unique(np.concatenate(subdomains)) if subdomains else np.zeros(0, dtype=np.int64)
        self._gather = None
        self.solve = SparseSolve(self._blocks(rows_of))

    def refactor(self, rows_of):
        """The blocks of new values of A (``rows_of``), factored numerically where the pattern is the same.

        The blocks are gathered from A's rows at the subdomains' nodes by a plan
        recorded with the first blocks (patterns.Gather), not extracted
        subdomain by subdomain again (0.13-0.15 s of a set-up on new values at
        511^2); another pattern records a new plan.
        """
        self.solve.refactor(self._blocks(rows_of))
        return self

    def _blocks(self, rows_of):
        """diag(R_i A R_i^T) over the held subdomains, from A's rows at their nodes."""
        if not len(self._nodes):
            return sp.csr_matrix((0, 0))
        rows = canonical(rows_of(self._nodes))
        if self._gather is None or not self._gather[0].same(rows):
            nodes = self._nodes
            blocks = Gather.of(lambda M: block_diagonal(lambda r: M[np.searchsorted(nodes, r)], self._subdomains),
                               rows)
            self._gather = (Pattern.of(rows), blocks)
        return self._gather[1].matrix(rows.data)

    def free(self):
        self.solve.free()

    def cost(self, columns=1):
        """(flops, bytes) of one application: the block solve, D^1/2 twice and the scatter-add."""
        flops, moved = self.solve.cost(columns)
        stacked = len(self.rows)
        return flops + 3 * stacked * columns, moved + stacked * (8 + 8 + 3 * 8 * columns)

    def restriction(self, m_ext):
        """W = D^1/2 R (CSR, stacked rows x m_ext): row k of the stacked subdomains reads row ``rows[k]``
        of x_ext with weight D^1/2, so that the term is W^T diag(A_i)^-1 W x_ext (the PC builds the same W
        as a PETSc Mat, petsc/one_level.py)."""
        if self._restriction is None or self._restriction.shape[1] != m_ext:
            stacked = len(self.rows)
            self._restriction = sp.csr_matrix((self.weight, self.rows, np.arange(stacked + 1)),
                                              shape=(stacked, m_ext))
        return self._restriction

    def __call__(self, x_ext):
        X = x_ext.detach().cpu().double().numpy()
        W = self.restriction(X.shape[0])
        # scipy's single-threaded products (torch's zeros + index_add took 6 ms per call at 255^2 on shared cores)
        u = self.solve.lu.solve(W @ X) if self.solve.n else np.zeros((0, X.shape[1]))
        y = torch.from_numpy(np.asarray(W.T @ u))
        return y.to(dtype=x_ext.dtype, device=x_ext.device)


def application_cost(model, correction="balanced", a_nnz=0, columns=1, degree=2):
    """The cost model of one application of an exact DD preconditioner on this rank.

    Parameters
    ----------
    model : DDAttention with init='exact' (two levels)
    correction : {'additive', 'balanced', 'multiplicative'}
        How often each part runs per application (petsc/corrections.py):
        additive 1 local and 1 coarse term; balanced 1 local, 2 coarse and
        2 products with A; multiplicative 2 k local, 1 coarse and 2 k products.
    a_nnz : int
        Entries of this rank's rows of A (the products with A).
    degree : int
        k, the Chebyshev steps of each multiplicative smoothing.

    Returns
    -------
    dict of name -> (flops, bytes): ``local`` (the block solves), ``coarse``
    (Phi^T x, the top solve, Phi z; ``reduce`` bytes of its Allreduce apart),
    ``A`` (the products with A), ``total``. ``logged`` is the part of
    ``total`` flops that PETSc's own counter sees (its triangular solves).
    """
    if len(model.level_operators) > 1:
        raise ValueError("the cost model covers the two-level exact operator")
    counts = {"additive": (1, 1, 0), "balanced": (1, 2, 2), "multiplicative": (2 * degree, 1, 2 * degree)}
    if correction not in counts:
        raise ValueError(f"unknown correction {correction!r}; choose one of {tuple(counts)}")
    n_local, n_coarse, n_A = counts[correction] if model.has_coarse else (1, 0, 0)
    exact = model.parametrization
    local = exact.local_solve.cost(columns)
    top = exact.top_solve.cost(columns) if exact.top_solve is not None else (0, 0)
    phi = model.decomposition.phi_rows(model.own_rows) if model.has_coarse else sp.csr_matrix((0, 0))
    coarse = (top[0] + 4 * phi.nnz * columns, top[1] + 2 * 12 * phi.nnz + 2 * 8 * phi.shape[0] * columns)
    parts = {"local": tuple(n_local * v for v in local), "coarse": tuple(n_coarse * v for v in coarse),
             "A": (n_A * 2 * a_nnz * columns, n_A * 12 * a_nnz)}
    parts["total"] = tuple(sum(p[k] for p in parts.values()) for k in (0, 1))
    solver = exact.local_solve.solve.lu
    parts["logged"] = n_local * (solver.flops(columns) if hasattr(solver, "flops") else 0) + \
        n_coarse * (exact.top_solve.lu.flops(columns) if top[0] and hasattr(exact.top_solve.lu, "flops") else 0)
    parts["reduce_bytes"] = n_coarse * 8 * model.decomposition.coarse_size * columns
    return parts

