"""DD attention distributed over the ranks of a domain group.

Each rank holds a contiguous block of subdomains (their Q_i, K_i) and a copy
of the coarse factors Q_0, K_0, and applies

    y_own = reverse_exchange( local_term( halo_exchange(x_own) ) )
          + Phi_own Q_0 K_0^T allreduce( Phi_own^T x_own )

where ``local_term`` and ``coarse_term`` are the serial DDAttention's own
batched kernels: this class adds communication and nothing else.

    mpirun -n 4 python -c "
    from pddattn import intervals
    from pddattn.parallel import Layout
    from pddattn.parallel.operator import DistributedDDAttention
    import torch
    layout = Layout()
    model = DistributedDDAttention(intervals(4095, 64, 2), r=8, layout=layout)
    lo, hi = model.own_range
    y = model.matvec(torch.randn(hi - lo, 16))     # this rank's rows of M^-1 x
    "
"""
from __future__ import annotations

import torch

from ..operators import DDAttention
from .comm import CommStats, OverlapExchange, allreduce_sum, halo_exchange, reverse_exchange
from .layout import block_range, check_distribution

__all__ = ["DistributedDDAttention"]


class DistributedDDAttention(DDAttention):
    """DDAttention whose subdomains are spread over ``layout.domain_comm``.

    Parameters
    ----------
    decomposition : Decomposition
    layout : Layout
        The MPI layout; this rank holds ``layout.subdomains(N)``.
    **kwargs
        As for :class:`DDAttention` (r, r0, symmetric, coarse, init, ...).
        Initial factors equal the serial model's with the same seed.

    Notes
    -----
    Inputs and outputs are this rank's owned rows, ``own_range``. Parameter
    names, shapes per subdomain and natural scales are the serial ones, so
    optimiser, checkpoints and schedules need no special case.
    """

    def __init__(self, decomposition, *, layout, **kwargs):
        check_distribution(decomposition, layout.world_size, layout.data_size)
        blocks = [block_range(decomposition.N, layout.domain_size, p) for p in range(layout.domain_size)]
        super().__init__(decomposition, subdomains=blocks[layout.domain_rank], **kwargs)
        self.layout, self.stats = layout, CommStats()
        self.plan = OverlapExchange(decomposition, blocks, layout.domain_rank, layout.domain_comm, self.stats)
        self._blocks = blocks

    @property
    def input_size(self):
        lo, hi = self.own_range
        return hi - lo

    def matvec(self, x, transpose=False):
        """This rank's rows of M^-1 x (or M^-T x) for its owned rows x, shape (m_own, B)."""
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
        parts = self.layout.domain_comm.gather(tensor.detach().cpu(), root=0)
        return torch.cat(parts) if parts is not None else None

    def from_global(self, name, tensor):
        if name in self.replicated_parameters():
            return tensor
        return tensor[self.first:self.last]
