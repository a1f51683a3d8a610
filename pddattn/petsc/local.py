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
import torch

from ..decomposition import split_sizes
from ..parallel.ghosts import GhostExchange
from ..parallel.layout import ConfigurationError, check_distribution
from ..parallel.share import CoreMap, DecompositionShare, count_weights
from .matrices import dmda_grid

__all__ = ["Numbering", "LOCAL_COARSE", "local_share"]

LOCAL_COARSE = ("harmonic", "q1", "none")


def _petsc():
    from petsc4py import PETSc
    return PETSc


class Numbering:
    """Natural (x fastest) <-> PETSc numbering of a DMDA's nodes, from its ownership ranges alone.

    Rank p = py Px + px owns the box of x-sizes lx[px], y-sizes ly[py],
    numbered x fastest inside; without a DMDA both numberings are the same.
    """

    def __init__(self, dm=None, n=None):
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
    """A's rows U with their columns in U, as CSR (len(U), n) in global natural columns."""
    petsc = numbering.to_petsc(U)
    order = np.argsort(petsc)
    iset = _index_set(U, numbering)
    sub = P.createSubMatrices(iset, iset)[0]
    indptr, indices, values = sub.getValuesCSR()
    S = sp.csr_matrix((values, indices, indptr), shape=(len(U), len(U)))
    sub.destroy()
    iset.destroy()
    back = np.empty(len(U), dtype=np.int64)
    back[order] = np.arange(len(U))                 # U[k] is row back[k] of S (S is in sorted PETSc order)
    S = S[back][:, back].tocsr()
    S.sort_indices()
    return sp.csr_matrix((S.data, U[S.indices], S.indptr), shape=(len(U), P.getSize()[0])), S


def _local_problem(rows, U, grid):
    """A Problem whose rows exist only at the nodes U: asking for another row is an error."""
    from ..problems.families import Problem

    def rows_of(nodes):
        nodes = np.asarray(nodes, dtype=np.int64)
        where = np.minimum(np.searchsorted(U, nodes), max(len(U) - 1, 0))
        if len(nodes) and (not len(U) or not np.array_equal(U[where], nodes)):
            raise ValueError("this rank holds A's rows at its subdomains and their ring only")
        return rows[where]

    return Problem("operator", tuple(grid), "const", 0, None, stencil=rows_of)


