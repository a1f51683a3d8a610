"""A rank's share of a decomposition: its subdomains' index sets, PoU weights and rows of Phi.

The one runtime decomposition type. A :class:`DecompositionShare` holds what one rank needs:

- the cores and subdomains it holds (``held``), and its own rows (their cores);
- the partition of unity on its subdomains, summed over ranks by its exchange plan;
- the rows of Phi at its own rows, its term of A_0 = Phi^T A Phi, and A_0 summed on
  every rank when a replicated top asks for it;
- the exchange plan of its subdomains (:meth:`GhostExchange.from_reads`).

Global facts come from counts: where a node's core is and which rank holds
it are arithmetic (:class:`CoreMap`), never another rank's index sets. The
operators take a share where they take a decomposition (the same
``held_indices`` / ``held_pou_weights`` / ``phi_rows`` / ``exchange_plan``
methods), so the formula stays written once. One builder makes it
(parallel/setup.finish_share), its rows read from a family's stencil, a
PETSc matrix (petsc/local.py) or a coarse level's owners (coarse_level.py).
A :class:`~pddattn.decomposition.Decomposition` is its one-rank case, which
holds every subdomain and O(n) index sets (serial runs, the gathered PC).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from ..geometry import CoreMap
from ..problems.families import Problem

__all__ = ["CoreMap", "DecompositionShare", "Held", "pou_weights", "rows_problem", "sum_over_ranks", "sum_at_owners",
           "fetch_rows"]


def pou_weights(plan, subdomains, ramps=None):
    """D_i on each held subdomain's nodes: 'count' (1 / multiplicity), or the ramps normalised.

    The sum over every rank's subdomains at a node comes through the plan:
    scattered into x_ext, sent home (reverse), and back out (forward).
    """
    sizes = [len(s) for s in subdomains]
    every = plan.positions(np.concatenate(subdomains)) if subdomains else np.zeros(0, dtype=np.int64)
    slots = np.split(every, np.cumsum(sizes)[:-1]) if subdomains else []
    values = np.concatenate(ramps) if ramps is not None and subdomains else np.ones(len(every))
    ext = np.bincount(every, weights=values, minlength=plan.m_ext).astype(np.float64)
    own = plan.reverse(torch.from_numpy(ext[:, None]))
    total = plan.forward(own).numpy()[:, 0]
    parts = np.split(values, np.cumsum(sizes)[:-1]) if subdomains else []
    return [w / total[slot] for w, slot in zip(parts, slots)]


class Held(list):
    """The held subdomains' arrays in held order; ``[i]`` takes a global subdomain index, as on a Decomposition."""

    def __init__(self, held, arrays):
        super().__init__(arrays)
        self._at = {int(i): k for k, i in enumerate(held)}

    def __getitem__(self, i):
        if isinstance(i, slice):
            raise TypeError("a rank's subdomains are indexed by global subdomain number")
        try:
            return list.__getitem__(self, self._at[int(i)])
        except KeyError:
            raise IndexError(f"this rank does not hold subdomain {int(i)}") from None


class DecompositionShare:
    """One rank's part of a decomposition (module docstring); built by petsc/local.py.

    Attributes
    ----------
    n, N : int
        Global sizes; ``spec`` as a Decomposition's (what checkpoints store).
    held : int array
        The subdomains this rank holds; ``cores``, ``subdomains``, ``weights``
        (D_i on each subdomain's nodes) in that order.
    own : int array
        This rank's rows, sorted: the union of its cores.
    phi : scipy CSR (len(own), n_0)
        Phi's rows at ``own``.
    A0_local : scipy CSR (n_0, n_0)
        This rank's term of Phi^T A Phi (nonzero near its rows only).
    A0 : scipy CSR (n_0, n_0)
        Phi^T A Phi summed over ranks, the same on every rank: collective on
        first use (every rank asks alike: a replicated top level, its
        Schwarz start and scales), then kept. A distributed coarse level
        sums ``A0_local`` at the owners of its rows instead.
    plan : GhostExchange
        The exchange of the held subdomains.
    sizes : int array (N,)
        n_i of every subdomain (an allgather of counts); ``max_size`` is L, the padded length.

    ``subdomains[i]`` and ``cores[i]`` take global subdomain numbers of held
    subdomains (as on a Decomposition) and iterate in held order.
    """

    def __init__(self, n, spec, core_map, held, cores, subdomains, weights, own, phi, A0_local, plan, sizes,
                 comm=None):
        self.n, self.spec, self.core_map = int(n), dict(spec), core_map
        self.N, self.layout = core_map.N, core_map.layout
        self.held = np.asarray(held, dtype=np.int64)
        self.cores, self.subdomains = Held(self.held, cores), Held(self.held, subdomains)
        self.weights = weights
        self.own, self.phi, self.A0_local, self.plan = own, sp.csr_matrix(phi), A0_local, plan
        self.comm, self._A0 = comm, None
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.max_size = int(self.sizes.max(initial=0))
        self.pou, self.delta, self.coarse = spec["pou"], int(spec["delta"]), spec["coarse"]
        self.grid = core_map.grid
        self._anchors = None  # the harmonic coarse functions' first nodes, set by the builder (setup.py)

    @property
    def contiguous(self):
        """Whether cores and subdomains are node ranges (intervals: what the 1D exchange needs)."""
        return self.core_map.kind == "intervals"

    @property
    def anchors(self):
        """The first node of every harmonic coarse function (what tiles the coarse levels, tiling.py)."""
        return self._anchors

    @anchors.setter
    def anchors(self, value):
        self._anchors = value

    @property
    def A0(self):
        if self._A0 is None:
            self._A0 = sum_over_ranks(self.A0_local, self.comm) if self.comm is not None else self.A0_local
        return self._A0

    @property
    def coarse_size(self):
        return self.phi.shape[1]

    def core_of(self, nodes):
        """The core each global node is in (arithmetic on the counts)."""
        return self.core_map.core_of(nodes)

    @property
    def core_bounds(self):
        """Core i is nodes core_bounds[i]:core_bounds[i+1] (intervals and row blocks)."""
        return self.core_map.bounds

    @property
    def box_bounds(self):
        """(bx, by): box (I, J) is columns bx[I]:bx[I+1] of rows by[J]:by[J+1] (boxes)."""
        return self.core_map.bx, self.core_map.by

    @property
    def whole(self):
        """False: this rank's subdomains and rows of Phi only (a Decomposition says True)."""
        return False

    def to_dict(self):
        return dict(self.spec)

    def __repr__(self):
        return f"DecompositionShare(n={self.n}, N={self.N}, held={len(self.held)}, {self.spec})"

    def _check(self, held):
        if not np.array_equal(np.asarray(held), self.held):
            raise ValueError("a share serves only the subdomains it holds")

    def held_sizes(self, held):
        self._check(held)
        return self.sizes[self.held]

    def held_subdomains(self, held):
        self._check(held)
        return list(self.subdomains)

    def held_indices(self, held, pad=-1):
        """R_i of the held subdomains as a (len(held), L) array of global nodes, ``pad`` past n_i."""
        self._check(held)
        out = np.full((len(held), self.max_size), pad, dtype=np.int64)
        for row, s in enumerate(list.__iter__(self.subdomains)):
            out[row, : len(s)] = s
        return out

    def held_pou_weights(self, held):
        self._check(held)
        out = np.zeros((len(held), self.max_size))
        for row, w in enumerate(self.weights):
            out[row, : len(w)] = w
        return out

    def phi_rows(self, rows):
        """Phi at ``rows``, which must be this rank's own rows."""
        if not np.array_equal(np.asarray(rows), self.own):
            raise ValueError("a share holds Phi at its own rows only")
        return self.phi

    def coarse_operator(self, problem=None):
        return self.A0

    def exchange_plan(self, holdings, rank, comm=None, stats=None):
        """The plan built with the share (the holdings must be its own)."""
        self._check(holdings[rank])
        if stats is not None:
            self.plan.stats = stats
        return self.plan

    def nbytes(self):
        """Bytes this share holds: index sets, weights, Phi's rows, A_0 and the plan's arrays."""
        arrays = [*self.cores, *self.subdomains, *self.weights, self.own, self.plan.ghosts, self.plan.send_rows]
        sparse = [m for m in (self.phi, self.A0_local, self._A0) if m is not None]
        return sum(a.nbytes for a in arrays) + sum(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes for m in sparse)


