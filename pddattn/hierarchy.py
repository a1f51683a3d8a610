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

:func:`build_hierarchy` is the one place a decomposition spec becomes
objects; its :class:`Hierarchy` is handed to whoever needs the levels (the
architecture, the model, the Schwarz start, the PC). A level's *structure*
(index sets, partition of unity, the patterns of A_l, Phi_{l+1} and
A_{l+1}, the harmonic basis's plan) is built once; its *values* (A_l's
entries, Phi_{l+1}, A_{l+1}) follow any A of the same pattern through
:meth:`Hierarchy.update`, or B of them at once through
:meth:`Hierarchy.values`. The factorizations that apply a level have one
owner, the operator's exact parametrization (factors.Exact), which
refactors them numerically when the operator takes new values.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
import scipy.sparse as sp

from .decomposition import algebraic, decomposition_from_spec
from .errors import ConfigurationError
from .exact import SparseSolve
from .parallel.coarse_level import tiled_share, tiled_values
from .parallel.layout import check_distribution
from .parallel.setup import FAMILY_SHARE_KINDS, algebraic_share, family_share
from .parallel.share import rows_problem
from .patterns import Gather, Pattern, canonical, onto
from .problems import operator_problem
from .problems.families import block_diagonal, matrix_shape
from .schwarz import galerkin
from .tiling import anchor_cores, tile_cores, tile_grid

__all__ = ["Hierarchy", "Level", "LevelPlan", "Values", "build_hierarchy", "coarse_levels", "TOP_SIZE",
           "COARSE_ROWS", "LEVEL_COARSE"]

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
    plan: object = None  # how its values follow A (LevelPlan); None on a per-rank share


@dataclasses.dataclass(frozen=True)
class LevelPlan:
    """A level's structure for its values: the patterns of A_l and A_{l+1}, and Phi_{l+1}'s plan.

    ``phi`` is the harmonic basis's :class:`~pddattn.coarse.HarmonicPlan`, or
    None where Phi does not depend on A's values (hat, q1, Nicolaides, none);
    ``coarse`` is A_{l+1}'s pattern (the next level's, or the top's), None
    without a coarse space; :attr:`blocks` gathers diag(R_i A R_i^T), made on
    first use (the family model's blocks).
    """

    pattern: Pattern
    phi: object
    coarse: Pattern | None
    subdomains: list

    @classmethod
    def of(cls, A, decomposition, coarse):
        return cls(Pattern.of(A), decomposition.coarse_plan, coarse, decomposition.subdomains)

    @functools.cached_property
    def blocks(self):
        A = self.pattern.matrix(np.ones(self.pattern.nnz))
        return Gather.of(lambda M: block_diagonal(lambda rows: M[rows], self.subdomains), A)


LEVEL_COARSE = ("harmonic", "nicolaides")
SHARE_COARSE = ("harmonic", "nicolaides", "none")  # what a share of algebraic row blocks builds from its rows


