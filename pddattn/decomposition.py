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
through A's graph, as PCASM's overlap). Each is the one share builder's
one-rank case (parallel/setup.one_rank, geometry.py): a whole decomposition
is what one rank holding every subdomain holds (:meth:`Decomposition.of_share`),
so serial and distributed runs build their index sets, weights and Phi by the
same code; tests/whole_builders.py keeps the former whole builders as the
oracle. The kernels only ever see :meth:`Decomposition.padded_indices`,
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

from .coarse import COARSE_SPACES, coarse_interface, harmonic_anchors, interior_blocks
from .geometry import split_sizes
from .parallel.ghosts import GhostExchange
from .parallel.setup import one_rank
from .parallel.share import DecompositionShare
from .schwarz import galerkin

__all__ = ["Decomposition", "DecompositionLike", "POU_KINDS", "DECOMPOSITIONS", "PARTITIONS", "intervals", "boxes", "algebraic",
           "decomposition_from_spec", "parse_subdomains", "split_sizes", "same_structure"]

POU_KINDS = ("count", "smooth")
DECOMPOSITIONS = ("intervals", "boxes", "algebraic")


def _check_int(name, value, minimum, allowed):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    return int(value)


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

    A rank's :class:`~pddattn.parallel.share.DecompositionShare` (the
    subdomains it holds, Phi at its rows) and its one-rank case
    :class:`Decomposition` (every subdomain) answer it; callers ask through
    these members only, never for the concrete type.
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


