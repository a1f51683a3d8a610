"""The PC's set-up from this rank's rows of the PETSc operator: no rank gathers A.

As PCASM and FROSch do it, each rank
1. takes the subdomains it holds (from the counts: ``holdings_of``) and their
   cores (boxes of the DMDA's grid, or contiguous row blocks);
2. grows them to its subdomains: by grid layers for boxes, through the graph
   of A by PETSc's ``MatIncreaseOverlap`` for algebraic ones;
3. extracts A on the union of its subdomains and the ring around its rows
   (``MatCreateSubMatrices``): the only part of A it ever holds;
4. builds its exchange plan by telling the owners what it reads, the count
   partition of unity through that plan, its rows of Phi (q1 from geometry,
   harmonic from the interface of its own cores and local solves on their
   interiors, interface groups numbered from an allgather of their first
   nodes), and A_0 = Phi^T A Phi as a sum of per-rank products, replicated
   (the two-level top).

The result is a :class:`~pddattn.parallel.share.DecompositionShare` and a
Problem that answers only for the rows the rank holds; the operators take
them where they take a Decomposition and a Problem. Equal to the gathered
construction to rounding (tests/test_petsc_operator.py).
"""
from __future__ import annotations

import types

import numpy as np
import scipy.sparse as sp

from ..errors import CollectiveError, ConfigurationError
from ..parallel.layout import check_distribution
from ..parallel.setup import check_geometry, finish_share, share_on_values
from ..parallel.share import CoreMap, rows_problem
from .matrices import dmda_grid, mat_read

__all__ = ["Numbering", "local_share", "matrix_file_share"]


def _petsc():
    from petsc4py import PETSc
    return PETSc


class Numbering:
    """Natural (x fastest) <-> PETSc numbering of a DMDA's nodes, from its ownership ranges alone.

    Rank p = py Px + px owns the box of x-sizes lx[px], y-sizes ly[py],
    numbered x fastest inside; without a DMDA both numberings are the same.
    """

    def __init__(self, dm=None):
        grid = dmda_grid(dm)
        self.identity = grid is None or len(grid) != 2
        if self.identity:
            return
        self.nx = grid[0]
        lx, ly = (np.asarray(r, dtype=np.int64) for r in dm.getOwnershipRanges()[:2])
        self.x0, self.y0 = np.concatenate([[0], np.cumsum(lx)]), np.concatenate([[0], np.cumsum(ly)])
        self.lx, self.ly = lx, ly
        self.start = np.concatenate([[0], np.cumsum(np.outer(ly, lx).ravel())])

    def to_petsc(self, nodes):
        nodes = np.asarray(nodes, dtype=np.int64)
        if self.identity:
            return nodes
        i, j = nodes % self.nx, nodes // self.nx
        px = np.searchsorted(self.x0, i, side="right") - 1
        py = np.searchsorted(self.y0, j, side="right") - 1
        return self.start[py * len(self.lx) + px] + (j - self.y0[py]) * self.lx[px] + (i - self.x0[px])

    def to_natural(self, index):
        index = np.asarray(index, dtype=np.int64)
        if self.identity:
            return index
        p = np.searchsorted(self.start, index, side="right") - 1
        px, py = p % len(self.lx), p // len(self.lx)
        dj, di = np.divmod(index - self.start[p], self.lx[px])
        return (self.y0[py] + dj) * self.nx + self.x0[px] + di


def _index_set(nodes, numbering):
    PETSc = _petsc()
    return PETSc.IS().createGeneral(np.sort(numbering.to_petsc(nodes)).astype(PETSc.IntType), comm=PETSc.COMM_SELF)


def _grown(P, numbering, node_sets, delta, comm):
    """Each node set grown by ``delta`` steps of A's graph (MatIncreaseOverlap, collective)."""
    if delta == 0:
        return [np.asarray(s, dtype=np.int64) for s in node_sets]
    rounds = comm.allreduce(len(node_sets), op=_mpi().MAX)
    out = []
    for k in range(rounds):  # petsc4py grows one IS per call: every rank calls equally often
        iset = _index_set(node_sets[k] if k < len(node_sets) else np.zeros(0, dtype=np.int64), numbering)
        P.increaseOverlap(iset, delta)
        if k < len(node_sets):
            out.append(np.sort(numbering.to_natural(np.asarray(iset.getIndices()))))
        iset.destroy()
    return out


def _mpi():
    from mpi4py import MPI
    return MPI


def _extract(P, numbering, U):
    """(rows, A_UU): A's rows U with their columns in U as CSR (len(U), n) in global natural columns,
    and the same block numbered in U (R_U A R_U^T)."""
    petsc = numbering.to_petsc(U)
    iset = _index_set(U, numbering)
    sub = P.createSubMatrices(iset, iset)[0]
    indptr, indices, values = sub.getValuesCSR()
    S = sp.csr_matrix((values, indices, indptr), shape=(len(U), len(U)))
    sub.destroy()
    iset.destroy()
    if np.any(np.diff(petsc) < 0):  # U[k] is row back[k] of S (S is in sorted PETSc order)
        back = np.empty(len(U), dtype=np.int64)
        back[np.argsort(petsc)] = np.arange(len(U))
        S = S[back][:, back].tocsr()
    S.sort_indices()
    return sp.csr_matrix((S.data, U[S.indices], S.indptr), shape=(len(U), P.getSize()[0])), S


