"""DD attention distributed over the ranks of a domain group.

Each rank holds some subdomains (their Q_i, K_i; ``subdomain_holdings``)
and applies

    y_own = reverse_exchange( local_term( halo_exchange(x_own) ) ) + coarse term

where ``local_term`` is the serial level's own batched kernel: this module
adds communication and nothing else. :class:`DistributedLevel` is one level
spread over the ranks; :class:`DistributedDDAttention` is the first level of
the whole operator (levels below it spread while each has a subdomain per
rank, then replicated). A rank's input and output are the
rows of its own nodes, ``own_rows`` (sorted global indices; a contiguous
range for intervals and algebraic decompositions).

The coarse term Phi M_1^-1 Phi^T x:
- two levels (or a coarse level with fewer subdomains than ranks): Phi^T x
  is an Allreduce and the coarse block (Q_0 K_0^T, or the whole coarse
  hierarchy) is replicated on every rank;
- more levels: the coarse level is itself a DistributedDDAttention over the
  same ranks, each owning the cores of its coarse subdomains. Phi^T x is
  summed into the owners of the coarse rows by a reverse ghost exchange (a
  rank contributes to every coarse row its fine rows touch through Phi),
  and M_1^-1 c comes back to the fine rows by a forward one: the same
  exchange code, planned from Phi's sparsity. Only the top level is
  replicated.

    mpirun -n 4 python -c "
    from pddattn import intervals
    from pddattn.parallel import Layout
    from pddattn.parallel.operator import DistributedDDAttention
    import torch
    model = DistributedDDAttention(intervals(4095, 64, 2), r=8, layout=Layout())
    y = model.matvec(torch.randn(len(model.own_rows), 16))   # this rank's rows of M^-1 x
    "
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigurationError
from ..kernels import sparse_pair
from ..level import DDLevel
from ..operators import DDAttention, level_of
from .comm import CommStats, allreduce_sum
from .ghosts import GhostExchange, halo_exchange, reverse_exchange
from .layout import check_distribution, subdomain_holdings
from .rows import RowOperator

__all__ = ["DistributedLevel", "DistributedDDAttention"]


class DistributedLevel(DDLevel):
    """A DD-attention level whose subdomains are spread over ``layout.domain_comm``.

    Parameters
    ----------
    decomposition : Decomposition
    layout : Layout
        The MPI layout; this rank holds ``layout.holdings(decomposition)``.
    **kwargs
        As for :class:`~pddattn.level.DDLevel` (r, r0, symmetric, init, ...).
        Initial factors equal the serial model's with the same seed.
    """

    spread = True

    def __init__(self, decomposition, *, layout, **kwargs):
        check_distribution(decomposition, layout.world_size, layout.data_size)
        holdings = subdomain_holdings(decomposition, layout.domain_size)
        stats = CommStats()
        plan = decomposition.exchange_plan(holdings, layout.domain_rank, layout.domain_comm, stats)
        super().__init__(decomposition, subdomains=holdings[layout.domain_rank], rows=plan,
                         comm=layout.domain_comm, **kwargs)
        self.layout, self.stats, self.plan = layout, stats, plan
        self.transfer = self._transfer_plan() if self.next_level is not None and self.next_level.spread else None

    @property
    def distributes_below(self):
        """Whether the level below is spread over the ranks (then it has its own transfer plan)."""
        return self.transfer is not None

    def _take_values(self, decomposition, problem):
        self._free_rows()  # A's products follow the new values
        plan = getattr(decomposition, "plan", None)
        if plan is not None and plan is not self.plan:  # a coarse level's share rebuilt on the new values:
            plan.free()                                  # the same structure, so this level keeps its plan
            decomposition.plan = self.plan
        super()._take_values(decomposition, problem)

    def _free_rows(self):
        if getattr(self, "_a_rows", None) is not None:
            self._a_rows.free()
            self._a_rows = None

    def _release(self):
        """This level's exchange plans' communicators and its factorizations."""
        super()._release()
        self.plan.free()
        self._free_rows()
        if self.transfer is not None:
            self.transfer.free()

    def _transfer_plan(self):
        """Fine rows -> coarse rows: each rank reads the coarse rows its fine rows' Phi touches."""
        d, coarse = self.decomposition, self.next_level
        reads = np.unique(d.phi_rows(self.own_rows).indices)
        return GhostExchange.from_reads(coarse.own_rows, reads, coarse.owner_of, self.layout.domain_comm, CommStats())

    @property
    def input_size(self):
        return self.plan.m_own

    @property
    def own_range(self):
        """(lo, hi) when the own rows are the range lo..hi-1 (intervals, algebraic); else ValueError."""
        own = self.own_rows
        if len(own) and own[-1] - own[0] + 1 != len(own):
            raise ValueError("this rank's rows are not a contiguous range; use own_rows")
        return (int(own[0]), int(own[-1]) + 1) if len(own) else (0, 0)

    def coarse_basis(self):
        """(Phi, Phi^T) on the own rows; columns are the coarse rows' places in the transfer's x_ext."""
        if self.transfer is None:
            return super().coarse_basis()
        key = (self.weight.dtype, self.weight.device)
        if self._phi is None or self._phi[0] != key:
            own = self.decomposition.phi_rows(self.own_rows).tocoo()
            cols = self.transfer.positions(own.col)
            self._phi = (key, sparse_pair(own.row, cols, own.data, (own.shape[0], self.transfer.m_ext), *key))
        return self._phi[1]

    def restrict(self, x_own):
        """Phi^T x summed over ranks: to the owners of the coarse rows, or (replicated below) to every rank."""
        c = super().restrict(x_own)
        if self.transfer is None:
            return allreduce_sum(c, self.layout.domain_comm, self.stats)
        return reverse_exchange(c, self.transfer)  # partial sums to owners

    def interpolate(self, z):
        """Phi z from the coarse rows this rank's fine rows read (their ghosts first, when distributed)."""
        return super().interpolate(z if self.transfer is None else halo_exchange(z, self.transfer))

    def owner_of(self, nodes):
        """The domain rank owning each global node: the holder of its core."""
        d = self.decomposition
        if getattr(self, "_holder", None) is None:
            self._holder = np.empty(d.N, dtype=np.int64)
            for rank, held in enumerate(subdomain_holdings(d, self.layout.domain_size)):
                self._holder[held] = rank
        return self._holder[d.core_of(nodes)]

    def operator_rows(self):
        """A x on this rank's rows (parallel/rows.py), built once: the condition loss's products with A."""
        if getattr(self, "_a_rows", None) is None:
            own = self.own_rows
            self._a_rows = RowOperator(self.problem.rows(own), own, self.owner_of, self.layout.domain_comm)
        return self._a_rows

    @property
    def ext_nodes(self):
        """The global nodes of the rows of x_ext: the own rows, then the ghosts (the exchange's order)."""
        return np.concatenate([self.plan.own, self.plan.ghosts])

    def local_matvec(self, x, transpose=False):
        """This rank's rows of the one-level part for its own rows x: ghosts in, local term, contributions home."""
        return reverse_exchange(self.local_term(halo_exchange(x, self.plan), transpose), self.plan)

    def dense(self):
        raise NotImplementedError("dense() needs the whole operator; load the checkpoint serially")