def _check(kind, grid, layout, delta, n, world, data):
    """The checks the whole-decomposition builders make, from numbers every rank has."""
    if kind == "boxes":
        (nx, ny), (Nx, Ny) = grid, layout
        if Nx > nx or Ny > ny:
            raise ConfigurationError(f"{Nx}x{Ny} subdomains do not fit the {nx}x{ny} grid")
        wx, wy = max(split_sizes(nx, Nx)), max(split_sizes(ny, Ny))
        if (Nx > 1 and delta >= nx - wx) or (Ny > 1 and delta >= ny - wy):
            raise ConfigurationError(f"overlap delta={delta} is too large for a {nx}x{ny} grid in {Nx}x{Ny} boxes")
    elif layout[0] > n:
        raise ConfigurationError(f"N={layout[0]} subdomains is more than the n={n} rows")
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
        kind (boxes or algebraic), N, delta, pou ('count'), coarse (harmonic, q1, none).
    layout : Layout or SerialLayout
    plan : GhostExchange, optional
        The exchange plan of an earlier set-up with the same structure (refactoring).
    """
    comm = layout.domain_comm if layout.domain_comm is not None else _petsc().COMM_SELF.tompi4py()
    n, kind, delta = P.getSize()[0], spec["kind"], int(spec["delta"])
    grid = dmda_grid(dm) if kind == "boxes" else (n,)
    N = tuple(spec["N"]) if kind == "boxes" else (int(spec["N"]),)
    _check(kind, grid, N, delta, n, layout.world_size, layout.data_size)
    numbering = Numbering(dm, n)
    cmap = CoreMap(kind, n, grid, N, layout.domain_size)
    held = cmap.holdings[layout.domain_rank]
    cores = [cmap.core(i) for i in held]
    own = np.sort(np.concatenate(cores)) if cores else np.zeros(0, dtype=np.int64)
    subs = [cmap.box(i, delta) for i in held] if kind == "boxes" else _grown(P, numbering, cores, delta, comm)
    ring = _grown(P, numbering, [own], 1, comm)[0] if spec["coarse"] != "none" else own
    largest = comm.allreduce(max((len(s) for s in subs), default=0), op=_mpi().MAX)
    if cmap.N > 1 and largest == n:
        raise ConfigurationError(f"overlap delta={delta} makes a subdomain cover all {n} rows; use a smaller overlap")
    U = np.unique(np.concatenate(subs + [ring]))
    rows, A_UU = _extract(P, numbering, U)
    plan = plan or GhostExchange.from_reads(own, np.concatenate(subs) if subs else own, cmap.owner_of, comm)
    phi = _coarse_rows(spec["coarse"], A_UU, U, own, ring, cores, cmap, comm)
    A0 = _galerkin(phi, rows, U, own, ring, cmap, comm)
    share = DecompositionShare(n, spec, cmap, held, cores, subs, count_weights(plan, subs), own, phi, A0, plan,
                               largest)
    share.rows_held, share.numbering = len(U), numbering
    return share, _local_problem(rows, U, dmda_grid(dm) or (n,))


# ------------------------------------------------------------- coarse rows
def _coarse_rows(kind, A_UU, U, own, ring, cores, cmap, comm):
    """Phi at the own rows (CSR, len(own) x n_0)."""
    if kind == "none":
        return sp.csr_matrix((len(own), 0))
    if kind == "q1":
        if cmap.kind != "boxes":
            raise ConfigurationError("the q1 coarse space needs boxes of a DMDA grid; use harmonic")
        return _q1_rows(own, cmap)
    return _harmonic_rows(A_UU, U, own, ring, cores, cmap, comm)


def _q1_rows(own, cmap):
    """Rows of Phi = Phi_y (x) Phi_x at ``own``: the row-wise Kronecker product of the per-axis hats."""
    from ..coarse import hat_basis
    (nx, ny), nx0 = cmap.grid, len(cmap.bx) - 2
    hx, hy = hat_basis(nx, cmap.bx)[own % nx].tocsr(), hat_basis(ny, cmap.by)[own // nx].tocsr()
    rows, cols, vals = [], [], []
    for a in range(int(np.diff(hy.indptr).max(initial=0))):
        for b in range(int(np.diff(hx.indptr).max(initial=0))):
            r = np.flatnonzero((np.diff(hy.indptr) > a) & (np.diff(hx.indptr) > b))
            ey, ex = hy.indptr[r] + a, hx.indptr[r] + b
            rows.append(r)
            cols.append(hy.indices[ey] * nx0 + hx.indices[ex])
            vals.append(hy.data[ey] * hx.data[ex])
    shape = (len(own), nx0 * (len(cmap.by) - 2))
    if not rows:
        return sp.csr_matrix(shape)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape)


def _harmonic_rows(A_UU, U, own, ring, cores, cmap, comm):
    """GDSW-type Phi at the own rows (coarse.py), from the own cores' interface and interiors alone.

    A group of the interface lies in one core (its key holds its own core),
    so the rank holding that core finds it whole from its own rows; groups are
    numbered as the serial basis numbers them, by first node, from one
    allgather of first nodes, and the ring's group ids come from their owners.
    """
    from ..coarse import _interface_groups, _interior_extensions
    is_own = np.isin(U, own, assume_unique=True)
    _, groups = _interface_groups(A_UU, cmap.core_of(U))
    groups = [g for g in groups if is_own[g[0]]]
    first = U[[g[0] for g in groups]] if groups else np.zeros(0, dtype=np.int64)
    every = np.sort(np.concatenate(comm.allgather(first)))
    n0 = len(every)
    group_own = np.full(len(own), -1.0)
    for g, gid in zip(groups, np.searchsorted(every, first)):
        group_own[np.searchsorted(own, U[g])] = gid
    ring_plan = GhostExchange.from_reads(own, ring, cmap.owner_of, comm)
    ext = ring_plan.forward(torch.from_numpy(group_own[:, None])).numpy()[:, 0]
    ring_plan.free()
    group = np.full(len(U), -1, dtype=np.int64)
    group[np.searchsorted(U, np.concatenate([own, ring_plan.ghosts]))] = ext.astype(np.int64)
    gamma = np.flatnonzero(group >= 0)
    phi_gamma = sp.csr_matrix((np.ones(len(gamma)), (gamma, group[gamma])), shape=(len(U), n0))
    where = [np.searchsorted(U, c) for c in cores]
    parts = _interior_extensions(A_UU, where, group >= 0, A_UU @ phi_gamma)
    mine = gamma[is_own[gamma]]
    rows, cols, vals = [np.searchsorted(own, U[mine])], [group[mine]], [np.ones(len(mine))]
    if parts is not None:
        rows.append(np.searchsorted(own, U[parts[0]]))
        cols.append(parts[1])
        vals.append(parts[2])
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(own), n0))


def _galerkin(phi, rows, U, own, ring, cmap, comm):
    """A_0 = Phi^T A Phi = sum over ranks of Phi_own^T A_own,ring Phi_ring, summed on every rank.

    Phi's rows at the ring come from their owners (rows packed as column and
    value pairs through one forward exchange); the per-rank products are
    summed as triplets (the top level is replicated: n_0 is bounded).
    """
    n0 = phi.shape[1]
    if not n0:
        return sp.csr_matrix((0, 0))
    plan = GhostExchange.from_reads(own, ring, cmap.owner_of, comm)
    width = comm.allreduce(int(np.diff(phi.indptr).max(initial=0)), op=_mpi().MAX)
    packed = np.full((len(own), 2 * width), -1.0)
    packed[:, width:] = 0.0
    count = np.diff(phi.indptr)
    slot = np.arange(phi.nnz) - np.repeat(phi.indptr[:-1], count)
    r = np.repeat(np.arange(len(own)), count)
    packed[r, slot], packed[r, width + slot] = phi.indices, phi.data
    ext = plan.forward(torch.from_numpy(packed)).numpy()
    nodes = np.concatenate([own, plan.ghosts])
    plan.free()
    keep = ext[:, :width] >= 0
    ext_rows = np.repeat(np.arange(len(nodes)), keep.sum(axis=1))
    phi_ext = sp.csr_matrix((ext[:, width:][keep], (ext_rows, ext[:, :width][keep].astype(np.int64))),
                            shape=(len(nodes), n0))
    A_own = rows[np.searchsorted(U, own)].tocoo()          # own rows, global columns (in own and ring)
    order = np.argsort(nodes)
    cols = order[np.searchsorted(nodes, A_own.col, sorter=order)]
    A_own = sp.csr_matrix((A_own.data, (A_own.row, cols)), shape=(len(own), len(nodes)))
    return _sum_over_ranks(phi.T @ (A_own @ phi_ext), comm)


def _sum_over_ranks(M, comm):
    M = sp.coo_matrix(M)
    parts = comm.allgather((M.row, M.col, M.data))
    r, c, v = (np.concatenate(p) for p in zip(*parts))
    return sp.csr_matrix((v, (r, c)), shape=M.shape)
