"""Differentiable communication: the overlap exchange and the coarse Allreduce.

Overlap (halo) exchange. Rank p owns the nodes [a_p, b_p) (the cores of its
subdomains); its subdomains read [lo_p, hi_p) = [a_p - delta, b_p + delta)
clipped. The ghost rows [lo_p, a_p) live on rank p - 1 and [b_p, hi_p) on
rank p + 1 (``check_distribution`` guarantees no further), so one
neighbourhood collective on the 1D Cartesian domain communicator moves them:

    forward   x_own (m_own, B) -> x_ext (m_ext, B)   copy ghosts in
    reverse   y_ext (m_ext, B) -> y_own (m_own, B)   send ghost rows home, add

The two are adjoint, so one autograd Function does both: the backward of
the forward exchange is the reverse exchange, and vice versa.

Coarse reduction. Phi^T f is a sum over ranks of Phi_p^T f_p: an
Allreduce-sum, whose adjoint is again an Allreduce-sum.

Tensors go through host numpy buffers (a GPU tensor is copied), node-major,
so every message is a run of whole contiguous rows.

    mpirun -n 4 python -c "from pddattn.parallel.comm import *"   # (see tests/test_mpi.py)
"""
from __future__ import annotations

import time

import numpy as np
import torch

__all__ = ["OverlapExchange", "halo_exchange", "reverse_exchange", "allreduce_sum", "CommStats"]


class CommStats:
    """What this rank sent (bytes, messages) and the seconds it spent in MPI, by kind."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.bytes = {"halo": 0, "allreduce": 0}
        self.messages = {"halo": 0, "allreduce": 0}
        self.seconds = {"halo": 0.0, "allreduce": 0.0}

    def add(self, kind, nbytes, messages, seconds=0.0):
        self.bytes[kind] += int(nbytes)
        self.messages[kind] += int(messages)
        self.seconds[kind] += seconds


class OverlapExchange:
    """The ghost-row plan of one rank, from the decomposition alone (no setup traffic).

    Parameters
    ----------
    decomposition : Decomposition
    blocks : list of range
        Every domain rank's block of subdomains (``block_range`` for p = 0..P-1).
    rank : int
        This rank's position in the domain group.
    comm : mpi4py.MPI.Cartcomm
        The 1D Cartesian domain communicator (neighbours: rank -+ 1).
    stats : CommStats, optional
    """

    def __init__(self, decomposition, blocks, rank, comm, stats=None):
        d = decomposition

        def own(p):
            return int(d.core_bounds[blocks[p].start]), int(d.core_bounds[blocks[p].stop])

        def ext(p):
            return int(d.starts[blocks[p].start]), int(d.stops[blocks[p].stop - 1])

        P = len(blocks)
        (a, b), (lo, hi) = own(rank), ext(rank)
        self.comm, self.stats = comm, stats or CommStats()
        self.m_own, self.m_ext = b - a, hi - lo
        self.ghost_left, self.ghost_right = a - lo, hi - b
        # Rows of my owned block that my neighbours read as their ghosts.
        self.send_left = ext(rank - 1)[1] - a if rank > 0 else 0
        self.send_right = b - ext(rank + 1)[0] if rank < P - 1 else 0

    def _exchange(self, send_rows, send_counts, recv_counts, batch, dtype):
        """Neighbor_alltoallv of row blocks: [to left, to right] -> [from left, from right]."""
        scounts = [c * batch for c in send_counts]
        rcounts = [c * batch for c in recv_counts]
        send = np.ascontiguousarray(send_rows, dtype=dtype).reshape(-1)
        recv = np.empty(sum(rcounts), dtype=dtype)
        t0 = time.perf_counter()
        self.comm.Neighbor_alltoallv([send, (scounts, [0, scounts[0]])], [recv, (rcounts, [0, rcounts[0]])])
        self.stats.add("halo", send.nbytes, sum(1 for c in scounts if c), time.perf_counter() - t0)
        left = recv[: rcounts[0]].reshape(recv_counts[0], batch)
        right = recv[rcounts[0]:].reshape(recv_counts[1], batch)
        return left, right

    def forward(self, x):
        """x_own (m_own, B) -> x_ext (m_ext, B): ghost rows copied in from the neighbours."""
        xs = x.detach().cpu().numpy()
        batch = xs.shape[1]
        send = np.concatenate([xs[: self.send_left], xs[self.m_own - self.send_right:]])
        left, right = self._exchange(send, (self.send_left, self.send_right),
                                     (self.ghost_left, self.ghost_right), batch, xs.dtype)
        as_t = lambda a: torch.from_numpy(a).to(x.device)  # noqa: E731
        return torch.cat([as_t(left), x, as_t(right)])

    def reverse(self, y):
        """y_ext (m_ext, B) -> y_own (m_own, B): ghost rows sent to their owners and added."""
        ys = y.detach().cpu().numpy()
        batch = ys.shape[1]
        send = np.concatenate([ys[: self.ghost_left], ys[self.m_ext - self.ghost_right:]])
        left, right = self._exchange(send, (self.ghost_left, self.ghost_right),
                                     (self.send_left, self.send_right), batch, ys.dtype)
        out = y[self.ghost_left: self.ghost_left + self.m_own].clone()
        if self.send_left:
            out[: self.send_left] += torch.from_numpy(left).to(y.device)
        if self.send_right:
            out[self.m_own - self.send_right:] += torch.from_numpy(right).to(y.device)
        return out


class _Exchange(torch.autograd.Function):
    """The overlap exchange in either direction; its backward is the other direction."""

    @staticmethod
    def forward(ctx, x, plan, reverse):
        ctx.plan, ctx.reverse = plan, reverse
        return plan.reverse(x) if reverse else plan.forward(x)

    @staticmethod
    def backward(ctx, grad):
        g = grad.contiguous()
        return (ctx.plan.forward(g) if ctx.reverse else ctx.plan.reverse(g)), None, None


def halo_exchange(x, plan):
    """Differentiable x_own -> x_ext (backward: reverse exchange with summation)."""
    return _Exchange.apply(x, plan, False)


def reverse_exchange(y, plan):
    """Differentiable y_ext -> y_own with ghost contributions summed (backward: halo exchange)."""
    return _Exchange.apply(y, plan, True)


def _allreduce_tensor(x, comm, stats):
    from mpi4py import MPI
    buf = np.ascontiguousarray(x.detach().cpu().numpy()).copy()
    t0 = time.perf_counter()
    comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
    if stats is not None:
        stats.add("allreduce", buf.nbytes, 1, time.perf_counter() - t0)
    return torch.from_numpy(buf).to(x.device)


class _AllreduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, comm, stats):
        ctx.comm, ctx.stats = comm, stats
        return _allreduce_tensor(x, comm, stats)

    @staticmethod
    def backward(ctx, grad):
        return _allreduce_tensor(grad, ctx.comm, ctx.stats), None, None


def allreduce_sum(x, comm, stats=None):
    """Differentiable Allreduce-sum over ``comm`` (its adjoint is itself)."""
    if comm.Get_size() == 1:
        return x
    return _AllreduceSum.apply(x, comm, stats)