def coarse_levels(decomposition, A, levels, top_size=TOP_SIZE, delta=1, coarse="harmonic", partition="tiles"):
    """The coarse levels 1 .. levels-2 below a decomposition of A (empty for levels <= 2).

    Parameters
    ----------
    decomposition : Decomposition
        Level 0's, with its coarse basis Phi_1.
    A : Problem
        Level 0's operator (A_1 from blocks of its rows).
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
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
    if isinstance(top_size, bool) or not isinstance(top_size, int) or top_size < 0:
        raise ValueError(f"top size must be an integer >= 0 (0: fixed coarse subdomains), got {top_size!r}")
    if coarse not in LEVEL_COARSE:
        raise ValueError(f"the coarse levels' space must be one of {LEVEL_COARSE}, got {coarse!r}")
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
        if part is not None and _spreads(d, len(cores)):
            d, problem_l = _tiled_level(d, part, cores, grid, delta, coarse)
            out.append(Level(None, d, problem_l))
            continue
        A_l = sp.csr_matrix(d.coarse_operator(problem_l), copy=True)
        A_l.eliminate_zeros()
        try:
            d = algebraic(A_l, N, delta, pou="count", coarse=coarse, partition=partition, cores=cores)
        except ValueError:  # a small, densely coupled level: one overlap step would cover it all
            d = algebraic(A_l, N, 0, pou="count", coarse=coarse, partition=partition, cores=cores)
        d.core_grid = grid
        problem_l = operator_problem(A_l)
        out.append(Level(A_l, d, problem_l))
    return out


def _spreads(d, tiles):
    """Whether the level below d is built as per-rank shares: d is one, and every rank gets a tile."""
    comm = d.comm  # None on a whole decomposition
    return comm is not None and comm.Get_size() > 1 and tiles >= comm.Get_size()


def _tiled_level(d, part, cores, grid, delta, coarse):
    """(share, problem) of the coarse level below the share d, built per rank (parallel/coarse_level.py)."""
    level, rows, U = tiled_share(d, cores, part, grid, delta, coarse, d.comm)
    return level, rows_problem(rows, U, (level.n,))


def _tiles(d, count):
    """(part, cores, tile grid): about ``count`` tiles of d's core grid, fewer while a tile would be empty."""
    grid = getattr(d, "core_grid", None) or tuple(d.layout)
    home = anchor_cores(d)
    while True:
        tiles = tile_grid(grid, count)
        try:
            return (*tile_cores(home, grid, tiles), tiles)
        except ValueError:
            if count <= 1:
                raise
            count //= 2


def _coarsening(n_l, top_size, remaining):
    """Rows per coarse subdomain at a level with ``remaining`` coarse decompositions still to build."""
    if top_size == 0:
        return COARSE_ROWS
    return max((n_l / top_size) ** (1.0 / remaining), 1.0)




# ------------------------------------------------------------------ the hierarchy
@dataclasses.dataclass
class Values:
    """The values of B operators on one hierarchy's structure, each with a leading operator dimension.

    ``A[l]`` is (B, nnz of A_l) on ``hierarchy.levels[l].plan.pattern``;
    ``phi[l]`` (B, nnz of Phi_{l+1}) on the level's Phi pattern, None where
    Phi does not depend on A; ``top`` (B, nnz of A_top) on the last level's
    coarse pattern (None without a coarse space).
    """

    A: list
    phi: list
    top: np.ndarray | None

    @property
    def count(self):
        return len(self.A[0])


