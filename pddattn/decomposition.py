"""Overlapping domain decompositions as data: index sets, a partition of unity, a coarse basis.

A decomposition of n nodes is
- N non-overlapping *cores* that partition the nodes, core i inside subdomain i;
- N sorted index sets Omega_i (R_i restricts to them), the cores grown by delta layers;
- a partition of unity D_i with sum_i R_i^T D_i R_i = I (``count``: 1 / multiplicity;
  ``smooth``: min(1, dist / (2 delta + 1)) with dist the graph distance to the
  nearest node outside Omega_i, then normalised);
- a coarse basis Phi, a sparse n x n_0 matrix (see coarse.py).

Builders: :func:`intervals` (1D), :func:`boxes` (2D grid, x fastest) and
:func:`algebraic` (contiguous row blocks of A, or a graph partition of it, grown
through A's graph, as PCASM's overlap). The kernels only ever see :meth:`Decomposition.padded_indices`,
:meth:`Decomposition.pou_weights` and :attr:`Decomposition.phi`.

    >>> d = intervals(10, 3, 1)
    >>> [s.tolist() for s in d.subdomains][0], d.coarse_size
    ([0, 1, 2, 3, 4], 2)
"""
from __future__ import annotations

import copy
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import shortest_path

from .coarse import attach_coarse, harmonic_anchors, interior_blocks
from .parallel.ghosts import GhostExchange
from .schwarz import galerkin

__all__ = ["Decomposition", "DecompositionLike", "POU_KINDS", "DECOMPOSITIONS", "PARTITIONS", "intervals", "boxes", "algebraic",
           "decomposition_from_spec", "parse_subdomains", "split_sizes", "same_structure"]

POU_KINDS = ("count", "smooth")
DECOMPOSITIONS = ("intervals", "boxes", "algebraic")


def _check_int(name, value, minimum, allowed):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    return int(value)


