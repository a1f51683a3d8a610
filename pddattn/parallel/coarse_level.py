"""A rank's share of a coarse level: A_l's own rows, its tiles' subdomains, Phi_(l+1)'s own rows.

The level above leaves each rank its product Phi_own^T A_own,ring Phi_ring
(``DecompositionShare.A0_local``). Here, with no rank holding A_l whole:

1. the coarse level's cores are tiles of the cores above (tiling.py), from
   the replicated anchors and arithmetic; the ranks hold contiguous blocks
   of tiles, as they hold algebraic row blocks;
2. each rank's products are summed at the owners of their rows (one
   Alltoall): A_l's rows live where their tiles are held;
3. a rank grows its tiles through A_l's graph by asking the owners for the
   rows it reaches (one Alltoall per overlap layer), reads the rows of its
   subdomains and ring the same way, and hands them to the one share
   builder (setup.finish_share): exchange plan, weights, harmonic rows of
   Phi_(l+1) from local solves, A_(l+1) again as per-rank products.

The serial hierarchy (hierarchy.coarse_levels with partition 'tiles') builds
the same cores, subdomains and basis from the whole A_l: the one-rank case,
equal to rounding (tests/test_mpi_levels.py).
"""
from __future__ import annotations

import numpy as np

from ..geometry import TileMap
from ..problems.families import principal_block
from .setup import finish_share, share_on_values
from .share import fetch_rows, sum_at_owners

__all__ = ["TileMap", "sum_at_owners", "fetch_rows", "tiled_share", "tiled_values"]


def _grow(cores, own_rows, own, delta, owner_of, comm):
    """Each core grown ``delta`` steps through the graph, one collective row fetch per step."""
    from mpi4py import MPI
    subs = [np.asarray(c, dtype=np.int64) for c in cores]
    rounds = comm.allreduce(delta if cores else 0, op=MPI.MAX)
    for _ in range(rounds):
        reach = np.unique(np.concatenate(subs)) if subs else np.zeros(0, dtype=np.int64)
        rows = fetch_rows(own_rows, own, reach, owner_of, comm)
        subs = [np.union1d(s, rows[np.searchsorted(reach, s)].indices) for s in subs]
    return subs


def tiled_share(share, cores, part, grid, delta, coarse, comm):
    """A rank's share of the coarse level below ``share``: tiles ``cores`` of its coarse rows (module docstring).

    Parameters
    ----------
    share : DecompositionShare
        The level above, with its per-rank Galerkin product ``A0_local``.
    cores, part : list of int arrays, int array
        The tiles' rows and each row's tile (hierarchy._tiles).
    grid : tuple
        The tile grid (the next level's tiles are tiles of it).
    delta : int
        Overlap in steps of A_l's graph; 0 when one step would cover a subdomain over all rows.
    coarse : str
        The coarse level's own coarse space (harmonic or none).

    Returns
    -------
    (share, rows, U): the level's share, and A_l's rows at U (CSR, global columns).
    """
    from mpi4py import MPI
    tmap = TileMap(part, cores, comm.Get_size())
    held = tmap.holdings[comm.Get_rank()]
    mine = [tmap.core(i) for i in held]
    own = np.sort(np.concatenate(mine)) if mine else np.zeros(0, dtype=np.int64)
    own_rows = sum_at_owners(share.A0_local, tmap.owner_of, own, comm)
    subs = _grow(mine, own_rows, own, delta, tmap.owner_of, comm)
    largest = comm.allreduce(max((len(s) for s in subs), default=0), op=MPI.MAX)
    if tmap.N > 1 and largest == tmap.n and delta:  # as the serial level: no overlap rather than one subdomain
        subs, delta = [np.asarray(c, dtype=np.int64) for c in mine], 0
    ring = np.union1d(own, own_rows.indices) if coarse != "none" else own
    U = np.unique(np.concatenate(subs + [ring]))
    rows = fetch_rows(own_rows, own, U, tmap.owner_of, comm)
    spec = {"kind": "algebraic", "N": tmap.N, "delta": delta, "pou": "count", "coarse": coarse, "partition": "tiles"}
    level = finish_share(spec, tmap, comm, mine, subs, ring, U, rows)
    level.core_grid = tuple(grid)
    return level, rows, U


def tiled_values(above, level, comm):
    """The coarse level's share ``level`` on new values of the level above (``above``, its share on them).

    Its structure is kept (tiles, subdomains, weights, exchange plans, the
    harmonic plan): A_l's own rows are summed anew at their owners, its rows
    at U fetched anew, and Phi_(l+1)'s rows and this rank's term of A_(l+1)
    made from them (setup.share_on_values). Collective; ValueError on every
    rank alike when A_l's pattern changed (an entry that cancelled exactly).

    Returns
    -------
    (share, rows, U), as :func:`tiled_share`.
    """
    tmap, U = level.core_map, level.values_plan.U
    own_rows = sum_at_owners(above.A0_local, tmap.owner_of, level.own, comm)
    rows = fetch_rows(own_rows, level.own, U, tmap.owner_of, comm)
    return share_on_values(level, principal_block(rows, U)), rows, U