class Hierarchy:
    """The levels of DD attention on one operator: structure built once, values recomputed per operator.

    ``levels[0]`` holds the problem's A and its decomposition, ``levels[l]``
    (l >= 1) A_l = Phi_l^T A_{l-1} Phi_l and its decomposition; below the
    last is the top A_top (:attr:`top`), dense in the operator. Build it
    with :func:`build_hierarchy`.

    >>> from pddattn.problems import make_problem
    >>> p, q = (make_problem("diffusion2d", (31, 31), "lognormal:1", seed=s) for s in (1, 2))
    >>> spec = {"kind": "boxes", "N": [4, 4], "delta": 1, "pou": "count", "coarse": "harmonic"}
    >>> h = build_hierarchy(p, spec)
    >>> h.update(q.A).same_structure(p.A), abs(h.decomposition.phi - build_hierarchy(q, spec).decomposition.phi).max() < 1e-12
    (True, True)
    """

    builds = 0  # hierarchies made in this process: what tests/test_build_once.py counts

    def __init__(self, levels, top=None):
        Hierarchy.builds += 1
        self.levels, self.top = list(levels), top
        self._interiors = {}  # level -> the harmonic interiors' factorization, kept for the next update

    @property
    def decomposition(self):
        """Level 0's decomposition."""
        return self.levels[0].decomposition

    @property
    def problem(self):
        """Level 0's operator as a Problem."""
        return self.levels[0].problem

    @property
    def below(self):
        """The coarse levels 1 .. L-2."""
        return self.levels[1:]

    @property
    def updatable(self):
        """Whether every level has a plan: whole decompositions (per-rank shares follow by
        :meth:`follow_share`)."""
        return all(level.plan is not None for level in self.levels)

    def same_structure(self, A):
        """Whether A has the pattern this hierarchy was built on (so :meth:`update` applies)."""
        return self.updatable and self.levels[0].plan.pattern.same(canonical(A))

    def update(self, A, problem=None):
        """New values for A, of level 0's pattern, in place: A_l, Phi_{l+1} and A_top.

        The factorizations that apply the levels belong to the operator's
        parametrization (factors.Exact), which refactors them numerically when
        it takes these values (``DDAttention.refactor``).

        ``problem`` names A (default: A as an operator on level 0's grid).
        Returns self. ValueError when A has another pattern.
        """
        self._check_updatable()
        A = canonical(A)
        self.levels[0].plan.pattern.entries(A)  # ValueError for another pattern, before anything changes
        problem = problem or operator_problem(A, self.problem.grid)
        for depth, level in enumerate(self.levels):
            phi = level.plan.phi.phi(A, self._interior_factor(depth, A)) if level.plan.phi is not None else \
                level.decomposition.phi
            d = level.decomposition.with_phi(phi)
            self.levels[depth] = Level(A, d, problem, level.plan)
            if level.plan.coarse is None:
                break
            # d keeps the product: the exact top's refactorization reads it (factors.Exact.follow)
            A = level.plan.coarse.matrix(onto(d.coarse_operator(problem), level.plan.coarse))
            problem = operator_problem(A)
        self.top = A if self.levels[-1].plan.coarse is not None else None
        return self

    def follow_share(self, share, problem):
        """New values on a hierarchy of per-rank shares, in place: level 0's ``share`` (taken on its kept
        structure: setup.share_on_values) and ``problem`` (its rows), and each tiled coarse level's share
        on the values of the one above, its structure kept (coarse_level.tiled_values). Collective.

        Returns self, or None, changing nothing, where a level below is whole (built from the summed
        A_l: one rank, or fewer tiles than ranks) or its pattern changed: the caller builds them anew.
        """
        levels, d = [Level(None, share, problem)], share
        for level in self.below:
            if level.A is not None:
                return None
            try:
                d, rows, U = tiled_values(d, level.decomposition, d.comm)
            except ValueError:  # decided on every rank alike
                return None
            levels.append(Level(None, d, rows_problem(rows, U, (d.n,))))
        self.levels = levels
        return self

    def values(self, operators):
        """The values of B operators of level 0's pattern, batched (:class:`Values`); the hierarchy's own
        values stay. Each Phi costs one numeric factorization (the symbolic one is shared)."""
        self._check_updatable()
        A = [canonical(M) for M in operators]
        if not A:
            raise ValueError("values of no operators: pass at least one")
        out = Values([], [], None)
        for depth, level in enumerate(self.levels):
            plan = level.plan
            data = np.stack([plan.pattern.entries(M) for M in A])
            out.A.append(data)
            factor = SparseSolve(plan.phi.block.matrix(data[0])) if plan.phi is not None else None
            phis = [plan.phi.phi(M, factor if b == 0 else factor.refactor(plan.phi.block.matrix(row))) if factor
                    else level.decomposition.phi for b, (M, row) in enumerate(zip(A, data))]
            out.phi.append(np.stack([p.data for p in phis]) if plan.phi is not None else None)
            if factor is not None:
                factor.free()
            if plan.coarse is None:
                break
            A = [plan.coarse.matrix(onto(galerkin(operator_problem(M), p), plan.coarse)) for M, p in zip(A, phis)]
        if self.levels[-1].plan.coarse is not None:
            out.top = np.stack([M.data for M in A])
        return out

    def free(self):
        """Release the harmonic interiors' factorizations (PETSc objects) kept for the next update."""
        for solve in self._interiors.values():
            solve.free()
        self._interiors = {}

    def _interior_factor(self, depth, A):
        """diag(A_II) of level ``depth``'s harmonic basis for A, factored: numerically only after the first."""
        block = self.levels[depth].plan.phi.block.matrix(self.levels[depth].plan.pattern.entries(A))
        solve = self._interiors.get(depth)
        self._interiors[depth] = SparseSolve(block) if solve is None else solve.refactor(block)
        return self._interiors[depth]

    def _check_updatable(self):
        if not self.updatable:
            raise ConfigurationError("this hierarchy holds a rank's share of its levels; its new values are "
                                     "taken from the rows by follow_share (the PC's set-up does: petsc/local.py)")


