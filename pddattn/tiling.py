"""Coarse subdomains as tiles of the cores below: a partition every rank computes from counts.

A coarse level's rows are the coarse functions of the level above, and each
function has a *home core* there: the core holding its anchor node (the first
node of a GDSW interface piece, the node a hat or bilinear function peaks
at; a Nicolaides function's own subdomain). The cores of a level lie on a
grid (boxes: Nx x Ny; intervals and row blocks: N in a line), so the coarse
subdomains are *tiles* of that grid, Tx x Ty blocks of near-equal size
(``split_sizes``), and a coarse row belongs to the tile of its home core.

Unlike a graph partition of the whole coarse operator (decomposition._graph_parts),
this needs no global graph: a rank finds the tile of any coarse row from the
anchors (one allgather of first nodes, made anyway to number the interface
pieces) and arithmetic, so each rank builds only its tiles' share of the
coarse level, and the serial hierarchy is the one-rank case of the same rule.
Tiles are compact patches of the level above, so they are what the graph
partition aimed for (the iterations of docs/results.md, "Three levels").
"""
from __future__ import annotations

import numpy as np

from .geometry import split_sizes

__all__ = ["anchor_cores", "tile_grid", "tile_of_core", "tile_cores"]


def anchor_cores(d):
    """The home core (in d's numbering) of each of d's coarse functions.

    Parameters
    ----------
    d : DecompositionLike
        With its coarse space: its ``anchors`` (every interface piece's first
        node), ``core_bounds`` or ``box_bounds`` and ``core_of``.
    """
    kind = d.spec.get("coarse")
    if kind == "nicolaides":
        return np.arange(d.coarse_size, dtype=np.int64)
    if kind == "hat":
        return d.core_of(np.asarray(d.core_bounds[1:-1], dtype=np.int64))
    if kind == "q1":
        (bx, by), nx = d.box_bounds, d.grid[0]
        return d.core_of((by[1:-1][:, None] * nx + bx[1:-1][None, :]).ravel())
    if kind == "harmonic":
        return d.core_of(d.anchors)
    raise ValueError(f"a {kind!r} coarse space has no home cores to tile; coarse levels need "
                     "harmonic, nicolaides, hat or q1 above them")


def tile_grid(grid, count):
    """About ``count`` tiles of a core grid, keeping its aspect: (Tx, Ty) or (T,), each at least 1."""
    grid = tuple(int(g) for g in grid)
    if len(grid) == 1:
        return (int(min(max(count, 1), grid[0])),)
    scale = np.sqrt(max(count, 1) / (grid[0] * grid[1]))
    return tuple(int(min(max(round(g * scale), 1), g)) for g in grid)


def tile_of_core(grid, tiles):
    """Tile index of every core of ``grid`` (cores and tiles numbered x fastest)."""
    edges = [np.concatenate([[0], np.cumsum(split_sizes(g, t))]) for g, t in zip(grid, tiles)]
    where = [np.searchsorted(e, np.arange(g), side="right") - 1 for e, g in zip(edges, grid)]
    if len(grid) == 1:
        return where[0]
    return (where[1][:, None] * tiles[0] + where[0][None, :]).ravel()


def tile_cores(home, grid, tiles):
    """(part of each coarse row, the tiles' row sets): rows grouped by the tile of their home core.

    Raises ValueError when a tile holds no coarse function (a tile of one
    core that anchors nothing, such as the first core under GDSW numbering).
    """
    part = tile_of_core(grid, tiles)[home]
    T = int(np.prod(tiles))
    counts = np.bincount(part, minlength=T)
    if counts.min(initial=1) == 0:
        raise ValueError(f"{int((counts == 0).sum())} of the {T} coarse tiles hold no coarse function: "
                         "too many coarse subdomains for this level")
    order = np.argsort(part, kind="stable")
    return part, np.split(order, np.cumsum(counts)[:-1])
