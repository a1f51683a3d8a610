"""A rank's share of a decomposition, built from the rows of A it can read: the one builder.

Given a rank's held subdomains (from the counts), their node sets, the ring
of nodes around its own rows and A's rows at the union U of both, this makes
the :class:`~pddattn.parallel.share.DecompositionShare`: the exchange plan (a
rank tells the owners what it reads), the partition of unity summed through
it, Phi's rows at the own rows (hat and q1 from geometry; harmonic from the
interface of the own cores and local solves on their interiors) and the
replicated top A_0 = Phi^T A Phi as a sum of per-rank products. Two callers
differ only in how they read rows: the PETSc PC extracts them from the
distributed Mat (petsc/local.py), training assembles them from the stencil
of a built-in family (:func:`family_share`). Equal to the whole
decomposition's parts to rounding (tests/test_petsc_local.py, the MPI tests).
"""
from __future__ import annotations

import copy
import typing

import numpy as np
import scipy.sparse as sp
import torch

from ..coarse import COARSE_SPACES, HarmonicPlan, _interface_groups, hat_basis, q1_basis
from ..errors import ConfigurationError
from ..geometry import CoreMap, TileMap, box_ramp, check_geometry, distance_to_outside, grown, interval_ramp, ramp
from ..problems.families import principal_block
from .comm import OneRank, max_over
from .ghosts import GhostExchange
from .share import DecompositionShare, pou_weights, sum_at_owners, sum_over_ranks

__all__ = ["ValuesPlan", "share_on_values", "finish_share", "family_share", "algebraic_share", "one_rank",
           "check_geometry", "coarse_rows", "galerkin_part", "sum_over_ranks", "FAMILY_SHARE_KINDS"]

FAMILY_SHARE_KINDS = ("intervals", "boxes")


def finish_share(spec, cmap, comm, cores, subdomains, ring, U, rows, plan=None, ramps=None, A_UU=None, galerkin=True):
    """The share of the held subdomains (``cmap.holdings[rank]``), from A's rows at U (CSR, global columns).

    Parameters
    ----------
    spec : dict
        The decomposition spec (kind, N, delta, pou, coarse).
    cmap : CoreMap
    comm : mpi4py communicator of the domain group
    cores, subdomains : list of int arrays
        The held subdomains' cores and node sets, in held order.
    ring : int array
        The own rows and their neighbours through A (what Phi's rows and A_0 need).
    U : int array
        Sorted union of the subdomains and the ring; ``rows`` holds A's rows there.
    plan : GhostExchange, optional
        Reused from an earlier share of the same structure.
    ramps : list of arrays, optional
        The smooth PoU's unnormalised weights on each subdomain.
    A_UU : CSR, optional
        R_U A R_U^T (columns numbered in U), where the caller has it already
        (None with ``rows`` None: subdomains and Phi that do not read A).
    galerkin : bool
        Whether to make this rank's term of A_0 (the one-rank case leaves
        A_0 to the whole decomposition).
    """
    held = cmap.holdings[comm.Get_rank()]
    own = np.sort(np.concatenate(cores)) if cores else np.zeros(0, dtype=np.int64)
    plan = plan or GhostExchange.from_reads(own, np.concatenate(subdomains) if subdomains else own,
                                            cmap.owner_of, comm)
    A_UU = principal_block(rows, U) if A_UU is None and rows is not None else A_UU
    weights = pou_weights(plan, subdomains, ramps if spec["pou"] == "smooth" else None)
    ring_plan = GhostExchange.from_reads(own, ring, cmap.owner_of, comm)  # Phi's ghost rows: one plan for both
    phi, anchors, harmonic = coarse_rows(spec["coarse"], A_UU, U, own, ring_plan, cores, cmap, comm,
                                         (held, subdomains, weights))
    A0_local = galerkin_part(phi, A_UU, U, ring_plan, comm) if galerkin else None
    ring_plan.free()
    sizes = np.zeros(cmap.N, dtype=np.int64)
    for ids, counts in comm.allgather((held, [len(s) for s in subdomains])):
        sizes[ids] = counts
    share = DecompositionShare(cmap.n, spec, cmap, held, cores, subdomains, weights, own, phi, A0_local, plan, sizes,
                               comm)
    share.rows_held = len(U)
    share.values_plan = ValuesPlan(U, ring, harmonic, np.searchsorted(U, own), A_UU.nnz if A_UU is not None else 0)
    if anchors is not None:
        share.anchors = anchors  # every interface piece's first node: the coarse levels' tiles (tiling.py)
    return share