def split_sizes(n, N):
    """Sizes of N near-equal contiguous blocks of n (the first n mod N one larger, as PETSc)."""
    sizes = np.full(N, n // N, dtype=np.int64)
    sizes[: n % N] += 1
    return sizes


def parse_subdomains(text):
    """'32' -> (32,), '4x4' -> (4, 4)."""
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        return (int(text),)
    if isinstance(text, (tuple, list)):
        return tuple(int(v) for v in text)
    try:
        parts = tuple(int(p) for p in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"--subdomains must look like 32 or 4x4, got {text!r}") from None
    if not 1 <= len(parts) <= 2 or min(parts) < 1:
        raise ValueError(f"--subdomains must be positive (32 or 4x4), got {text!r}")
    return parts


@runtime_checkable
class DecompositionLike(Protocol):
    """What the operators, the hierarchy and the PC read of a decomposition.

    A :class:`Decomposition` (every subdomain) and a rank's
    :class:`~pddattn.parallel.share.DecompositionShare` (the subdomains it
    holds, Phi at its rows) both answer it; callers ask through these members
    only, never for the concrete type.
    """

    n: int  # nodes
    N: int  # subdomains
    spec: dict  # the builder's parameters (what checkpoints store)
    pou: str  # 'count' or 'smooth'
    delta: int  # overlap in layers
    coarse: str  # the coarse space's kind ('none': one level)
    sizes: object  # n_i of every subdomain
    max_size: int  # L, the padded subdomain length
    coarse_size: int  # n_0
    whole: bool  # every subdomain and all of Phi held here (a share: False)
    comm: object  # the domain group's communicator (None: one rank)

    def held_sizes(self, held): ...

    def held_subdomains(self, held): ...

    def held_indices(self, held, pad=-1): ...  # R_i of the held subdomains, (len(held), L), pad past n_i

    def held_pou_weights(self, held): ...  # D_i of the held subdomains, (len(held), L), 0 past n_i

    def phi_rows(self, rows): ...  # Phi at the given (own) rows, sparse

    def coarse_operator(self, problem): ...  # A_0 = Phi^T A Phi

    def exchange_plan(self, holdings, rank, comm=None, stats=None): ...  # the ghost exchange of held subdomains

    def to_dict(self): ...

    def core_of(self, nodes): ...  # the core of each global node


class Decomposition:
    """N overlapping subdomains of n nodes, given as index sets.

    Parameters
    ----------
    n : int
    cores, subdomains : list of int arrays
        Sorted node indices; the cores partition range(n) and core i is in subdomain i.
    pou : {'count', 'smooth'}
    ramps : list of arrays, optional
        For 'smooth': the unnormalised weight of every subdomain node.
    phi : scipy.sparse matrix (n, n_0), optional
        The coarse basis (none: n_0 = 0).
    spec : dict
        The builder's parameters (what checkpoints store).
    """

    def __init__(self, n, cores, subdomains, pou="count", ramps=None, phi=None, spec=None, **extra):
        if pou not in POU_KINDS:
            raise ValueError(f"unknown partition of unity {pou!r}; choose one of {POU_KINDS}")
        self.n, self.pou, self.spec = int(n), pou, dict(spec or {})
        self.cores = [np.asarray(c, dtype=np.int64) for c in cores]
        self.subdomains = [np.asarray(s, dtype=np.int64) for s in subdomains]
        self.N = len(self.subdomains)
        self.delta = int(self.spec.get("delta", 0))
        self._ramps = ramps
        self.phi = sp.csr_matrix((self.n, 0)) if phi is None else sp.csr_matrix(phi)
        self.coarse = self.spec.get("coarse", "none")
        self.coarse_plan = None  # the harmonic basis's plan (coarse.HarmonicPlan): Phi for new values of A
        self._core = None  # node -> core, made on first use
        self._galerkin = None  # (problem, Phi^T A Phi) of the last coarse_operator call
        self.__dict__.update(extra)  # builder-specific geometry (core_bounds, starts, stops, ...)

    # ------------------------------------------------------------------ sizes
    @property
    def sizes(self):
        """n_i, the number of nodes of each subdomain."""
        return np.array([len(s) for s in self.subdomains], dtype=np.int64)

    @property
    def core_sizes(self):
        return np.array([len(c) for c in self.cores], dtype=np.int64)

    @property
    def max_size(self):
        """L, the common padded subdomain length."""
        return int(self.sizes.max())

    @property
    def coarse_size(self):
        """n_0, the number of coarse basis functions."""
        return self.phi.shape[1]

    @property
    def contiguous(self):
        """True when every core and subdomain is a node range (what the 1D MPI exchange needs)."""
        return self.spec.get("kind") == "intervals"

    @property
    def whole(self):
        """True: every subdomain and all of Phi are here (a rank's DecompositionShare says False)."""
        return True

    comm = None  # a whole decomposition is on one rank (a share holds its domain group's communicator)

    def core_of(self, nodes):
        """The core each global node is in."""
        if self._core is None:
            self._core = np.empty(self.n, dtype=np.int64)
            for c, nodes_c in enumerate(self.cores):
                self._core[nodes_c] = c
        return self._core[np.asarray(nodes, dtype=np.int64)]

    @property
    def anchors(self):
        """The first node of every harmonic coarse function (what tiles the coarse levels, tiling.py)."""
        return harmonic_anchors(self.phi, self.interface)

    def with_phi(self, phi):
        """The same structure with another coarse basis of Phi's pattern (new values of A)."""
        out = copy.copy(self)
        out.phi, out._galerkin = sp.csr_matrix(phi), None
        return out

    def to_dict(self):
        return dict(self.spec)

    def __eq__(self, other):
        return isinstance(other, Decomposition) and self.to_dict() == other.to_dict() and self.n == other.n

    def __repr__(self):
        return f"Decomposition(n={self.n}, N={self.N}, {self.spec})"

    # ------------------------------------------------------------ R_i and D_i
    def restriction(self, i):
        """Node indices of subdomain i (the rows of R_i pick these nodes)."""
        return self.subdomains[i]

    def padded_indices(self, first=0, last=None, offset=0, pad=None):
        """R_i of subdomains first..last-1 as an (N', L) array, shifted by -offset.

        Padding holds ``pad`` (default n - offset: one past the last node, a zero slot).
        """
        last = self.N if last is None else last
        pad = self.n - offset if pad is None else pad
        out = np.full((last - first, self.max_size), pad, dtype=np.int64)
        for row, s in enumerate(self.subdomains[first:last]):
            out[row, : len(s)] = s - offset
        return out

    def pou_weights(self):
        """D_i diagonals as an (N, L) array, zero at padding; sum_i R_i^T D_i R_i = I."""
        valid = np.arange(self.max_size)[None, :] < self.sizes[:, None]
        w = np.zeros((self.N, self.max_size))
        if self.pou == "smooth":
            for i, r in enumerate(self._ramps):
                w[i, : len(r)] = r
        else:
            w[valid] = 1.0
        idx = self.padded_indices()
        total = np.zeros(self.n + 1)
        np.add.at(total, idx.ravel(), w.ravel())
        total[self.n] = 1.0  # the padding slot
        return np.where(valid, w / total[idx], 0.0)

    # What an operator reads of the subdomains it holds; a rank's DecompositionShare
    # (parallel/share.py) answers the same calls from its own part alone.
    def held_sizes(self, held):
        return self.sizes[held]

    def held_subdomains(self, held):
        return [self.subdomains[i] for i in held]

    def held_indices(self, held, pad=-1):
        return self.padded_indices(pad=pad)[held]

    def held_pou_weights(self, held):
        return self.pou_weights()[held]

    def phi_rows(self, rows):
        return self.phi[rows]

    def coarse_operator(self, problem):
        """A_0 = Phi^T A Phi, from blocks of the problem's rows; kept for the last problem asked (the
        hierarchy's update and the exact top's refactorization read the same product)."""
        if self._galerkin is None or self._galerkin[0] is not problem:
            self._galerkin = (problem, galerkin(problem, self.phi))
        return self._galerkin[1]

    def exchange_plan(self, holdings, rank, comm=None, stats=None):
        """The ghost exchange of rank ``rank``'s subdomains, from the index sets every rank holds."""
        return GhostExchange.of_decomposition(self, holdings, rank, comm, stats)

    def interior_blocks(self):
        """Core interiors (cores minus the nodes where Phi is 1), see coarse.interior_blocks."""
        return interior_blocks(self)

    def coarse_basis_dense(self):
        """Phi as a dense (n, n_0) array (tests and small diagnostics only)."""
        return self.phi.toarray()


def same_structure(d, e):
    """Whether two decompositions have the same index sets, weights' kind and coarse-basis pattern."""
    if (d.n, d.N, d.pou, d.spec) != (e.n, e.N, e.pou, e.spec) or d.phi.shape != e.phi.shape:
        return False
    if not all(np.array_equal(a, b) for a, b in zip(d.subdomains, e.subdomains)):
        return False
    p, q = d.phi.tocsr(), e.phi.tocsr()
    p.sort_indices()
    q.sort_indices()
    return np.array_equal(p.indptr, q.indptr) and np.array_equal(p.indices, q.indices)


# -------------------------------------------------------------------- builders
def _ramp(dist, delta):
    return np.minimum(1.0, dist / (2.0 * delta + 1.0))


def interval_ramp(a, b, n, delta):
    """The smooth PoU's unnormalised weights on the interval a..b-1 of n nodes (distance to its outside)."""
    m = np.arange(b - a, dtype=np.float64)
    up = m + 1 if a > 0 else np.full(len(m), np.inf)
    down = (b - a) - m if b < n else np.full(len(m), np.inf)
    return _ramp(np.minimum(up, down), delta)


def box_ramp(xs, ys, grid, delta):
    """The same on the box xs[0]..xs[1]-1 x ys[0]..ys[1]-1 of the grid: across its nearest interior edge."""
    (x0, x1), (y0, y1), (nx, ny) = xs, ys, grid
    ix, iy = np.arange(x1 - x0, dtype=np.float64), np.arange(y1 - y0, dtype=np.float64)
    dx = np.minimum(ix + 1 if x0 > 0 else np.inf, (x1 - x0) - ix if x1 < nx else np.inf)
    dy = np.minimum(iy + 1 if y0 > 0 else np.inf, (y1 - y0) - iy if y1 < ny else np.inf)
    dx, dy = np.broadcast_to(dx, ix.shape), np.broadcast_to(dy, iy.shape)  # a box with no interior edge
    return _ramp(np.minimum(dy[:, None], dx[None, :]).ravel(), delta)


def intervals(n, N, delta, pou="count", coarse="hat", A=None):
    """N intervals of near-equal size extended by delta nodes on each side (1D).

    Coarse ``hat``: n_0 = N - 1 hats at the first nodes of cores 2..N.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer (number of nodes), got {n!r}")
    N = _check_int("N (number of subdomains)", N, 1, f"in 1..n={n}")
    if N > n:
        raise ValueError(f"N={N} subdomains is more than the n={n} nodes; N must be in 1..{n}")
    delta = _check_int("delta (overlap)", delta, 0, ">= 0")
    sizes = split_sizes(n, N)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    limit = n - int(max(sizes[0], sizes[-1])) - 1
    if N > 1 and delta > limit:
        raise ValueError(f"overlap delta={delta} is too large for n={n}, N={N}: a subdomain would cover the "
                         f"whole domain; use 0 <= delta <= {limit}")
    starts, stops = np.maximum(bounds[:-1] - delta, 0), np.minimum(bounds[1:] + delta, n)
    ramps = [interval_ramp(a, b, n, delta) for a, b in zip(starts, stops)]
    spec = {"kind": "intervals", "N": N, "delta": delta, "pou": pou, "coarse": coarse}
    d = Decomposition(n, [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:])],
                      [np.arange(a, b) for a, b in zip(starts, stops)], pou, ramps, spec=spec,
                      core_bounds=bounds, starts=starts, stops=stops, grid=(n,), layout=(N,))
    return attach_coarse(d, coarse, A)


def boxes(grid, layout, delta, pou="count", coarse="q1", A=None):
    """Nx x Ny rectangles of a nx x ny grid (node j nx + i), each grown by delta layers."""
    (nx, ny), (Nx, Ny) = grid, layout
    delta = _check_int("delta (overlap)", delta, 0, ">= 0")
    if Nx > nx or Ny > ny:
        raise ValueError(f"{Nx}x{Ny} subdomains do not fit the {nx}x{ny} grid")
    bx = np.concatenate([[0], np.cumsum(split_sizes(nx, Nx))])
    by = np.concatenate([[0], np.cumsum(split_sizes(ny, Ny))])
    if (Nx > 1 and delta >= nx - max(np.diff(bx))) or (Ny > 1 and delta >= ny - max(np.diff(by))):
        raise ValueError(f"overlap delta={delta} is too large for a {nx}x{ny} grid in {Nx}x{Ny} boxes")
    cores, subs, ramps = [], [], []
    for J in range(Ny):
        for I in range(Nx):
            cores.append((np.arange(by[J], by[J + 1])[:, None] * nx + np.arange(bx[I], bx[I + 1])[None, :]).ravel())
            x0, x1 = max(bx[I] - delta, 0), min(bx[I + 1] + delta, nx)
            y0, y1 = max(by[J] - delta, 0), min(by[J + 1] + delta, ny)
            subs.append((np.arange(y0, y1)[:, None] * nx + np.arange(x0, x1)[None, :]).ravel())
            ramps.append(box_ramp((x0, x1), (y0, y1), (nx, ny), delta))
    spec = {"kind": "boxes", "N": [Nx, Ny], "delta": delta, "pou": pou, "coarse": coarse}
    d = Decomposition(nx * ny, cores, subs, pou, ramps, spec=spec, grid=(nx, ny), layout=(Nx, Ny),
                      box_bounds=(bx, by))
    return attach_coarse(d, coarse, A)


def _graph(A):
    G = sp.csr_matrix(A, copy=True)
    G.data = np.ones_like(G.data)
    return G


PARTITIONS = ("blocks", "graph", "tiles")


def algebraic(A, N, delta, pou="count", coarse="harmonic", partition="blocks", cores=None):
    """N cores of A's rows, each grown delta times through the graph of A (PCASM-style).

    ``partition``: ``blocks``, contiguous row blocks (PETSc's ownership, what
    a matrix's row order gives); ``graph``, N balanced compact parts of A's
    graph whatever the numbering (recursive bisection), what the coarse
    levels built whole use, whose rows are numbered by interface piece, not
    by place; ``tiles``, the given ``cores`` (tiling.py: what the coarse
    levels use, built per rank or whole alike).
    """
    n = A.shape[0]
    if cores is not None:
        N = len(cores)
    N = _check_int("N (number of subdomains)", N, 1, f"in 1..n={n}")
    if N > n:
        raise ValueError(f"N={N} subdomains is more than the n={n} rows")
    delta = _check_int("delta (overlap)", delta, 0, ">= 0")
    if partition not in PARTITIONS:
        raise ValueError(f"partition must be one of {PARTITIONS}, got {partition!r}")
    if (partition == "tiles") != (cores is not None):
        raise ValueError("the tiles partition takes its cores (and only it does)")
    G = _graph(A)
    if cores is None:
        cores = _graph_parts(G, N) if partition == "graph" and N > 1 else _block_parts(n, N)
    subs, ramps = [], []
    for core in cores:
        mask = np.zeros(n, dtype=bool)
        mask[core] = True
        for _ in range(delta):
            mask |= (G @ mask.astype(np.float64)) > 0
        subs.append(np.flatnonzero(mask))
        ramps.append(_ramp(_distance_to_outside(G, mask, 2 * delta + 1), delta))
    if N > 1 and max(len(s) for s in subs) == n:
        raise ValueError(f"overlap delta={delta} makes a subdomain cover all {n} rows; use a smaller --overlap")
    spec = {"kind": "algebraic", "N": N, "delta": delta, "pou": pou, "coarse": coarse}
    if partition != "blocks":
        spec["partition"] = partition
    d = Decomposition(n, cores, subs, pou, ramps, spec=spec, layout=(N,))
    return attach_coarse(d, coarse, A)


def _block_parts(n, N):
    bounds = np.concatenate([[0], np.cumsum(split_sizes(n, N))])
    return [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def _graph_parts(G, N):
    """N balanced, compact parts of the graph G (sorted node arrays, numbered by first node).

    Recursive bisection by breadth-first distance from a pseudo-peripheral
    node, ties broken by index: deterministic, so every rank that builds the
    same replicated coarse level gets the same parts. (PT-Scotch through
    PETSc's MatPartitioning gives better cuts but other parts on every call
    in one process, which the serial-equals-distributed contract cannot take.)
    """
    parts = _bisect(sp.csr_matrix(G), np.arange(G.shape[0]), N)
    return sorted(parts, key=lambda c: int(c[0]))


def _bisect(G, nodes, N):
    if N == 1:
        return [nodes]
    dist = _peripheral_distance(G[nodes][:, nodes])
    order = np.lexsort((np.arange(len(nodes)), dist))
    k = int(round(len(nodes) * (N // 2) / N))
    return (_bisect(G, np.sort(nodes[order[:k]]), N // 2) +
            _bisect(G, np.sort(nodes[order[k:]]), N - N // 2))


def _peripheral_distance(G):
    """Breadth-first distance of every node from a pseudo-peripheral one (two sweeps; unreachable last)."""
    start = 0
    for _ in range(2):
        dist = shortest_path(G, unweighted=True, indices=start)
        dist[np.isinf(dist)] = -1
        start = int(np.argmax(dist))
    dist = shortest_path(G, unweighted=True, indices=start)
    dist[np.isinf(dist)] = G.shape[0]
    return dist


def _distance_to_outside(G, mask, cap):
    """Graph distance (capped) from each node of ``mask`` to the nearest node outside it."""
    dist = np.full(mask.sum(), np.inf)
    reached = ~mask
    local = np.flatnonzero(mask)
    for k in range(1, cap + 1):
        reached = reached | ((G @ reached.astype(np.float64)) > 0)
        new = reached[local] & np.isinf(dist)
        dist[new] = k
        if not np.isinf(dist).any():
            break
    return dist


def decomposition_from_spec(spec, problem):
    """Rebuild a decomposition from its spec and the problem (grid, A).

    The whole A is used only where the construction is algebraic (harmonic
    coarse spaces, algebraic subdomains); hat, q1, intervals and boxes are geometry.
    """
    kind = spec.get("kind")
    A = problem.A if kind == "algebraic" or spec.get("coarse") == "harmonic" else None
    if kind == "intervals":
        if problem.dim != 1:
            raise ValueError(f"intervals need a 1D problem, got grid {problem.grid}; use boxes or algebraic")
        return intervals(problem.n, spec["N"], spec["delta"], spec["pou"], spec["coarse"], A)
    if kind == "boxes":
        if problem.dim != 2:
            raise ValueError(f"boxes need a 2D grid, got {problem.grid}; use intervals or algebraic")
        layout = tuple(spec["N"])
        if len(layout) != 2:
            raise ValueError(f"boxes need Nx x Ny subdomains (e.g. 4x4), got {spec['N']}")
        return boxes(problem.grid, layout, spec["delta"], spec["pou"], spec["coarse"], A)
    if kind == "algebraic":
        N = spec["N"]
        N = int(np.prod(N)) if isinstance(N, (list, tuple)) else N
        return algebraic(problem.A, N, spec["delta"], spec["pou"], spec["coarse"], spec.get("partition", "blocks"))
    raise ValueError(f"unknown decomposition {kind!r}; choose one of {DECOMPOSITIONS}")
