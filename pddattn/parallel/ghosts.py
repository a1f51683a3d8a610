"""The ghost exchange, computed from a decomposition's index sets alone.

Rank p holds some subdomains. It *owns* the nodes of their cores and *reads*
the nodes of the subdomains themselves; a read node it does not own is a
ghost, owned by the rank whose subdomain has that node in its core. Every
rank holds the decomposition, so each works out, with no setup traffic,

- its own rows (sorted) and its ghosts (sorted by owner, then node): the
  local vector x_ext = [x_own; x_ghost];
- for every other rank q, the rows of x_own that q reads as ghosts.

The ranks that share rows form a distributed-graph communicator (symmetric:
sources = destinations = the neighbours), and one MPI_Neighbor_alltoallv
moves all ghost rows:

    forward   x_own (m_own, B) -> x_ext (m_ext, B)   ghosts copied in
    reverse   y_ext (m_ext, B) -> y_own (m_own, B)   ghost rows sent home, added

The two are adjoint, so one autograd Function serves both: the backward of
one direction is the other. The same code serves intervals, boxes on a 2D
process grid and algebraic decompositions.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from .comm import CommStats

__all__ = ["GhostExchange", "halo_exchange", "reverse_exchange", "owners"]


def owners(decomposition, holdings):
    """owner[v]: the rank whose held subdomain has node v in its core."""
    d = decomposition
    owner = np.full(d.n, -1, dtype=np.int64)
    for p, held in enumerate(holdings):
        for i in held:
            owner[d.cores[i]] = p
    return owner


class GhostExchange:
    """One rank's exchange plan: own rows, ghosts, and the rows each other rank reads.

    Parameters
    ----------
    owner : int array (n,)
        The rank owning each row.
    reader, node : int arrays
        Pairs (rank, row): rank ``reader`` reads ``row`` (repeats allowed).
    rank : int
        This rank's position in the group.
    comm : mpi4py.MPI.Comm or None
        The group's communicator (None: plan only, for the traffic model).
    stats : CommStats, optional

    Attributes
    ----------
    own : int array
        This rank's own rows, sorted (rows of x_own).
    ghosts : int array
        Its ghost rows in x_ext order (after the own rows).
    neighbours : list of int
        Ranks it exchanges with, sorted.
    send_rows : int array
        Rows of x_own sent, grouped by neighbour (``send_counts``).
    recv_counts : list of int
        Ghosts received from each neighbour.

    See :meth:`of_decomposition` for the plan of a decomposition's subdomains.
    """

    def __init__(self, owner, reader, node, rank, comm=None, stats=None):
        self.own = np.flatnonzero(owner == rank)
        reader, node = np.asarray(reader, dtype=np.int64), np.asarray(node, dtype=np.int64)
        mine = (reader == rank) | (owner[node] == rank)  # only reads by this rank or of its rows matter
        # Each read once, sorted by reader then row: one integer key per pair sorts fast.
        reader, node = np.divmod(np.unique(reader[mine] * len(owner) + node[mine]), len(owner))
        mine = (reader == rank) & (owner[node] != rank)
        ghosts = node[mine]
        self.ghosts = ghosts[np.lexsort((ghosts, owner[ghosts]))]     # by owner, then row
        sent = (owner[node] == rank) & (reader != rank)
        to, rows = reader[sent], node[sent]                          # sorted by reader, then row
        self.neighbours = sorted(set(to.tolist()) | set(owner[self.ghosts].tolist()))
        self.send_counts = [int((to == q).sum()) for q in self.neighbours]
        self.recv_counts = [int((owner[self.ghosts] == q).sum()) for q in self.neighbours]
        self.send_rows = np.searchsorted(self.own, rows)
        self.m_own, self.m_ext = len(self.own), len(self.own) + len(self.ghosts)
        self.stats = stats or CommStats()
        self.comm = None
        if comm is not None and comm.Get_size() > 1:
            self.comm = comm.Create_dist_graph_adjacent(self.neighbours, self.neighbours, reorder=False)

    def free(self):
        """Release the neighbourhood communicator (the plan is unusable after)."""
        if self.comm is not None:
            self.comm.Free()
            self.comm = None

    @classmethod
    def of_decomposition(cls, decomposition, holdings, rank, comm=None, stats=None):
        """The plan of held subdomains: a rank owns its cores and reads its subdomains."""
        d = decomposition
        reader = np.concatenate([np.full(len(d.subdomains[i]), p) for p, held in enumerate(holdings) for i in held])
        node = np.concatenate([d.subdomains[i] for held in holdings for i in held])
        return cls(owners(d, holdings), reader, node, rank, comm, stats)

    @classmethod
    def from_reads(cls, own, reads, owner_of, comm=None, stats=None):
        """The plan of one rank that knows only its own rows and the rows it reads.

        Each rank tells the owners of its ghosts which rows it reads (one
        Alltoall of counts, one Alltoallv of row numbers), so no rank needs
        another's index sets or an owner array of all n rows.

        Parameters
        ----------
        own : int array
            This rank's rows, sorted.
        reads : int array
            The rows it reads (its own among them or not), any order, repeats allowed.
        owner_of : callable
            Global rows -> their owning ranks (arithmetic: cores from counts).
        comm : mpi4py.MPI.Comm or None
        """
        plan = cls.__new__(cls)
        plan.own = np.asarray(own, dtype=np.int64)
        reads = np.unique(np.asarray(reads, dtype=np.int64))
        ghosts = reads[~np.isin(reads, plan.own, assume_unique=True)]
        owner = np.asarray(owner_of(ghosts), dtype=np.int64)
        order = np.lexsort((ghosts, owner))
        plan.ghosts, owner = ghosts[order], owner[order]
        size = 1 if comm is None else comm.Get_size()
        recv = np.bincount(owner, minlength=size).astype(np.int64)
        if size > 1:
            from mpi4py import MPI
            send = np.empty(size, dtype=np.int64)
            comm.Alltoall(recv, send)  # how many of my rows each rank reads
            asked = np.empty(int(send.sum()), dtype=np.int64)
            comm.Alltoallv([plan.ghosts, (recv, np.cumsum(recv) - recv), MPI.INT64_T],
                           [asked, (send, np.cumsum(send) - send), MPI.INT64_T])
        else:
            send, asked = np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64)
        plan.neighbours = sorted(set(np.flatnonzero(send).tolist()) | set(np.flatnonzero(recv).tolist()))
        plan.send_counts = [int(send[q]) for q in plan.neighbours]
        plan.recv_counts = [int(recv[q]) for q in plan.neighbours]
        plan.send_rows = np.searchsorted(plan.own, asked)  # grouped by reader, rows sorted within
        if len(asked) and not np.array_equal(plan.own[np.minimum(plan.send_rows, len(plan.own) - 1)], asked):
            raise ValueError("a rank reads a row its owner does not have")
        plan.m_own, plan.m_ext = len(plan.own), len(plan.own) + len(plan.ghosts)
        plan.stats = stats or CommStats()
        plan.comm = None
        if comm is not None and size > 1:
            plan.comm = comm.Create_dist_graph_adjacent(plan.neighbours, plan.neighbours, reorder=False)
        return plan

    def positions(self, nodes):
        """Rows of x_ext holding the given global nodes (each must be own or ghost)."""
        if getattr(self, "_sorted", None) is None:  # a plan's rows never change: sort them once
            local = np.concatenate([self.own, self.ghosts])
            self._sorted = (local, np.argsort(local))
        local, order = self._sorted
        nodes = np.asarray(nodes, dtype=np.int64)
        where = order[np.minimum(np.searchsorted(local, nodes, sorter=order), max(len(local) - 1, 0))]
        if not np.array_equal(local[where], nodes):
            raise ValueError("a node is neither owned nor a ghost of this rank")
        return where

    def _alltoallv(self, send, send_counts, recv_counts, batch):
        scounts = [c * batch for c in send_counts]
        rcounts = [c * batch for c in recv_counts]
        recv = np.empty(sum(rcounts), dtype=send.dtype)
        t0 = time.perf_counter()
        if self.comm is not None:
            self.comm.Neighbor_alltoallv([send.reshape(-1), (scounts, np.cumsum([0] + scounts)[:-1])],
                                         [recv, (rcounts, np.cumsum([0] + rcounts)[:-1])])
        self.stats.add("halo", send.nbytes, sum(1 for c in scounts if c), time.perf_counter() - t0)
        return recv.reshape(-1, batch)

    def forward(self, x):
        """x_own (m_own, B) -> x_ext (m_ext, B): ghost rows copied in from their owners."""
        xs = x.detach().cpu().numpy()
        ghosts = self.ghost_rows(xs[self.send_rows])
        return torch.cat([x, torch.from_numpy(ghosts).to(x.device)])

    def ghost_rows(self, sent):
        """The ghost rows (len(ghosts), B) from each rank's rows at its ``send_rows`` (numpy (len, B)):
        what :meth:`forward` appends, for callers that have only the rows others read."""
        sent = np.ascontiguousarray(sent)
        return self._alltoallv(sent, self.send_counts, self.recv_counts, sent.shape[1])

    def reverse(self, y):
        """y_ext (m_ext, B) -> y_own (m_own, B): ghost rows sent to their owners and added."""
        ys = y.detach().cpu().numpy()
        send = np.ascontiguousarray(ys[self.m_own:])
        back = self._alltoallv(send, self.recv_counts, self.send_counts, ys.shape[1])
        index = torch.as_tensor(self.send_rows, device=y.device)
        return y[: self.m_own].index_add(0, index, torch.from_numpy(back).to(y.device))

    def traffic(self, batch, itemsize=8):
        """(bytes, messages) this rank sends in one forward exchange of ``batch`` columns."""
        return sum(self.send_counts) * batch * itemsize, sum(1 for c in self.send_counts if c)


class _Exchange(torch.autograd.Function):
    """The ghost exchange in either direction; its backward is the other direction."""

    @staticmethod
    def forward(ctx, x, plan, reverse):
        ctx.plan, ctx.reverse = plan, reverse
        return plan.reverse(x) if reverse else plan.forward(x)

    @staticmethod
    def backward(ctx, grad):
        g = grad.contiguous()
        return (ctx.plan.forward(g) if ctx.reverse else ctx.plan.reverse(g)), None, None


def halo_exchange(x, plan):
    """Differentiable x_own -> x_ext (backward: the reverse exchange, summing)."""
    return _Exchange.apply(x, plan, False)


def reverse_exchange(y, plan):
    """Differentiable y_ext -> y_own with ghost contributions summed (backward: halo exchange)."""
    return _Exchange.apply(y, plan, True)
