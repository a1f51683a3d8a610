"""Communicator layout: a domain x data grid, and who owns which subdomains.

COMM_WORLD (or the ``comm`` given) of size P is split into P_data replicas
of P_domain = P / P_data ranks each. World rank w has domain rank
w mod P_domain and replica w div P_domain, so the ranks of one replica are
consecutive (a node-local domain group when ranks are packed by node).

Rank p of a domain group holds the subdomains ``subdomain_holdings(d,
P_domain)[p]`` (contiguous blocks; boxes of boxes on a 2D process grid) and
owns the nodes of their cores.

    mpirun -n 4 pddattn train --model dd --data-parallel 2   # 2 x 2 grid

Everything that can fail is checked by :func:`check_distribution` from
numbers every rank already has, before any communication, so every rank
raises the same error and nobody waits in a collective.
"""
from __future__ import annotations

import os
import time

import numpy as np
import torch

from ..errors import CollectiveError, ConfigurationError
from .comm import CommStats

__all__ = ["block_range", "process_grid", "subdomain_holdings", "holdings_of", "check_distribution", "Layout", "SerialLayout", "make_layout",
           "launched_under_mpi", "CollectiveError", "ConfigurationError"]

# Environment variables set by common MPI launchers (Open MPI, MPICH/Hydra, PMIx, MVAPICH).
_LAUNCHER_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE")




def launched_under_mpi():
    """True when an MPI launcher started this process (mpirun, srun with PMI, ...)."""
    return any(v in os.environ for v in _LAUNCHER_VARS)


def block_range(count, parts, p):
    """The p-th of ``parts`` balanced contiguous blocks of range(count) (first ones larger)."""
    base, extra = divmod(count, parts)
    start = p * base + min(p, extra)
    return range(start, start + base + (1 if p < extra else 0))


