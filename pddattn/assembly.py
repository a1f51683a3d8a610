"""What a configuration builds: the problem, the architecture, the sampler and (DD) the hierarchy.

    problem, arch, sampler, hierarchy = assemble(cfg)       # cfg: a validated TrainConfig

The one place a training configuration becomes objects. A and the levels are
built once here and handed down (to the model, its Schwarz start, the
capacity and the PC); nothing is cached on the problem, and the caller's
problem is never changed (the user's pairs ride on a copy).
"""
from __future__ import annotations

import dataclasses
import typing

from .errors import ConfigurationError
from .fno import data_scales
from .models import architecture, hierarchy_of, problem_of
from .problems import make_sampler, parse_grid
from .problems.pairs import PairsSampler, is_data_file, load_pairs

__all__ = ["Built", "assemble", "data_kind", "pairs_of"]


class Built(typing.NamedTuple):
    """What a configuration builds: the operator, the architecture, the data and (DD) the levels."""

    problem: object
    arch: dict
    sampler: object
    hierarchy: object = None


def assemble(cfg, problem=None, layout=None, hierarchy=None):
    """:class:`Built` (problem, architecture, sampler, hierarchy) for ``cfg``; one-line errors.

    Parameters
    ----------
    cfg : TrainConfig
    problem : Problem, optional
        The operator when the caller has it (it must be the one ``cfg`` names).
    layout : Layout, optional
        Where the model will run (a distributed one builds a rank's share only).
    hierarchy : Hierarchy, optional
        The DD model's levels when the caller has them (compare's models share one).
    """
    flat = cfg.to_dict()
    try:
        pairs = pairs_of(cfg)
        if pairs is not None:
            _check_recorded(cfg, pairs)
            problem = problem or problem_of({**flat, "grid": cfg.problem.grid or pairs.grid})
            _check_pairs_fit(pairs, problem)
            problem = dataclasses.replace(problem, pairs=pairs)  # the caller's problem stays as it was
            sampler = PairsSampler(pairs, cfg.run.seed)
        else:
            problem = problem or problem_of(flat, layout)
        if cfg.model.kind == "dd":  # first: a rank's share gives level 0's problem its rows of A
            hierarchy = hierarchy or hierarchy_of(flat, problem, layout)
            problem = hierarchy.problem
        arch = architecture(flat, problem, hierarchy)
        if pairs is None:
            sampler = make_sampler(data_kind(cfg, problem), problem, cfg.data.modes, cfg.data.alpha, cfg.run.seed)
        if cfg.model.kind == "fno":
            arch["scales"] = list(data_scales(sampler))
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    return Built(problem, arch, sampler, hierarchy)


def pairs_of(cfg):
    """The user's pairs (a PairsData) when the data source names a file or folder, else None."""
    if not is_data_file(cfg.data.source):
        return None
    grid = parse_grid(cfg.problem.grid) if cfg.problem.grid else None
    return load_pairs(cfg.data.source, grid, cfg.data.test_fraction, cfg.run.seed)


def data_kind(cfg, problem):
    """The data kind: as given ('pairs' for a file), else fourier where A has sine modes and solve otherwise."""
    if is_data_file(cfg.data.source):
        return "pairs"
    if cfg.data.source:
        return cfg.data.source
    return "fourier" if problem.constant and problem.family != "matrix" else "solve"


def _check_recorded(cfg, pairs):
    if cfg.data.sha256 and cfg.data.sha256 != pairs.sha256:
        raise ValueError(f"--data {cfg.data.source} has changed since this run was started (SHA-256 "
                         f"{pairs.sha256[:16]}..., recorded {cfg.data.sha256[:16]}...)")


def _check_pairs_fit(pairs, problem):
    """The pairs and a named problem must be on the same nodes."""
    if pairs.n != problem.n or (problem.dim == 2 and tuple(pairs.grid) != tuple(problem.grid)
                                and len(pairs.grid) == 2):
        raise ValueError(f"the pairs in {pairs.path} are on a {'x'.join(map(str, pairs.grid))} grid ({pairs.n} "
                         f"nodes), the {problem.family} problem on {'x'.join(map(str, problem.grid))} "
                         f"({problem.n}); give the problem's --grid")