def rows_problem(rows, U, grid):
    """A Problem whose rows exist only at the nodes U: asking for another row is an error."""

    def rows_of(nodes):
        nodes = np.asarray(nodes, dtype=np.int64)
        where = np.minimum(np.searchsorted(U, nodes), max(len(U) - 1, 0))
        if len(nodes) and (not len(U) or not np.array_equal(U[where], nodes)):
            raise ValueError("this rank holds A's rows at its subdomains and their ring only")
        return rows[where]

    return Problem("operator", tuple(grid), "const", 0, None, stencil=rows_of)


def sum_over_ranks(M, comm):
    """The sparse M summed over the ranks of ``comm``, on every rank (triplets allgathered)."""
    if comm.Get_size() == 1:
        return sp.csr_matrix(M)
    M = sp.coo_matrix(M)
    parts = comm.allgather((M.row, M.col, M.data))
    r, c, v = (np.concatenate(p) for p in zip(*parts))
    return sp.csr_matrix((v, (r, c)), shape=M.shape)


def sum_at_owners(M, owner_of, own, comm):
    """Rows ``own`` of the sum over ranks of the sparse M (n x n), each rank sending rows to their owners."""
    M = sp.coo_matrix(M)
    dest = owner_of(M.row) if M.nnz else np.zeros(0, dtype=np.int64)
    parts = [(M.row[k], M.col[k], M.data[k]) for k in _by_rank(dest, comm.Get_size())]
    r, c, v = (np.concatenate(x) for x in zip(*comm.alltoall(parts)))
    rows = sp.csr_matrix((v, (np.searchsorted(own, r), c)), shape=(len(own), M.shape[1]))
    rows.sum_duplicates()
    rows.eliminate_zeros()  # as the serial level drops exact zeros
    return rows


def fetch_rows(own_rows, own, nodes, owner_of, comm):
    """CSR rows at the sorted ``nodes`` of a matrix whose rows live at their owners (collective)."""
    nodes = np.asarray(nodes, dtype=np.int64)
    groups = _by_rank(owner_of(nodes), comm.Get_size())
    asks = comm.alltoall([nodes[k] for k in groups])
    replies = []
    for ask in asks:
        block = own_rows[np.searchsorted(own, ask)]
        replies.append((np.diff(block.indptr), block.indices, block.data))
    got = comm.alltoall(replies)
    out_rows, out_cols, out_vals = [], [], []
    for k, (counts, cols, vals) in zip(groups, got):
        out_rows.append(np.repeat(k, counts))
        out_cols.append(cols)
        out_vals.append(vals)
    rows = sp.csr_matrix((np.concatenate(out_vals), (np.concatenate(out_rows), np.concatenate(out_cols))),
                         shape=(len(nodes), own_rows.shape[1]))
    rows.sort_indices()
    return rows


def _by_rank(dest, size):
    """Positions grouped by destination rank (in their order within each): one sort, not a mask per rank."""
    order = np.argsort(dest, kind="stable")
    cuts = np.searchsorted(dest[order], np.arange(size + 1))
    return [order[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