def build_hierarchy(problem, spec, levels=2, top_size=TOP_SIZE, level_coarse="harmonic", layout=None,
                    level_partition="tiles", share=None):
    """The :class:`Hierarchy` of ``spec`` on ``problem``: the one place a decomposition spec becomes levels.

    With a ``layout`` of more than one domain rank, intervals, boxes and
    algebraic row blocks on a family with A, and row blocks of a matrix file,
    are this rank's share only (parallel/setup.py: its subdomains, weights
    and rows of Phi), and so is every coarse level below with a tile per rank
    (parallel/coarse_level.py). Collective then: every rank calls alike. The
    problem is not changed: a matrix file read by rows gives level 0 a
    problem of its own that answers those rows. ``share``: level 0 as the
    caller built it from its rows of a distributed Mat (the PC: petsc/local.py),
    with ``problem`` answering those rows.
    """
    if share is not None:
        d = share
    elif _share_applies(problem, spec, layout):
        d, problem = _share(problem, spec, layout)
    else:
        d = decomposition_from_spec(spec, problem)
    below = coarse_levels(d, problem, levels, top_size, coarse=level_coarse, partition=level_partition)
    out = [Level(problem.A if _whole(d, problem) else None, d, problem)] + below
    if not all(_whole(level.decomposition, level.problem) for level in out):
        return Hierarchy(out)
    patterns = [Pattern.of(level.A) for level in out[1:]]
    last = out[-1]
    top = canonical(galerkin(last.problem, last.decomposition.phi)) if last.decomposition.coarse_size else None
    patterns.append(Pattern.of(top) if top is not None else None)
    for level, coarse in zip(out, patterns):
        level.plan = LevelPlan.of(level.A, level.decomposition, coarse)
    return Hierarchy(out, top)


def _whole(d, problem):
    """Whether a level holds its whole decomposition on a problem with A in memory (so it has a plan)."""
    return d.whole and problem.has_operator and not problem.rows_only


def _share_applies(problem, spec, layout):
    """Whether a rank builds only its share: distributed, and either subdomains on a family's stencil
    rows (intervals, boxes, algebraic row blocks) or algebraic ones on a matrix file this rank reads
    its rows of (petsc/local.matrix_file_share)."""
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
            and spec.get("coarse") in SHARE_COARSE)


def _matrix_share_applies(problem, spec):
    """A matrix file not in memory, algebraic row blocks, count weights: what petsc/local.py builds."""
    return (problem.matrix is not None and problem._A is None and spec.get("kind") == "algebraic"
            and spec.get("pou") == "count" and spec.get("partition", "blocks") == "blocks"
            and spec.get("coarse") in SHARE_COARSE and matrix_shape(problem.matrix) is not None)


def _share(problem, spec, layout):
    """(this rank's share, the problem level 0 answers rows from)."""
    N = spec["N"]
    counts = dataclasses.make_dataclass("Counts", ["N", "spec", "layout"])(
        int(np.prod(N)), spec, tuple(N) if isinstance(N, list) else (N,))
    check_distribution(counts, layout.world_size, layout.data_size)
    try:
        if _matrix_share_applies(problem, spec):
            from .petsc.local import matrix_file_share  # petsc4py: only for a matrix file read by rows
            share, stencil = matrix_file_share(problem, spec, layout)
            return share, dataclasses.replace(problem, stencil=stencil)
        if spec.get("kind") == "algebraic":
            return algebraic_share(problem, spec, layout, layout.domain_comm), problem
        return family_share(problem, spec, layout, layout.domain_comm), problem
    except ConfigurationError:
        raise
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
