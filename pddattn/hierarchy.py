"""The multilevel hierarchy: coarse operators and their decompositions, as plain data.

Level 0 is the problem's A with its decomposition, whose coarse basis Phi_1
(n x n_1) gives A_1 = Phi_1^T A Phi_1, again sparse SPD. Level l > 0 is A_l
with an algebraic decomposition and a harmonic (GDSW-type) coarse basis
Phi_{l+1}, down to the top level A_{L-1}, which stays dense (Q_0 K_0^T):

    M_l^-1 = Phi_{l+1} M_{l+1}^-1 Phi_{l+1}^T + sum_i R_{l,i}^T D^1/2 Q_{l,i} K_{l,i}^T D^1/2 R_{l,i}

``levels = 2`` is the two-level operator (no coarse decomposition). Coarse
subdomains are sized so that the top level has about ``top_size`` rows:
with levels - 2 coarse decompositions, each coarsens by the same factor
(n_1 / top_size)^(1 / (levels - 2)). ``top_size = 0`` fixes the coarse
subdomains instead (``COARSE_ROWS`` rows each) and lets the top grow with n:
what keeps the iterations of a multilevel Schwarz method bounded under
refinement (H_l / delta_l fixed on every level), with a top that is
factored, not learned. Coarse subdomains are compact patches of the level
above, because a coarse level's rows are numbered by interface piece:
contiguous row blocks of them are slivers, and the iterations grew with
them (channels, 16 x 16 boxes, overlap 2, 3 levels, 48-row coarse
subdomains: 57 / 142 / 215 iterations at 255^2 / 511^2 / 1023^2 with
blocks, 52 / 68 / 73 with a graph partition of A_l). The patches are tiles
of the cores above (tiling.py: 65 / 66 / 50 with 24-row tiles), which a
rank can build for its own rows alone (:func:`_tiled_level`); the graph
partition of the whole A_l and the row blocks remain to rebuild checkpoints
written with them. The loop is pyamg's shape: one short loop appending
levels.

:func:`levels_of` is the one place a decomposition spec becomes objects: it
builds level 0's decomposition and the coarse levels once per problem and
returns the same objects to every later caller in the run (the architecture,
the model, the Schwarz start, the PC's training).
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import scipy.sparse as sp

from .errors import CollectiveError, ConfigurationError

__all__ = ["Level", "coarse_levels", "levels_of", "TOP_SIZE", "COARSE_ROWS", "LEVEL_COARSE"]

TOP_SIZE = 64  # rows of the dense top level (the default of --top-size)
COARSE_ROWS = 24  # rows per coarse subdomain when top_size = 0 (about 8 fine subdomains' functions in 2D)


@dataclasses.dataclass
class Level:
    """One coarse level: its operator A_l (sparse) and decomposition (with Phi_{l+1}).

    On a level built per rank, ``A`` is None (its rows stay at their owners),
    ``decomposition`` is the rank's share and ``problem`` answers the rows it read.
    """

    A: sp.csr_matrix
    decomposition: object
    problem: object = None  # A_l as a Problem (family 'operator'), what the level's operator is built on


LEVEL_COARSE = ("harmonic", "nicolaides")


def coarse_levels(decomposition, A, levels, top_size=TOP_SIZE, delta=1, coarse="harmonic", partition="tiles"):
    """The coarse levels 1 .. levels-2 below a decomposition of A (empty for levels <= 2).

    Parameters
    ----------
    decomposition : Decomposition
        Level 0's, with its coarse basis Phi_1.
    A : Problem or sparse matrix
        Level 0's operator (a Problem: A_1 from blocks of its rows).
    levels : int
        L >= 2; L - 2 coarse decompositions are built.
    top_size : int
        The target size of the dense top level A_{L-1}; 0: coarse subdomains
        of ``COARSE_ROWS`` rows, the top as large as that makes it.
    delta : int
        Overlap of the coarse decompositions, in steps of A_l's graph.
    coarse : {'harmonic', 'nicolaides'}
        The coarse space of the coarse decompositions: GDSW-type (as many
        functions as interface pieces) or Nicolaides (one per subdomain, so
        level l + 1 has exactly N_l rows).
    partition : {'tiles', 'graph', 'blocks'}
        How A_l's rows are split into cores: ``tiles`` of the cores above
        (tiling.py; what a rank can build alone), ``graph`` (a partition of
        the whole A_l) and ``blocks`` only to rebuild checkpoints written
        before them (the architecture's ``level_partition``).
    """
    from .decomposition import algebraic
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
    if isinstance(top_size, bool) or not isinstance(top_size, int) or top_size < 0:
        raise ValueError(f"top size must be an integer >= 0 (0: fixed coarse subdomains), got {top_size!r}")
    if coarse not in LEVEL_COARSE:
        raise ValueError(f"the coarse levels' space must be one of {LEVEL_COARSE}, got {coarse!r}")
    from .problems import operator_problem
    out, d, problem_l = [], decomposition, A
    for depth in range(levels - 2):
        if d.coarse_size == 0:
            raise ValueError(f"level {depth} has no coarse space: --levels {levels} needs a coarse space "
                             "on every level but the top")
        n_l = d.coarse_size
        if n_l < 4:
            raise ValueError(f"level {depth + 1} has only {n_l} rows: too small for {levels} levels")
        N = max(2, min(n_l // 2, round(n_l / _coarsening(n_l, top_size, levels - 2 - depth))))
        part, cores, grid = _tiles(d, N) if partition == "tiles" else (None, None, None)
        if part is not None and _spreads(d, len(cores), coarse):
            d, problem_l = _tiled_level(d, part, cores, grid, delta, coarse)
            out.append(Level(None, d, problem_l))
            continue
        A_l = d.coarse_operator(problem_l) if hasattr(problem_l, "rows") else sp.csr_matrix(d.phi.T @ problem_l @ d.phi)
        A_l = sp.csr_matrix(A_l, copy=True)
        A_l.eliminate_zeros()
        try:
            d = algebraic(A_l, N, delta, pou="count", coarse=coarse, partition=partition, cores=cores)
        except ValueError:  # a small, densely coupled level: one overlap step would cover it all
            d = algebraic(A_l, N, 0, pou="count", coarse=coarse, partition=partition, cores=cores)
        d.core_grid = grid
        problem_l = operator_problem(A_l)
        out.append(Level(A_l, d, problem_l))
    return out


def _spreads(d, tiles, coarse):
    """Whether the level below d is built as per-rank shares: d is one, and every rank gets a tile."""
    comm = getattr(d, "comm", None)
    return (hasattr(d, "A0_local") and comm is not None and comm.Get_size() > 1 and tiles >= comm.Get_size()
            and coarse == "harmonic")


def _tiled_level(d, part, cores, grid, delta, coarse):
    """(share, problem) of the coarse level below the share d, built per rank (parallel/coarse_level.py)."""
    from .parallel.coarse_level import tiled_share
    from .parallel.share import rows_problem
    level, rows, U = tiled_share(d, cores, part, grid, delta, coarse, d.comm)
    return level, rows_problem(rows, U, (level.n,))


def _tiles(d, count):
    """(part, cores, tile grid): about ``count`` tiles of d's core grid, fewer while a tile would be empty."""
    from .tiling import anchor_cores, tile_cores, tile_grid
    grid = getattr(d, "core_grid", None) or tuple(d.layout)
    home = anchor_cores(d, _core_lookup(d))
    while True:
        tiles = tile_grid(grid, count)
        try:
            return (*tile_cores(home, grid, tiles), tiles)
        except ValueError:
            if count <= 1:
                raise
            count //= 2


def _core_lookup(d):
    """Global node -> core of d: arithmetic for a share, an array for a whole decomposition."""
    if hasattr(d, "core_map"):
        return d.core_map.core_of
    core = np.empty(d.n, dtype=np.int64)
    for c, nodes in enumerate(d.cores):
        core[nodes] = c
    return lambda nodes: core[np.asarray(nodes, dtype=np.int64)]


def _coarsening(n_l, top_size, remaining):
    """Rows per coarse subdomain at a level with ``remaining`` coarse decompositions still to build."""
    if top_size == 0:
        return COARSE_ROWS
    return max((n_l / top_size) ** (1.0 / remaining), 1.0)


def levels_of(problem, spec, levels=2, top_size=TOP_SIZE, level_coarse="harmonic", layout=None,
              level_partition="tiles"):
    """(level 0's decomposition, its coarse levels) for ``spec`` on ``problem``, built once per problem.

    Every later call with the same spec, levels and top size returns the same
    objects, so a run builds each decomposition and coarse basis once. With a
    ``layout`` of more than one domain rank, intervals, boxes and algebraic
    row blocks on a family with A, and row blocks of a matrix file, are this
    rank's share only (parallel/setup.py: its subdomains, weights and rows of
    Phi), and so is every coarse level below with a tile per rank
    (parallel/coarse_level.py). Collective then: every rank calls alike.
    """
    from .decomposition import decomposition_from_spec
    cache = problem.__dict__.setdefault("_levels", {})
    shared = _share_applies(problem, spec, layout)
    key = json.dumps(spec, sort_keys=True) + (f"@{layout.domain_rank}/{layout.domain_size}" if shared else "")
    if key not in cache:
        cache[key] = (_share(problem, spec, layout) if shared else decomposition_from_spec(spec, problem), {})
    d, below = cache[key]
    depth = (levels, top_size, level_coarse, level_partition) if levels > 2 else (2,)
    if depth not in below:
        below[depth] = coarse_levels(d, problem, levels, top_size, coarse=level_coarse, partition=level_partition)
    return d, below[depth]


def _share_applies(problem, spec, layout):
    """Whether a rank builds only its share: distributed, and either subdomains on a family's stencil
    rows (intervals, boxes, algebraic row blocks) or algebraic ones on a matrix file this rank reads
    its rows of (:func:`_matrix_share`)."""
    from .parallel.setup import FAMILY_SHARE_KINDS
    if layout is None or layout.domain_size <= 1 or not problem.has_operator:
        return False
    if _matrix_share_applies(problem, spec):
        return True
    if problem.stencil is None:
        return False
    return spec.get("kind") in FAMILY_SHARE_KINDS or (problem.matrix is None and _family_algebraic(spec))


def _family_algebraic(spec):
    """Algebraic row blocks with a coarse space a share builds (parallel/setup.algebraic_share)."""
    return (spec.get("kind") == "algebraic" and spec.get("partition", "blocks") == "blocks"
            and spec.get("coarse") in ("harmonic", "none"))


def _matrix_share_applies(problem, spec):
    """A matrix file not in memory, algebraic row blocks, count weights: what petsc/local.py builds."""
    from .problems.families import matrix_shape
    return (problem.matrix is not None and problem._A is None and spec.get("kind") == "algebraic"
            and spec.get("pou") == "count" and spec.get("partition", "blocks") == "blocks"
            and spec.get("coarse") in ("harmonic", "none") and matrix_shape(problem.matrix) is not None)


def _matrix_share(problem, spec, layout):
    """A rank's share of an algebraic decomposition of a matrix file, from its rows alone.

    The file is read by mat_read (MatLoad, each rank its rows; an .npz sent
    out from rank 0, which alone reads it), the share built as
    DDAttentionPC builds its own (petsc/local.py: MatIncreaseOverlap,
    MatCreateSubMatrices, harmonic rows from local solves); the problem then
    answers A's rows at the rank's subdomains and ring only, so nothing on
    any rank reads the whole matrix.
    """
    from petsc4py import PETSc
    from .petsc.local import local_share
    from .petsc.matrices import mat_read
    P = mat_read(problem.matrix, PETSc.Comm(layout.domain_comm))
    try:
        _check_diagonal(P, problem.matrix)
        share, local = local_share(P, None, spec, layout)
    finally:
        P.destroy()
    problem.stencil = local.stencil
    return share


def _check_diagonal(P, path):
    """A positive diagonal, checked on every rank's rows: the SPD test that costs nothing (collective).

    The rest of positive definiteness is checked where A is factored: the
    subdomain factorizations, and the distributed LDL^T of ``solve`` data.
    """
    from mpi4py import MPI
    diagonal = P.getDiagonal()
    bad = P.getComm().tompi4py().allreduce(int((diagonal.getArray(readonly=True) <= 0).sum()), op=MPI.SUM)
    diagonal.destroy()
    if bad:
        raise CollectiveError(f"the matrix in {path} is not positive definite ({bad} diagonal entries <= 0); "
                              "pddattn needs a symmetric positive definite operator")


def _share(problem, spec, layout):
    from .parallel.layout import check_distribution
    from .parallel.setup import algebraic_share, family_share
    import types
    N = spec["N"]
    counts = types.SimpleNamespace(N=int(np.prod(N)), spec=spec, layout=tuple(N) if isinstance(N, list) else (N,))
    check_distribution(counts, layout.world_size, layout.data_size)
    try:
        if _matrix_share_applies(problem, spec):
            return _matrix_share(problem, spec, layout)
        if spec.get("kind") == "algebraic":
            return algebraic_share(problem, spec, layout, layout.domain_comm)
        return family_share(problem, spec, layout, layout.domain_comm)
    except ConfigurationError:
        raise
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None

