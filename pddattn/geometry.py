"""Where subdomains lie, by arithmetic on the counts: cores, their overlap, the smooth weights' ramps.

Everything here is decided from numbers every rank has (n, the grid, N,
delta) or from the rows of A a rank reads, never from another rank's index
sets, so the one share builder (parallel/setup.py) uses it on every rank
and, serially, as the one-rank case that makes the whole decomposition
(decomposition.py):

- :class:`CoreMap`: core i of intervals, row blocks or boxes, which core a
  node is in and which rank holds it; :class:`TileMap` the same for given
  cores (graph parts, the coarse levels' tiles);
- the overlap: grid layers (:meth:`CoreMap.extent`) or steps of A's graph
  (:func:`grown`);
- the smooth partition of unity's unnormalised ramps, min(1, dist / (2 delta + 1)),
  dist the distance to the nearest node outside the subdomain;
- the checks that a layout fits (:func:`check_geometry`).
"""
from __future__ import annotations

import numpy as np

from .errors import ConfigurationError
from .parallel.layout import holdings_of

__all__ = ["split_sizes", "ramp", "interval_ramp", "box_ramp", "check_geometry", "CoreMap", "TileMap", "grown",
           "distance_to_outside"]


def split_sizes(n, N):
    """Sizes of N near-equal contiguous blocks of n (the first n mod N one larger, as PETSc)."""
    sizes = np.full(N, n // N, dtype=np.int64)
    sizes[: n % N] += 1
    return sizes


def ramp(dist, delta):
    """The smooth PoU's unnormalised weight at graph distance ``dist`` from the subdomain's outside."""
    return np.minimum(1.0, dist / (2.0 * delta + 1.0))


def interval_ramp(a, b, n, delta):
    """The smooth PoU's unnormalised weights on the interval a..b-1 of n nodes (distance to its outside)."""
    m = np.arange(b - a, dtype=np.float64)
    up = m + 1 if a > 0 else np.full(len(m), np.inf)
    down = (b - a) - m if b < n else np.full(len(m), np.inf)
    return ramp(np.minimum(up, down), delta)


def box_ramp(xs, ys, grid, delta):
    """The same on the box xs[0]..xs[1]-1 x ys[0]..ys[1]-1 of the grid: across its nearest interior edge."""
    (x0, x1), (y0, y1), (nx, ny) = xs, ys, grid
    ix, iy = np.arange(x1 - x0, dtype=np.float64), np.arange(y1 - y0, dtype=np.float64)
    dx = np.minimum(ix + 1 if x0 > 0 else np.inf, (x1 - x0) - ix if x1 < nx else np.inf)
    dy = np.minimum(iy + 1 if y0 > 0 else np.inf, (y1 - y0) - iy if y1 < ny else np.inf)
    dx, dy = np.broadcast_to(dx, ix.shape), np.broadcast_to(dy, iy.shape)  # a box with no interior edge
    return ramp(np.minimum(dy[:, None], dx[None, :]).ravel(), delta)


def check_geometry(kind, grid, layout, delta, n):
    """ConfigurationError unless N subdomains of ``kind`` with overlap delta fit (from numbers every rank has)."""
    if kind == "boxes":
        (nx, ny), (Nx, Ny) = grid, layout
        if Nx > nx or Ny > ny:
            raise ConfigurationError(f"{Nx}x{Ny} subdomains do not fit the {nx}x{ny} grid")
        wx, wy = max(split_sizes(nx, Nx)), max(split_sizes(ny, Ny))
        if (Nx > 1 and delta >= nx - wx) or (Ny > 1 and delta >= ny - wy):
            raise ConfigurationError(f"overlap delta={delta} is too large for a {nx}x{ny} grid in {Nx}x{Ny} boxes")
        return
    N = layout[0]
    if N > n:
        raise ConfigurationError(f"N={N} subdomains is more than the n={n} nodes; N must be in 1..{n}")
    sizes = split_sizes(n, N)
    limit = n - int(max(sizes[0], sizes[-1])) - 1
    if kind == "intervals" and N > 1 and delta > limit:
        raise ConfigurationError(f"overlap delta={delta} is too large for n={n}, N={N}: a subdomain would cover "
                                 f"the whole domain; use 0 <= delta <= {limit}")


def _holders(holdings, N):
    holder = np.empty(N, dtype=np.int64)
    for p, held in enumerate(holdings):
        holder[held] = p
    return holder


class CoreMap:
    """Which core a node is in, and which rank holds that core, by arithmetic on the counts.

    Parameters
    ----------
    kind : {'boxes', 'algebraic', 'intervals'}
    n : int
    grid : tuple
        (nx, ny) for boxes.
    layout : tuple
        (Nx, Ny) for boxes, (N,) otherwise.
    P : int
        Domain ranks.
    """

    def __init__(self, kind, n, grid, layout, P):
        self.kind, self.n, self.grid, self.layout = kind, int(n), tuple(grid), tuple(layout)
        self.N = int(np.prod(layout))
        self.holdings = holdings_of(kind, self.N, self.layout, P)
        self.holder = _holders(self.holdings, self.N)
        if kind == "boxes":
            (nx, ny), (Nx, Ny) = self.grid, self.layout
            self.bx = np.concatenate([[0], np.cumsum(split_sizes(nx, Nx))])
            self.by = np.concatenate([[0], np.cumsum(split_sizes(ny, Ny))])
        else:
            self.bounds = np.concatenate([[0], np.cumsum(split_sizes(self.n, self.N))])

    def core_of(self, nodes):
        nodes = np.asarray(nodes, dtype=np.int64)
        if self.kind != "boxes":
            return np.searchsorted(self.bounds, nodes, side="right") - 1
        nx = self.grid[0]
        I = np.searchsorted(self.bx, nodes % nx, side="right") - 1
        J = np.searchsorted(self.by, nodes // nx, side="right") - 1
        return J * self.layout[0] + I

    def owner_of(self, nodes):
        """The rank owning each node: the holder of its core."""
        return self.holder[self.core_of(nodes)]

    def core(self, i):
        """Core i's nodes, sorted."""
        if self.kind != "boxes":
            return np.arange(self.bounds[i], self.bounds[i + 1])
        I, J = i % self.layout[0], i // self.layout[0]
        nx = self.grid[0]
        return (np.arange(self.by[J], self.by[J + 1])[:, None] * nx
                + np.arange(self.bx[I], self.bx[I + 1])[None, :]).ravel()

    def extent(self, i, delta):
        """((x0, y0), (x1, y1)): core i grown by delta grid layers, clipped (intervals: x only)."""
        if self.kind == "boxes":
            I, J = i % self.layout[0], i // self.layout[0]
            (nx, ny) = self.grid
            return ((max(self.bx[I] - delta, 0), max(self.by[J] - delta, 0)),
                    (min(self.bx[I + 1] + delta, nx), min(self.by[J + 1] + delta, ny)))
        return (max(self.bounds[i] - delta, 0), 0), (min(self.bounds[i + 1] + delta, self.n), 1)

    def box(self, i, delta):
        """Box i grown by delta grid layers (boxes only), sorted."""
        (x0, y0), (x1, y1) = self.extent(i, delta)
        return (np.arange(y0, y1)[:, None] * self.grid[0] + np.arange(x0, x1)[None, :]).ravel()


class TileMap:
    """Given cores and their holders: CoreMap's interface where cores are not arithmetic (graph parts,
    the coarse levels' tiles).

    Parameters
    ----------
    part : int array (n,)
        The core of every row (replicated, as the anchors it comes from on a coarse level).
    cores : list of int arrays
        Each core's rows, sorted.
    P : int
        Domain ranks; they hold contiguous blocks of cores (``holdings_of``).
    """

    kind = "algebraic"

    def __init__(self, part, cores, P):
        self.part, self._cores = np.asarray(part, dtype=np.int64), cores
        self.n, self.N = len(self.part), len(cores)
        self.layout, self.grid = (self.N,), (self.n,)
        self.holdings = holdings_of("algebraic", self.N, self.layout, P)
        self.holder = _holders(self.holdings, self.N)

    @classmethod
    def of_cores(cls, cores, n, P=1):
        """The map of cores that partition range(n)."""
        part = np.empty(n, dtype=np.int64)
        for c, nodes in enumerate(cores):
            part[nodes] = c
        return cls(part, [np.asarray(c, dtype=np.int64) for c in cores], P)

    def core_of(self, nodes):
        return self.part[np.asarray(nodes, dtype=np.int64)]

    def owner_of(self, nodes):
        return self.holder[self.core_of(nodes)]

    def core(self, i):
        return self._cores[i]


def grown(rows_of, core, delta):
    """``core`` grown ``delta`` steps through A's graph, reading only the rows it reaches."""
    nodes = np.asarray(core, dtype=np.int64)
    for _ in range(delta):
        nodes = np.union1d(nodes, rows_of(nodes).indices)
    return nodes


def distance_to_outside(rows, nodes, cap):
    """Graph distance (capped) from each of the sorted ``nodes`` to the nearest node not among them,
    from their rows alone (CSR, global columns)."""
    at = np.minimum(np.searchsorted(nodes, rows.indices), len(nodes) - 1)
    inside = nodes[at] == rows.indices
    owner = np.repeat(np.arange(len(nodes)), np.diff(rows.indptr))
    dist = np.full(len(nodes), np.inf)
    reached = np.zeros(len(nodes), dtype=bool)
    for k in range(1, cap + 1):
        hit = ~inside | reached[np.where(inside, at, 0)]
        reached = reached | (np.bincount(owner, weights=hit, minlength=len(nodes)) > 0)
        new = reached & np.isinf(dist)
        dist[new] = k
        if not np.isinf(dist).any():
            break
    return dist