class ValuesPlan(typing.NamedTuple):
    """What a share keeps to take new values of A at the same rows (:func:`share_on_values`)."""

    U: np.ndarray  # the rows read: the held subdomains and the ring of the own rows
    ring: np.ndarray  # the own rows and their neighbours (Phi's rows there make A_0's term)
    harmonic: object  # the harmonic basis's HarmonicPlan on A_UU's pattern, None where Phi ignores A
    own_at: np.ndarray  # positions of the own rows in U
    nnz: int  # entries of A_UU (a first check of its pattern)


def share_on_values(share, A_UU):
    """The share on new values of A, read at the same rows U with the same pattern: Phi's rows and this
    rank's term of A_0 anew; index sets, weights, exchange plan and the harmonic structure kept (collective).

    ValueError, on every rank alike, when A_UU has another pattern on any rank (the caller builds
    the share again).
    """
    plan = share.values_plan
    other = A_UU.shape != (len(plan.U), len(plan.U)) or A_UU.nnz != plan.nnz
    if max_over(int(other), share.comm):  # decided together: the rest is collective
        raise ValueError("another pattern of A at this rank's rows")
    phi = sp.csr_matrix(plan.harmonic.phi(A_UU)[plan.own_at]) if plan.harmonic is not None else share.phi
    ring_plan = GhostExchange.from_reads(share.own, plan.ring, share.core_map.owner_of, share.comm)
    A0_local = galerkin_part(phi, A_UU, plan.U, ring_plan, share.comm)
    ring_plan.free()
    out = copy.copy(share)
    out.phi, out.A0_local, out._A0 = phi, A0_local, None
    return out


def family_share(problem, spec, layout, comm):
    """A rank's share of intervals or boxes on a built-in family: rows from the stencil, no global A.

    Everything a rank reads is its subdomains and the ring of its rows, assembled
    by ``problem.rows``.
    """
    kind, delta, n = spec["kind"], int(spec["delta"]), problem.n
    N = tuple(spec["N"]) if kind == "boxes" else (int(spec["N"]),)
    grid = tuple(problem.grid) if kind == "boxes" else (n,)
    check_geometry(kind, grid, N, delta, n)
    cmap = CoreMap(kind, n, grid, N, layout.domain_size)
    cores, subs, ramps = _geometric(cmap, cmap.holdings[layout.domain_rank], delta)
    own = np.sort(np.concatenate(cores)) if cores else np.zeros(0, dtype=np.int64)
    ring = np.union1d(own, problem.rows(own).indices) if spec["coarse"] != "none" else own
    U = np.unique(np.concatenate(subs + [ring]))
    return finish_share(spec, cmap, comm, cores, subs, ring, U, problem.rows(U), ramps=ramps)


def algebraic_share(problem, spec, layout, comm):
    """A rank's share of algebraic row blocks on a built-in family: its blocks grown through A's graph.

    The rows come from the stencil (any row, on any rank, with no message),
    so a rank grows its cores by ``delta`` layers from the rows it reaches and
    weighs a smooth partition of unity by the graph distance to the outside.
    """
    n, delta, N = problem.n, int(spec["delta"]), int(spec["N"])
    check_geometry("algebraic", (n,), (N,), delta, n)
    cmap = CoreMap("algebraic", n, (n,), (N,), layout.domain_size)
    cores = [cmap.core(i) for i in cmap.holdings[layout.domain_rank]]
    subs, ramps = _grown_subdomains(problem.rows, cores, delta, spec["pou"], n, N, comm)
    own = np.sort(np.concatenate(cores)) if cores else np.zeros(0, dtype=np.int64)
    ring = np.union1d(own, problem.rows(own).indices) if spec["coarse"] != "none" else own
    U = np.unique(np.concatenate(subs + [ring]))
    return finish_share(spec, cmap, comm, cores, subs, ring, U, problem.rows(U), ramps=ramps)


