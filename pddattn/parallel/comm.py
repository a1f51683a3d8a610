"""Communication counters and the differentiable coarse Allreduce.

Coarse reduction: Phi^T f is a sum over ranks of Phi_p^T f_p, an
Allreduce-sum whose adjoint is again an Allreduce-sum. Tensors go through
host numpy buffers (a GPU tensor is copied). The ghost exchange is in
ghosts.py.
"""
from __future__ import annotations

import time

import numpy as np
import torch

__all__ = ["allreduce_sum", "max_over", "CommStats", "OneRank"]


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


def max_over(value, comm=None):
    """The maximum of a number over the ranks of ``comm`` (None or one rank: the value, without MPI)."""
    if comm is None or comm.Get_size() == 1:
        return value
    from mpi4py import MPI
    return comm.allreduce(value, op=MPI.MAX)


class OneRank:
    """The communicator of one rank, without MPI: the share builder's serial case (parallel/setup.one_rank).

    It answers the collectives the builder makes (a rank's own data back),
    so serial runs never start MPI.
    """

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 1

    def allgather(self, obj):
        return [obj]

    def alltoall(self, objs):
        return list(objs)

    def allreduce(self, obj, op=None):
        return obj

    def bcast(self, obj, root=0):
        return obj