def _check(kind, grid, layout, delta, n, world, data):
    """The checks the whole-decomposition builders make, from numbers every rank has."""
    check_geometry(kind, grid, layout, delta, n)
    counts = types.SimpleNamespace(N=int(np.prod(layout)), layout=tuple(layout), spec={"kind": kind})
    check_distribution(counts, world, data)


def local_share(P, dm, spec, layout, plan=None):
    """(share, problem): this rank's part of the decomposition ``spec`` of P, from its rows only.

    Parameters
    ----------
    P : petsc4py Mat
        The operator (any AIJ layout; a DMDA's when ``dm`` is one).
    dm : petsc4py DM or None
    spec : dict
        kind (boxes or algebraic), N, delta, pou ('count'), coarse (harmonic, q1, nicolaides, none).
    layout : Layout or SerialLayout
    plan : GhostExchange, optional
        The exchange plan of an earlier set-up with the same structure (refactoring).
    """
    comm = layout.domain_comm if layout.domain_comm is not None else _petsc().COMM_SELF.tompi4py()
    n, kind, delta = P.getSize()[0], spec["kind"], int(spec["delta"])
    grid = dmda_grid(dm) if kind == "boxes" else (n,)
    N = tuple(spec["N"]) if kind == "boxes" else (int(spec["N"]),)
    _check(kind, grid, N, delta, n, layout.world_size, layout.data_size)
    numbering = Numbering(dm)
    cmap = CoreMap(kind, n, grid, N, layout.domain_size)
    cores = [cmap.core(i) for i in cmap.holdings[layout.domain_rank]]
    own = np.sort(np.concatenate(cores)) if cores else np.zeros(0, dtype=np.int64)
    subs = [cmap.box(i, delta) for i in cmap.holdings[layout.domain_rank]] if kind == "boxes" else \
        _grown(P, numbering, cores, delta, comm)
    ring = _grown(P, numbering, [own], 1, comm)[0] if spec["coarse"] != "none" else own
    largest = comm.allreduce(max((len(s) for s in subs), default=0), op=_mpi().MAX)
    if cmap.N > 1 and largest == n:
        raise ConfigurationError(f"overlap delta={delta} makes a subdomain cover all {n} rows; use a smaller overlap")
    U = np.unique(np.concatenate(subs + [ring]))
    rows, A_UU = _extract(P, numbering, U)
    share = finish_share(spec, cmap, comm, cores, subs, ring, U, rows, plan=plan, A_UU=A_UU)
    share.numbering = numbering
    return share, rows_problem(rows, U, dmda_grid(dm) or (n,))


def share_values(P, dm, share):
    """(share, problem): ``share`` on the values P holds now at the same rows, or None when their
    pattern differs (:func:`~pddattn.parallel.setup.share_on_values`; collective)."""
    U = share.values_plan.U
    rows, A_UU = _extract(P, share.numbering, U)
    comm = share.comm
    try:
        new, ok = share_on_values(share, A_UU), True
    except ValueError:
        new, ok = None, False
    if not comm.allreduce(ok, op=_mpi().LAND):  # every rank takes the same path
        return None
    new.numbering = share.numbering
    return new, rows_problem(rows, U, dmda_grid(dm) or (P.getSize()[0],))


def matrix_file_share(problem, spec, layout):
    """(share, rows stencil): a rank's share of an algebraic decomposition of a matrix file, from its rows.

    The file is read by mat_read (MatLoad, each rank its rows; an .npz sent
    out from rank 0, which alone reads it), the share built as
    DDAttentionPC builds its own (:func:`local_share`), and the stencil
    answers A's rows at the rank's subdomains and ring only, so nothing on
    any rank reads the whole matrix.
    """
    PETSc = _petsc()
    P = mat_read(problem.matrix, PETSc.Comm(layout.domain_comm))
    try:
        _check_diagonal(P, problem.matrix)
        share, local = local_share(P, None, spec, layout)
    finally:
        P.destroy()
    return share, local.stencil


def _check_diagonal(P, path):
    """A positive diagonal, checked on every rank's rows: the SPD test that costs nothing (collective).

    The rest of positive definiteness is checked where A is factored: the
    subdomain factorizations, and the distributed LDL^T of ``solve`` data.
    """
    diagonal = P.getDiagonal()
    bad = P.getComm().tompi4py().allreduce(int((diagonal.getArray(readonly=True) <= 0).sum()), op=_mpi().SUM)
    diagonal.destroy()
    if bad:
        raise CollectiveError(f"the matrix in {path} is not positive definite ({bad} diagonal entries <= 0); "
                              "pddattn needs a symmetric positive definite operator")
