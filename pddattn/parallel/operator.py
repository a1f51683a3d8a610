"""DD attention distributed over the ranks of a domain group.

Each rank holds some subdomains (their Q_i, K_i; ``subdomain_holdings``)
and a copy of the coarse factors Q_0, K_0, and applies

    y_own = reverse_exchange( local_term( halo_exchange(x_own) ) )
          + Phi_own Q_0 K_0^T allreduce( Phi_own^T x_own )

where ``local_term`` and ``coarse_term`` are the serial DDAttention's own
batched kernels: this class adds communication and nothing else. A rank's
input and output are the rows of its own nodes, ``own_rows`` (sorted global
indices; a contiguous range for intervals and algebraic decompositions).

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

import torch

from ..operators import DDAttention
from .comm import CommStats, allreduce_sum
from .ghosts import GhostExchange, halo_exchange, reverse_exchange
from .layout import check_distribution, subdomain_holdings

__all__ = ["DistributedDDAttention"]


class DistributedDDAttention(DDAttention):
    """DDAttention whose subdomains are spread over ``layout.domain_comm``.

    Parameters
    ----------
    decomposition : Decomposition
    layout : Layout
        The MPI layout; this rank holds ``layout.holdings(decomposition)``.
    **kwargs
        As for :class:`DDAttention` (r, r0, symmetric, coarse, init, ...).
        Initial factors equal the serial model's with the same seed.

    Notes
    -----
    Parameter names, shapes per subdomain and natural scales are the serial
    ones, so optimiser, checkpoints and schedules need no special case.
    """

    def __init__(self, decomposition, *, layout, **kwargs):
        check_distribution(decomposition, layout.world_size, layout.data_size)
        holdings = subdomain_holdings(decomposition, layout.domain_size)
        stats = CommStats()
        plan = GhostExchange(decomposition, holdings, layout.domain_rank, layout.domain_comm, stats)
        super().__init__(decomposition, subdomains=holdings[layout.domain_rank], rows=plan, **kwargs)
        self.layout, self.stats, self.plan = layout, stats, plan

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

    def matvec(self, x, transpose=False):
        """This rank's rows of M^-1 x (or M^-T x) for its own rows x, shape (m_own, B)."""
        y = reverse_exchange(self.local_term(halo_exchange(x, self.plan), transpose), self.plan)
        if self.coarse and self.decomposition.coarse_size:
            comm, stats = self.layout.domain_comm, self.stats
            y = y + self.coarse_term(x, transpose, reduce=lambda c: allreduce_sum(c, comm, stats))
        return y

    def dense(self):
        raise NotImplementedError("dense() needs the whole operator; load the checkpoint serially")

    # Global <-> local layout of parameter-shaped tensors (checkpoints, optimiser state).
    def to_global(self, name, tensor):
        """Gather a local (N_p, L, r) tensor to the domain root; coarse ones are already whole."""
        if name in self.replicated_parameters():
            return tensor
        parts = self.layout.domain_comm.gather((self.held, tensor.detach().cpu()), root=0)
        if parts is None:
            return None
        whole = torch.empty((self.decomposition.N,) + tuple(tensor.shape[1:]), dtype=tensor.dtype)
        for held, part in parts:
            whole[torch.as_tensor(held)] = part
        return whole

    def from_global(self, name, tensor):
        if name in self.replicated_parameters():
            return tensor
        return tensor[torch.as_tensor(self.held, device=tensor.device)]