class Decomposition(DecompositionShare):
    """N overlapping subdomains of n nodes: the share of one rank that holds every subdomain and row.

    There is one runtime decomposition type, :class:`~pddattn.parallel.share.DecompositionShare`
    (a rank's subdomains, weights and rows of Phi, made by the one share
    builder); this is its one-rank case, which the serial path, the gathered
    PC and the hierarchy's update plans hold. It answers, besides, what only
    a holder of everything can: R_i and D_i of any subdomains (a rank's part
    of a whole decomposition), Phi at any rows, the exchange plan of any
    holdings, A_0 for any problem of the pattern, another Phi of the same
    pattern (:meth:`with_phi`). Built by :func:`intervals`, :func:`boxes` and
    :func:`algebraic` (through :meth:`of_share`).

    Attributes beyond the share's
    -----------------------------
    coarse_plan : coarse.HarmonicPlan or None
        The harmonic basis's plan: Phi for new values of A.
    interface : int array
        Gamma, where the coarse functions are indicators (coarse.coarse_interface).
    """

    def __init__(self, n, spec, core_map, cores, subdomains, weights, phi, plan=None, **extra):
        own, N = np.arange(int(n)), len(subdomains)
        plan = plan or GhostExchange.from_reads(own, own, core_map.owner_of)
        super().__init__(n, spec, core_map, np.arange(N), cores, subdomains, weights, own, phi, None, plan,
                         [len(s) for s in subdomains])
        if self.pou not in POU_KINDS:
            raise ValueError(f"unknown partition of unity {self.pou!r}; choose one of {POU_KINDS}")
        # plain lists: any subdomain by number, slices too (a Held list serves a rank's own only)
        self.cores = [np.asarray(c, dtype=np.int64) for c in cores]
        self.subdomains = [np.asarray(s, dtype=np.int64) for s in subdomains]
        self.coarse_plan = None
        self._galerkin = None  # (problem, Phi^T A Phi) of the last coarse_operator call
        self.__dict__.update(extra)  # builder-specific geometry (starts, stops, ...)

    @classmethod
    def of_share(cls, share, **extra):
        """The whole decomposition a one-rank share holds (parallel/setup.one_rank): every subdomain,
        its weights, all rows of Phi and the harmonic basis's plan; ``extra`` the builder's geometry."""
        if len(share.held) != share.N or len(share.own) != share.n:
            raise ValueError("a whole decomposition is made of a share that holds every subdomain and row")
        d = cls(share.n, share.spec, share.core_map, list(share.cores), list(share.subdomains), list(share.weights),
                share.phi, share.plan, **extra)
        d.coarse_plan, d.values_plan = share.values_plan.harmonic, share.values_plan
        return d

    # ------------------------------------------------------------------ sizes
    @property
    def core_sizes(self):
        return np.array([len(c) for c in self.cores], dtype=np.int64)

    @property
    def whole(self):
        """True: every subdomain and all of Phi are here (a rank's share says False)."""
        return True

    @property
    def anchors(self):
        """The first node of every harmonic coarse function (what tiles the coarse levels, tiling.py)."""
        return harmonic_anchors(self.phi, self.interface)

    def with_phi(self, phi):
        """The same structure with another coarse basis of Phi's pattern (new values of A)."""
        out = copy.copy(self)
        out.phi, out._galerkin = sp.csr_matrix(phi), None
        return out

    def __eq__(self, other):
        return isinstance(other, Decomposition) and self.to_dict() == other.to_dict() and self.n == other.n

    __hash__ = None

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
        w = np.zeros((self.N, self.max_size))
        for i, weights in enumerate(self.weights):
            w[i, : len(weights)] = weights
        return w

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
# Each is the share builder's one-rank case (parallel/setup.one_rank), wrapped
# whole; the former whole builders are tests/whole_builders.py, the oracle.
def intervals(n, N, delta, pou="count", coarse="hat", A=None):
    """N intervals of near-equal size extended by delta nodes on each side (1D).

    Coarse ``hat``: n_0 = N - 1 hats at the first nodes of cores 2..N.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer (number of nodes), got {n!r}")
    N = _check_int("N (number of subdomains)", N, 1, f"in 1..n={n}")
    delta = _check_int("delta (overlap)", delta, 0, ">= 0")
    spec = {"kind": "intervals", "N": N, "delta": delta, "pou": pou, "coarse": coarse}
    share = _one_rank(spec, int(n), None, A)
    bounds = share.core_map.bounds
    return _whole(share, starts=np.maximum(bounds[:-1] - delta, 0), stops=np.minimum(bounds[1:] + delta, n))


def boxes(grid, layout, delta, pou="count", coarse="q1", A=None):
    """Nx x Ny rectangles of a nx x ny grid (node j nx + i), each grown by delta layers."""
    (nx, ny), (Nx, Ny) = grid, layout
    delta = _check_int("delta (overlap)", delta, 0, ">= 0")
    spec = {"kind": "boxes", "N": [Nx, Ny], "delta": delta, "pou": pou, "coarse": coarse}
    return _whole(_one_rank(spec, nx * ny, (nx, ny), A))


def _one_rank(spec, n, grid, A, cores=None):
    """The one-rank share of ``spec``; ValueError for a bad input."""
    coarse = spec["coarse"]
    if spec["pou"] not in POU_KINDS:
        raise ValueError(f"unknown partition of unity {spec['pou']!r}; choose one of {POU_KINDS}")
    if coarse not in COARSE_SPACES:
        raise ValueError(f"unknown coarse space {coarse!r}; choose one of {COARSE_SPACES}")
    if coarse == "harmonic" and A is None:
        raise ValueError("the harmonic coarse space is computed from A; pass the matrix")
    A = sp.csr_matrix(A) if A is not None else None
    return one_rank(spec, n, grid, A, cores)


def _whole(share, **extra):
    """The whole decomposition of a one-rank share, with its coarse basis's interface."""
    d = Decomposition.of_share(share, **extra)
    d.interface = coarse_interface(d)
    return d


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
    if cores is None and partition == "graph" and N > 1:
        cores = _graph_parts(_graph(A), N)
    spec = {"kind": "algebraic", "N": N, "delta": delta, "pou": pou, "coarse": coarse}
    if partition != "blocks":
        spec["partition"] = partition
    return _whole(_one_rank(spec, n, None, A, cores))


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
