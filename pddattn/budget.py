"""Configurations at a parameter budget: DD attention, the global model and the FNO (``compare --budget``).

Each model's size comes from a rule, never from its test error, so that a
comparison at equal parameters is reproducible:

DD attention  the finest decomposition whose cores keep about 16 nodes
              (1D: N <= (n+1)/16 intervals; 2D: N <= (side+1)/4 boxes a
              side) that fits: overlap 1, symmetric factors where A is
              known (A is SPD, so A^-1 is), the coarse block up to half the
              budget and at least a quarter of it or full rank, the local
              rank >= 1 filling the rest up to full rank. Parameters
              k (r sum n_i + r0 n_0), k = 1 symmetric, 2 otherwise: below
              the budget only where every block is at full rank.
global        Q K^T (Q Q^T where DD is symmetric) at the rank nearest the budget.
FNO           width and modes nearest the budget (4 layers), 16 modes preferred.

docs/results.md#dd-attention-the-global-model-and-the-fno has the
benchmark that fixed the DD rule, and the rule it replaced.
"""
from __future__ import annotations

import math

from .fno import FNOOperator
from .hierarchy import build_hierarchy
from .models import decomposition_spec

__all__ = ["dd_at_budget", "global_at_budget", "fno_at_budget"]

FNO_WIDTHS, FNO_MODES = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96), (16, 12, 24, 8)


def dd_at_budget(cfg, problem, budget):
    """(changes, parameters): the DD TrainConfig changes for ``budget`` on ``problem``.

    Parameters
    ----------
    cfg : TrainConfig
        The run's configuration (decomposition kind, coarse space, pou).
    problem : Problem
        The grid (and A, for an algebraic decomposition).
    budget : int
        Parameters to spend.
    """
    symmetric, k = problem.has_operator, (1 if problem.has_operator else 2)
    for N in _finest_first(problem):
        spec = decomposition_spec({**cfg.to_dict(), "subdomains": N, "overlap": 1}, problem)
        d = build_hierarchy(problem, spec).decomposition  # the one place a spec becomes objects
        local, n0, full = int(d.sizes.sum()), d.coarse_size, int(d.sizes.max())
        share = budget // k
        r0 = min(n0, share // 2 // max(n0, 1))
        r = min(full, max(1, (share - n0 * r0) // local))
        r0 = min(n0, (share - r * local) // max(n0, 1))
        if r0 >= 0 and n0 * r0 >= min(n0 * n0, share // 4):
            changes = dict(subdomains=N, rank=r, coarse_rank=r0 if n0 else None, overlap=1, symmetric=symmetric)
            return changes, k * (r * local + n0 * r0)
    raise ValueError(f"no DD configuration fits {budget:,} parameters on {problem.n:,} nodes "
                     f"(rank 1 on the coarsest decomposition needs more)")


def _finest_first(problem):
    """Subdomain counts, powers of two, finest first, down to 2 (2 x 2 boxes in 2D)."""
    if problem.dim == 1:
        top = 2 ** int(math.log2(max((problem.n + 1) // 16, 2)))
        return [top >> j for j in range(int(math.log2(top)))]
    top = 2 ** int(math.log2(max((min(problem.grid) + 1) // 4, 2)))
    return [f"{top >> j}x{top >> j}" for j in range(int(math.log2(top)))]


def global_at_budget(n, budget, symmetric):
    """(rank, parameters) of the global model nearest ``budget`` on ``n`` nodes."""
    k = 1 if symmetric else 2
    r = max(1, round(budget / (k * n)))
    return r, k * n * r


def fno_at_budget(grid, budget):
    """(width, modes, parameters) of the 4-layer FNO nearest ``budget``, preferring 16 modes."""
    best = None
    for m in FNO_MODES:
        if m > max(grid) // 2 + 1:
            continue  # more modes than the grid has
        for w in FNO_WIDTHS:  # parameters grow with the width: stop past the budget (no 100M-weight builds)
            params = FNOOperator(grid, w, m).num_parameters()
            score = abs(math.log(params / budget)) + 0.5 * abs(math.log(m / 16))
            if best is None or score < best[0]:
                best = (score, w, m, params)
            if params > budget:
                break
    if best is None:
        raise ValueError(f"the grid {grid} is too small for an FNO")
    return best[1:]
