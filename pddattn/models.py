"""Build an operator from plain data: a training config or a checkpoint's architecture.

Data flows one way: problem (A) -> decomposition (index sets, Phi) -> operator.
One place decides serial versus distributed: a layout with more than one
domain rank gets a DistributedDDAttention, anything else the serial module
(data replicas each hold the whole model).
"""
from __future__ import annotations

import math
import os

import torch

from .decomposition import parse_subdomains
from .errors import ConfigurationError
from .fno import FNOOperator, fno_missing
from .hierarchy import TOP_SIZE, build_hierarchy
from .operators import DDAttention, GlobalAttention
from .parallel.layout import SerialLayout, check_distribution
from .parallel.operator import DistributedDDAttention
from .problems import make_problem, parse_grid, problem_from_spec
from .problems.families import matrix_shape, unread_matrix_problem

__all__ = ["MODELS", "problem_of", "decomposition_spec", "hierarchy_of", "architecture", "upgrade_architecture",
           "model_from_architecture", "schwarz_operator"]

MODELS = ("dd", "global", "fno")
_DEFAULT_DECOMPOSITION = {1: "intervals", 2: "boxes"}
_DEFAULT_SUBDOMAINS = {"boxes": "4x4"}  # else 32
_DEFAULT_COARSE = {"intervals": "hat", "boxes": "q1", "algebraic": "harmonic"}


def problem_of(cfg, layout=None):
    """The Problem a config (dict) names: family, grid (or n), coefficient and its seed, or a matrix.

    On a ``layout`` of more than one domain rank a matrix file (PETSc binary
    or .npz) is not read here: each rank gets its rows when its share is
    built (hierarchy.py, petsc.matrices.mat_read), so no rank keeps the whole
    A; its SPD check is then the subdomain factorizations' and the
    distributed solver's, not a whole LU.
    """
    grid = parse_grid(cfg["grid"]) if cfg.get("grid") else (cfg["n"],)
    family = "matrix" if cfg.get("matrix") else cfg.get("problem", "laplace1d")
    if family == "matrix" and layout is not None and layout.domain_size > 1 and \
            os.path.isfile(cfg["matrix"]) and matrix_shape(cfg["matrix"]) is not None:
        return unread_matrix_problem(cfg["matrix"], grid if cfg.get("grid") else None, cfg.get("coefficient_seed", 0))
    return make_problem(family, None if family == "matrix" and not cfg.get("grid") else grid,
                        cfg.get("coefficient", "const"), cfg.get("coefficient_seed", 0), cfg.get("matrix"))


def decomposition_spec(cfg, problem):
    """The decomposition spec of a config: builder, N (or Nx x Ny), delta, pou, coarse space."""
    kind = cfg.get("decomposition") or ("algebraic" if problem.family == "matrix" and problem.dim == 1
                                        else _DEFAULT_DECOMPOSITION[problem.dim])
    given = cfg.get("subdomains")
    N = parse_subdomains(_DEFAULT_SUBDOMAINS.get(kind, 32) if given is None else given)
    if kind == "boxes" and len(N) == 1:
        side = math.isqrt(N[0])
        if side * side != N[0]:
            raise ValueError(f"boxes need Nx x Ny subdomains (e.g. 4x4), got {cfg['subdomains']}")
        N = (side, side)
    if kind != "boxes" and len(N) == 2:
        N = (N[0] * N[1],)
    coarse = cfg.get("coarse_space") or _DEFAULT_COARSE[kind]
    return {"kind": kind, "N": list(N) if kind == "boxes" else N[0], "delta": cfg["overlap"],
            "pou": cfg.get("pou", "count"), "coarse": coarse}


def hierarchy_of(cfg, problem, layout=None):
    """The Hierarchy a DD config (dict) names on ``problem``: built here, once, and handed down.

    ``layout``: the MPI layout the model will run on; a distributed one builds
    this rank's share of the decomposition only (``hierarchy.build_hierarchy``).
    """
    return build_hierarchy(problem, decomposition_spec(cfg, problem), cfg.get("levels", 2),
                           cfg.get("top_size", TOP_SIZE), cfg.get("level_coarse", "harmonic"), layout)