def one_rank(spec, n, grid=None, A=None, cores=None):
    """The share of every subdomain held by one rank, without MPI: what a whole decomposition is made of.

    Serial is the share builder's one-rank case: decomposition.intervals,
    boxes and algebraic wrap this share (``Decomposition.of_share``). Its own
    rows are all n, so the ring and the rows read are everything and A_UU is
    A itself; A_0 is left to the decomposition (``coarse_operator``).

    Parameters
    ----------
    spec : dict
        kind, N, delta, pou, coarse (hat, q1, harmonic or none).
    n : int
    grid : tuple, optional
        (nx, ny) for boxes.
    A : CSR, optional
        Where the subdomains (algebraic) or Phi (harmonic) read it.
    cores : list of int arrays, optional
        Algebraic cores that are not row blocks (graph parts, tiles).
    """
    kind, delta, comm = spec["kind"], int(spec["delta"]), OneRank()
    N = tuple(spec["N"]) if kind == "boxes" else (int(spec["N"]),)
    if kind == "algebraic":
        check_geometry(kind, (n,), N, delta, n)
        cmap = CoreMap(kind, n, (n,), N, 1) if cores is None else TileMap.of_cores(cores, n)
        core_sets = [cmap.core(i) for i in range(cmap.N)]
        subs, ramps = _grown_subdomains(lambda rows: A[rows], core_sets, delta, spec["pou"], n, cmap.N, comm)
    else:
        grid = tuple(grid) if kind == "boxes" else (n,)
        check_geometry(kind, grid, N, delta, n)
        cmap = CoreMap(kind, n, grid, N, 1)
        core_sets, subs, ramps = _geometric(cmap, range(cmap.N), delta)
    everything = np.arange(n)
    return finish_share(spec, cmap, comm, core_sets, subs, everything, everything, None, ramps=ramps, A_UU=A,
                        galerkin=False)


def _geometric(cmap, held, delta):
    """(cores, subdomains, smooth ramps) of the held intervals or boxes: grid layers around the cores."""
    cores, subs, ramps = [], [], []
    for i in held:
        lo, hi = cmap.extent(i, delta)
        cores.append(cmap.core(i))
        if cmap.kind == "boxes":
            subs.append(cmap.box(i, delta))
            ramps.append(box_ramp((lo[0], hi[0]), (lo[1], hi[1]), cmap.grid, delta))
        else:
            subs.append(np.arange(lo[0], hi[0]))
            ramps.append(interval_ramp(lo[0], hi[0], cmap.n, delta))
    return cores, subs, ramps


def _grown_subdomains(rows_of, cores, delta, pou, n, N, comm):
    """(subdomains, smooth ramps or None): the cores grown ``delta`` steps through A's graph (collective)."""
    subs = [grown(rows_of, c, delta) for c in cores]
    if N > 1 and max_over(max((len(s) for s in subs), default=0), comm) == n:
        raise ConfigurationError(f"overlap delta={delta} makes a subdomain cover all {n} rows; use a smaller --overlap")
    if pou != "smooth":
        return subs, None
    return subs, [ramp(distance_to_outside(rows_of(s), s, 2 * delta + 1), delta) for s in subs]


def coarse_rows(kind, A_UU, U, own, ring_plan, cores, cmap, comm, pou=None):
    """(Phi at the own rows (CSR, len(own) x n_0), the harmonic pieces' first nodes, the HarmonicPlan)
    (the last two None but for the harmonic space).

    ``ring_plan``: the exchange that reads the ring; ``pou``: (held, subdomains,
    weights), what the Nicolaides space is made of.
    """
    if kind == "none":
        return sp.csr_matrix((len(own), 0)), None, None
    if kind == "nicolaides":
        return _nicolaides_rows(*pou, own, cmap, comm), None, None
    if kind not in ("q1", "hat", "harmonic"):
        raise ConfigurationError(f"unknown coarse space {kind!r}; choose one of {COARSE_SPACES}")
    if kind == "q1":
        if cmap.kind != "boxes":
            raise ConfigurationError("the q1 coarse space needs boxes of a DMDA grid; use harmonic")
        return q1_basis(cmap.grid, (cmap.bx, cmap.by), own if len(own) < cmap.n else None), None, None
    if kind == "hat":
        if cmap.kind != "intervals":
            raise ConfigurationError("the hat coarse space needs an intervals decomposition (1D); use harmonic")
        return hat_basis(cmap.n, cmap.bounds, own if len(own) < cmap.n else None), None, None
    return _harmonic_rows(A_UU, U, own, ring_plan, cores, cmap, comm)


def _nicolaides_rows(held, subdomains, weights, own, cmap, comm):
    """Phi[:, i] = R_i^T D_i 1 at the own rows: each rank's held subdomains' weights, sent to the owners of
    their nodes (one Alltoall) and summed there (each (node, i) is sent once)."""
    nodes = np.concatenate(subdomains) if subdomains else np.zeros(0, dtype=np.int64)
    cols = np.repeat(np.asarray(held, dtype=np.int64), [len(s) for s in subdomains])
    values = np.concatenate(weights) if weights else np.zeros(0)
    mine = sp.csr_matrix((values, (nodes, cols)), shape=(cmap.n, cmap.N))
    return sum_at_owners(mine, cmap.owner_of, own, comm)


