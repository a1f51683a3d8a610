"""Rows of the diffusion stencils, assembled for any set of nodes from the coefficient field alone.

1D (3-point) and 2D (5-point, node p = j nx + i) finite volumes with k at
the edge midpoints: row p holds sum_e k_e / h^2 on the diagonal and
-k_e / h^2 towards each neighbour inside the grid (Dirichlet boundary).
The coefficient is a function of position (and its seed), so a rank
assembles the rows it needs, and nothing else; the whole matrix is the
same function on every row.

    >>> from pddattn.problems.coefficients import coefficient_field
    >>> stencil_rows((3, 2), coefficient_field("const"), [0, 4]).toarray().round(1)[0, :3]
    array([ 50., -16.,   0.])
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["stencil_rows"]


_BLOCK = 1 << 13  # rows assembled at once: the temporaries (a lognormal field: 256 features a point) stay small


def stencil_rows(grid, k, rows):
    """The rows ``rows`` (global node indices) of the diffusion matrix on ``grid``, as CSR (len(rows), n)."""
    rows = np.asarray(rows, dtype=np.int64)
    rule = _rows_1d if len(grid) == 1 else _rows_2d
    data, indices, counts = [], [], []
    for lo in range(0, len(rows), _BLOCK):
        cols, vals, inside = rule(grid, k, rows[lo:lo + _BLOCK])
        data.append(vals[inside])
        indices.append(cols[inside])
        counts.append(inside.sum(axis=1))
    indptr = np.concatenate([[0], np.cumsum(np.concatenate(counts))]) if counts else np.zeros(1, dtype=np.int64)
    n = int(np.prod(grid))
    return sp.csr_matrix((np.concatenate(data) if data else np.zeros(0),
                          np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64), indptr),
                         shape=(len(rows), n))


def _rows_1d(grid, k, i):
    n = grid[0]
    h = 1.0 / (n + 1)
    west, east = k(((i + 0.5) * h)[:, None]), k(((i + 1.5) * h)[:, None])  # edges i and i + 1
    cols = np.stack([i - 1, i, i + 1], axis=1)
    vals = np.stack([-west / h**2, (west + east) / h**2, -east / h**2], axis=1)
    return cols, vals, (cols >= 0) & (cols < n)


def _rows_2d(grid, k, p):
    nx, ny = grid
    hx, hy = 1.0 / (nx + 1), 1.0 / (ny + 1)
    i, j = p % nx, p // nx
    # Each edge's k once (neighbouring rows share it): x-edge e of row j lies between nodes e - 1 and e.
    west, east = _edge_values(j * (nx + 1) + i, nx + 1,
                              lambda e, c: np.stack([(e + 0.5) * hx, (c + 1.0) / (ny + 1)], axis=1), k)
    south, north = _edge_values(i * (ny + 1) + j, ny + 1,
                                lambda e, c: np.stack([(c + 1.0) / (nx + 1), (e + 0.5) * hy], axis=1), k)
    west, east, south, north = west / hx**2, east / hx**2, south / hy**2, north / hy**2
    diagonal = ((east + west) + north) + south
    cols = np.stack([p - nx, p - 1, p, p + 1, p + nx], axis=1)  # sorted: S, W, centre, E, N
    vals = np.stack([-south, -west, diagonal, -east, -north], axis=1)
    inside = np.stack([j > 0, i > 0, np.ones(len(p), dtype=bool), i < nx - 1, j < ny - 1], axis=1)
    return cols, vals, inside


def _edge_values(before, stride, position, k):
    """k on the edges ``before`` (ids: line * stride + edge) and ``before + 1``, each distinct edge evaluated once."""
    ids, where = np.unique(np.concatenate([before, before + 1]), return_inverse=True)
    values = k(position(ids % stride, ids // stride))
    return values[where[: len(before)]], values[where[len(before):]]