def architecture(cfg, problem=None, hierarchy=None):
    """The architecture part of a training config (dict), as stored in checkpoints.

    A DD model's is read off its ``hierarchy`` (:func:`hierarchy_of`, built
    here when not given).
    """
    problem = problem or problem_of(cfg)
    if cfg["model"] == "global":
        return GlobalAttention.architecture(problem, cfg["rank"], cfg["symmetric"])
    if cfg["model"] == "fno":  # the data scales are added by assembly.assemble
        return FNOOperator.architecture(problem, problem.grid, cfg.get("fno_width", 32), cfg.get("fno_modes", 16),
                                        cfg.get("fno_layers", 4))
    hierarchy = hierarchy or hierarchy_of(cfg, problem)
    levels = cfg.get("levels", 2)
    top = hierarchy.levels[-1].decomposition  # with levels > 2 the coarse rank is the top level's (default: full)
    below = hierarchy.levels[1].decomposition if levels > 2 else None
    r0 = top.coarse_size if cfg.get("coarse_rank") is None else cfg["coarse_rank"]
    return DDAttention.architecture(problem, hierarchy.decomposition, cfg["rank"], r0, cfg["symmetric"], levels,
                                    cfg.get("top_size", TOP_SIZE), below)


def upgrade_architecture(arch):
    """A version-1 architecture (1D Laplacian, keys n, N, delta, pou) in today's form."""
    if "problem" in arch:
        return arch
    problem = make_problem("laplace1d", (arch["n"],)).spec()
    out = {k: v for k, v in arch.items() if k not in ("N", "delta", "pou")}
    out["problem"] = problem
    if arch["model"] == "dd":
        out["decomposition"] = {"kind": "intervals", "N": arch["N"], "delta": arch["delta"], "pou": arch["pou"],
                                "coarse": "hat" if arch.get("coarse", True) else "none"}
    return out


def model_from_architecture(arch, layout=None, *, problem=None, dtype=None, device=None, init="random",
                            init_scale=0.1, seed=0, hierarchy=None):
    """A GlobalAttention, DDAttention or DistributedDDAttention for ``arch``.

    ``problem`` is rebuilt from the architecture's spec when not given; a DD
    model's ``hierarchy`` (the levels) is built from it when not given.
    Raises ConfigurationError (identically on every rank) when the layout
    cannot hold the model.
    """
    layout = layout or SerialLayout()
    arch = upgrade_architecture(arch)
    kind = arch.get("model")
    if kind not in MODELS:
        raise ConfigurationError(f"unknown model {kind!r}; choose one of {MODELS}")
    try:
        problem = problem or problem_from_spec(arch["problem"])
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    if kind in ("global", "fno") and layout.domain_size > 1:
        raise ConfigurationError(f"the {kind} model runs data-parallel only: pass --data-parallel "
                                 f"{layout.world_size} (one replica per rank)")
    if kind == "fno":
        if fno_missing():
            raise ConfigurationError(fno_missing())
        return FNOOperator(arch["grid"], arch["width"], arch["modes"], arch["layers"], arch.get("scales", (1.0, 1.0)),
                           seed=seed, dtype=dtype, device=device, problem=problem)
    if kind == "global":
        return GlobalAttention(arch["n"], arch["rank"], symmetric=arch["symmetric"], init_scale=init_scale,
                               seed=seed, dtype=dtype, device=device, problem=problem, init=init)
    levels, top_size = arch.get("levels", 2), arch.get("top_size", TOP_SIZE)
    try:
        hierarchy = hierarchy or build_hierarchy(problem, arch["decomposition"], levels, top_size,
                                                 arch.get("level_coarse", "harmonic"), layout,
                                                 arch.get("level_partition", "blocks"))  # absent: before partitions
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    d, below, problem = hierarchy.decomposition, hierarchy.below, hierarchy.problem
    check_distribution(d, layout.world_size, layout.data_size)
    kwargs = dict(r=arch["rank"], r0=arch.get("coarse_rank") if d.coarse_size else None,
                  symmetric=arch["symmetric"], init=init,
                  init_scale=init_scale, seed=seed, dtype=dtype, device=device, problem=problem,
                  levels=levels, top_size=top_size, coarse_levels=below)
    if layout.domain_size == 1:
        return DDAttention(d, **kwargs)
    return DistributedDDAttention(d, layout=layout, **kwargs)


def schwarz_operator(hierarchy, layout=None, rank=0, init="exact", r0=None):
    """Two-level (or multilevel) Schwarz on a hierarchy (whole, or a rank's share): applied by sparse factorizations
    (init='exact', full rank) or as its Schwarz factors, the best rank-``rank`` parts of each A_i^-1
    (init='schwarz'). Its coarse levels are built from the summed A_1, as in training.
    """
    share, problem, below = hierarchy.decomposition, hierarchy.problem, hierarchy.below
    full = max([share.max_size] + [level.decomposition.max_size for level in below])
    kwargs = dict(r=rank or full, r0=r0, symmetric=True, init=init, dtype=torch.float64,
                  problem=problem, levels=len(below) + 2, coarse_levels=list(below))
    if layout is None or layout.domain_size == 1:
        return DDAttention(share, **kwargs)
    return DistributedDDAttention(share, layout=layout, **kwargs)