def _harmonic_rows(A_UU, U, own, ring_plan, cores, cmap, comm):
    """GDSW-type Phi at the own rows (coarse.py), from the own cores' interface and interiors alone.

    A group of the interface lies in one core (its key holds its own core),
    so the rank holding that core finds it whole from its own rows; groups are
    numbered as the serial basis numbers them, by first node, from one
    allgather of first nodes, and the ring's group ids come from their owners.
    """
    at = np.minimum(np.searchsorted(own, U), max(len(own) - 1, 0))
    is_own = own[at] == U if len(own) else np.zeros(len(U), dtype=bool)  # both sorted: no isin sort
    _, groups = _interface_groups(A_UU, cmap.core_of(U))
    groups = [g for g in groups if is_own[g[0]]]
    first = U[[g[0] for g in groups]] if groups else np.zeros(0, dtype=np.int64)
    every = np.sort(np.concatenate(comm.allgather(first)))
    n0 = len(every)
    group_own = np.full(len(own), -1.0)
    if groups:  # every group's nodes at once: no loop over the (n_0 / ranks) groups
        members = np.concatenate(groups)
        group_own[np.searchsorted(own, U[members])] = np.repeat(np.searchsorted(every, first),
                                                                [len(g) for g in groups])
    ext = ring_plan.forward(torch.from_numpy(group_own[:, None])).numpy()[:, 0]
    group = np.full(len(U), -1, dtype=np.int64)
    group[np.searchsorted(U, np.concatenate([own, ring_plan.ghosts]))] = ext.astype(np.int64)
    plan = HarmonicPlan(A_UU, [np.searchsorted(U, c) for c in cores], group, n0)
    phi = plan.phi(A_UU)[np.searchsorted(U, own)]  # the ring's Gamma rows are their owners'
    return phi, every, plan


def galerkin_part(phi, A_UU, U, plan, comm):
    """This rank's term Phi_own^T A_own,ring Phi_ring of A_0 = Phi^T A Phi (sparse n_0 x n_0).

    Phi's rows at the ring's ghosts come from their owners: the rows others
    read, packed as column and value pairs, through one exchange
    (:meth:`GhostExchange.ghost_rows`); A's own rows are taken from A_UU
    (columns numbered in U, which holds the ring), renumbered to the
    exchange's order by one gather. The terms are summed on every rank for
    a replicated top (:func:`sum_over_ranks`) or at the owners of their rows
    for a distributed coarse level (coarse_level.py).
    """
    n0 = phi.shape[1]
    if not n0:
        return sp.csr_matrix((0, 0))
    own = plan.own
    width = max_over(int(np.diff(phi.indptr).max(initial=0)), comm)
    phi_ext = sp.vstack([phi, _ghost_phi(phi[plan.send_rows], plan, width, n0)], format="csr")
    nodes = np.concatenate([own, plan.ghosts])
    to_ext = np.full(len(U), -1, dtype=np.int64)
    to_ext[np.searchsorted(U, nodes)] = np.arange(len(nodes))
    A_own = A_UU[np.searchsorted(U, own)]          # own rows; their columns lie in the ring
    A_own = sp.csr_matrix((A_own.data, to_ext[A_own.indices], A_own.indptr), shape=(len(own), len(nodes)))
    return sp.csr_matrix(phi.T @ (A_own @ phi_ext))


def _ghost_phi(sent, plan, width, n0):
    """Phi's rows at the plan's ghosts (CSR), from the rows this rank sends (``sent``, CSR)."""
    packed = np.full((sent.shape[0], 2 * width), -1.0)
    packed[:, width:] = 0.0
    count = np.diff(sent.indptr)
    slot = np.arange(sent.nnz) - np.repeat(sent.indptr[:-1], count)
    r = np.repeat(np.arange(sent.shape[0]), count)
    packed[r, slot], packed[r, width + slot] = sent.indices, sent.data
    ext = plan.ghost_rows(packed)
    keep = ext[:, :width] >= 0  # row-major: each row's entries in order, so the CSR arrays are written directly
    indptr = np.concatenate([[0], np.cumsum(keep.sum(axis=1))])
    return sp.csr_matrix((ext[:, width:][keep], ext[:, :width][keep].astype(np.int64), indptr),
                         shape=(len(plan.ghosts), n0))