class DistributedDDAttention(DistributedLevel, DDAttention):
    """DDAttention whose subdomains are spread over ``layout.domain_comm``: its first level, and every
    level below while it has a subdomain per rank (from the first that has not, replicated).

    Parameters
    ----------
    decomposition : Decomposition
    layout : Layout
    **kwargs
        As for :class:`DDAttention` (r, r0, symmetric, init, levels, ...).

    Notes
    -----
    Parameter names, shapes per subdomain and natural scales are the serial
    ones, so optimiser, checkpoints and schedules need no special case.
    """

    def __init__(self, decomposition, *, layout, **kwargs):
        super().__init__(decomposition, layout=layout, level_kinds=lambda below: _kinds(below, layout), **kwargs)

    @property
    def distributed_levels(self):
        """The level operators spread over the ranks: this one and those below it while they are."""
        return [m for m in self.level_operators if m.spread]

    def level_stats(self):
        """[(level, CommStats of its ghost exchange, CommStats of its transfer to the next level)]."""
        return [(level, m.stats, m.transfer.stats if m.transfer is not None else None)
                for level, m in enumerate(self.distributed_levels)]

    def traffic_model(self, batch, itemsize=8):
        """Bytes this rank sends per error-loss training step, from the exchange plans: {halo, allreduce}.

        A level's ghost exchange: forward (sent rows) and reverse (ghosts), and the
        reverse's adjoint in the backward pass (sent rows again; the data needs no
        gradient). A transfer to the next level: partial sums out (ghosts), the
        coarse result in (sent), and that forward exchange's adjoint (ghosts). The
        replicated top: Phi^T f in one Allreduce, then the gradients of its factors.
        """
        halo = 0
        for model in self.distributed_levels:
            p = model.plan
            halo += (2 * sum(p.send_counts) + len(p.ghosts)) * batch * itemsize
            if model.transfer is not None:
                halo += (sum(model.transfer.send_counts) + 2 * len(model.transfer.ghosts)) * batch * itemsize
        allreduce = 0
        if model.coarse and model.decomposition.coarse_size and self.layout.domain_size > 1:
            top = model.decomposition.coarse_size
            replicated = sum(q.numel() for name, q in self.named_parameters() if name in self.replicated_parameters())
            allreduce = (top * batch + replicated) * itemsize
        return {"halo": halo, "allreduce": allreduce}

    # Global <-> local layout of parameter-shaped tensors (checkpoints, optimiser state).
    def _owner_of(self, name):
        """(the level a parameter belongs to, and whether every rank holds it whole)."""
        depth, own = level_of(name)
        level = self.level_operators[depth]
        return level, not level.spread or own in ("Q0", "K0")

    def to_global(self, name, tensor):
        """Gather a local (N_p, L, r) tensor to the domain root; replicated ones are already whole."""
        level, replicated = self._owner_of(name)
        if replicated:
            return tensor
        parts = level.layout.domain_comm.gather((level.held, tensor.detach().cpu()), root=0)
        if parts is None:
            return None
        whole = torch.empty((level.decomposition.N,) + tuple(tensor.shape[1:]), dtype=tensor.dtype)
        for held, part in parts:
            whole[torch.as_tensor(held)] = part
        return whole

    def local_part(self, name):
        """(held subdomains, this rank's rows) of a distributed parameter's layout; None when replicated.

        What a sharded checkpoint stores per rank (checkpoint.py): the held
        subdomains' rows of the (N, L, r) tensors of each distributed level.
        """
        level, replicated = self._owner_of(name)
        return None if replicated else level.held

    def from_global(self, name, tensor):
        level, replicated = self._owner_of(name)
        if replicated:
            return tensor
        return tensor[torch.as_tensor(level.held, device=tensor.device)]


def _kinds(below, layout):
    """Distributed levels while each has a subdomain per rank; from the first that has not, replicated."""
    out, spread = [], True
    for level in below:
        try:
            check_distribution(level.decomposition, layout.world_size, layout.data_size)
        except ConfigurationError:
            spread = False
        out.append((DistributedLevel, {"layout": layout}) if spread else (DDLevel, {}))
    return out