def process_grid(layout, P):
    """(Px, Py) with Px Py = P, Px <= Nx, Py <= Ny, boxes as square as possible; None if none fits."""
    Nx, Ny = layout
    fits = [(Px, P // Px) for Px in range(1, P + 1) if P % Px == 0 and Px <= Nx and P // Px <= Ny]
    if not fits:
        return None
    return min(fits, key=lambda g: (abs(np.log((Nx / g[0]) / (Ny / g[1]))), g[0]))


def subdomain_holdings(decomposition, P):
    """The subdomains each of P domain ranks holds, as index arrays (see :func:`holdings_of`)."""
    d = decomposition
    return holdings_of(d.spec.get("kind"), d.N, getattr(d, "layout", (d.N,)), P)


def holdings_of(kind, N, layout, P):
    """The subdomains each of P domain ranks holds, from the counts alone.

    Intervals and algebraic: balanced contiguous blocks of the N subdomains
    (``block_range``). Boxes (``layout`` = (Nx, Ny)): a Px x Py process grid
    (``process_grid``), rank p = py Px + px holding a box of boxes, as a DMDA
    distributes a grid.
    """
    if kind != "boxes" or P == 1:
        return [np.arange(b.start, b.stop) for b in (block_range(N, P, p) for p in range(P))]
    Nx, Ny = layout
    Px, Py = process_grid(layout, P)
    return [(np.arange(block_range(Ny, Py, py).start, block_range(Ny, Py, py).stop)[:, None] * Nx
             + np.arange(block_range(Nx, Px, px).start, block_range(Nx, Px, px).stop)[None, :]).ravel()
            for py in range(Py) for px in range(Px)]


def check_distribution(decomposition, size, data_parallel):
    """Raise ConfigurationError unless the subdomains distribute over ``size`` ranks.

    Needs: data_parallel divides size; P_domain = size / data_parallel <= N;
    for boxes, a P_domain = Px x Py process grid with Px <= Nx and Py <= Ny.
    The ghost exchange itself has no further limit (any overlap, any layout).
    """
    if isinstance(data_parallel, bool) or not isinstance(data_parallel, (int, np.integer)) or data_parallel < 1:
        raise ConfigurationError(f"--data-parallel must be a positive integer, got {data_parallel!r}")
    if size % data_parallel:
        raise ConfigurationError(f"--data-parallel {data_parallel} does not divide the {size} ranks")
    p_domain = size // data_parallel
    d = decomposition
    if d is None:
        return p_domain
    if p_domain > d.N:
        raise ConfigurationError(
            f"{p_domain} domain ranks but only N={d.N} subdomains; use at most {d.N} ranks per "
            f"replica (or more --subdomains, or --data-parallel)")
    if d.spec.get("kind") == "boxes" and p_domain > 1 and process_grid(d.layout, p_domain) is None:
        Nx, Ny = d.layout
        raise ConfigurationError(
            f"{p_domain} domain ranks do not form a Px x Py process grid over {Nx}x{Ny} boxes (Px <= {Nx}, "
            f"Py <= {Ny}); use a rank count that factors so, or other --subdomains")
    return p_domain


class SerialLayout:
    """The one-process layout: every reduction is the identity. Needs no MPI."""

    world_size = domain_size = data_size = 1
    world_rank = domain_rank = replica = 0
    is_root = True
    comm = domain_comm = data_comm = None

    def __init__(self, data_parallel=1):
        check_distribution(None, 1, data_parallel)

    def holdings(self, decomposition):
        """This rank's subdomains (all of them, serially)."""
        return np.arange(decomposition.N)

    def samples(self, batch):
        return range(0, batch)

    def domain_sum(self, x):
        return x

    def data_sum(self, x):
        return x

    def sync_gradients(self, model):
        pass

    def barrier(self):
        pass

    def free(self):
        pass

    def bcast(self, obj):
        return obj


class Layout(SerialLayout):
    """P = P_domain x P_data grid over ``comm`` (default COMM_WORLD).

    Parameters
    ----------
    data_parallel : int
        P_data, the number of data replicas; must divide the size of comm.
    comm : mpi4py.MPI.Comm, optional
        The communicator to split (COMM_WORLD when None).
    """

    def __init__(self, data_parallel=1, comm=None):
        from mpi4py import MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.world_size, self.world_rank = self.comm.Get_size(), self.comm.Get_rank()
        self.domain_size = check_distribution(None, self.world_size, data_parallel)
        self.data_size = data_parallel
        self.domain_rank, self.replica = self.world_rank % self.domain_size, self.world_rank // self.domain_size
        self.is_root = self.world_rank == 0
        group = self.comm.Split(color=self.replica, key=self.domain_rank)
        self.domain_comm = group  # the ghost exchange builds its own neighbourhood graph on it
        self.data_comm = self.comm.Split(color=self.domain_rank, key=self.replica)
        self.stats = CommStats()  # gradient reductions; the operator counts its own traffic

    def holdings(self, decomposition):
        """The subdomains this rank holds (see ``subdomain_holdings``)."""
        return subdomain_holdings(decomposition, self.domain_size)[self.domain_rank]

    def samples(self, batch):
        if batch % self.data_size:
            raise ConfigurationError(f"--batch {batch} is not divisible by --data-parallel {self.data_size}")
        share = batch // self.data_size
        return range(self.replica * share, (self.replica + 1) * share)

    def domain_sum(self, x):
        """Sum a tensor or array over the domain group (no autograd)."""
        return _allreduce(x, self.domain_comm)

    def data_sum(self, x):
        return _allreduce(x, self.data_comm)

    def sync_gradients(self, model):
        """Sum replicated (coarse) gradients over the domain group; average all over replicas."""
        replicated = set(getattr(model, "replicated_parameters", lambda: ())())
        for name, p in model.named_parameters():
            if p.grad is None:
                continue
            g, t0 = p.grad, time.perf_counter()
            if name in replicated and self.domain_size > 1:
                g = _allreduce(g, self.domain_comm)
                self.stats.add("allreduce", g.numel() * g.element_size(), 1, time.perf_counter() - t0)
            t0 = time.perf_counter()
            if self.data_size > 1:
                g = _allreduce(g, self.data_comm) / self.data_size
                self.stats.add("allreduce", g.numel() * g.element_size(), 1, time.perf_counter() - t0)
            p.grad = g

    def barrier(self):
        self.comm.Barrier()

    def free(self):
        """Release the domain and data communicators split from ``comm``."""
        for name in ("domain_comm", "data_comm"):
            comm = getattr(self, name, None)
            if comm is not None:
                comm.Free()
                setattr(self, name, None)

    def bcast(self, obj):
        return self.comm.bcast(obj, root=0)


def _allreduce(x, comm):
    """Allreduce-sum of a torch tensor or numpy array, returned as the same kind."""
    from mpi4py import MPI
    if comm.Get_size() == 1:
        return x
    if isinstance(x, torch.Tensor):
        buf = x.detach().cpu().numpy().copy()
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        return torch.from_numpy(buf).to(device=x.device)
    buf = np.array(x, dtype=np.float64, copy=True)
    comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
    return buf


def make_layout(data_parallel=1, comm=None):
    """A Layout over ``comm`` when given or when launched by mpirun; else SerialLayout."""
    if comm is None and not launched_under_mpi():
        return SerialLayout(data_parallel)
    return Layout(data_parallel, comm)
