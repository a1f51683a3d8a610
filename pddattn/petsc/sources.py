"""Where DDAttentionPC's model comes from, and how it takes new values of the same operator.

Its sources, chosen by the options:

- ``rows``: built from the operator, from this rank's rows of it (local.py):
  every PC from the operator (harmonic, q1, Nicolaides or no coarse space);
  the operator is never gathered;
- ``stored``: a trained checkpoint (``-pddattn_model``), on the rows of its
  own problem (a family's stencil), the operator gathered only where that
  problem cannot be rebuilt here (the one place it cannot be avoided);
- ``family`` / ``family-rows``: a generated-factor model (family_source.py).

:func:`build` makes a :class:`Source` (the model, what describes it, the
numbering to PETSc's rows); :func:`update` takes new values of a Mat of the
same structure: the rows source's shares follow them on their structure
(Hierarchy.follow_share; rebuilt on the exchange plan for another pattern),
then the factor parametrization follows (numeric refactorizations). It
answers alike on every rank.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..checkpoint import CheckpointError, architecture_of, read_collective, restore, stored_model
from ..decomposition import parse_subdomains
from ..errors import ConfigurationError
from ..hierarchy import build_hierarchy
from ..models import architecture, model_from_architecture, schwarz_operator
from ..operators import LOADED
from ..problems import operator_problem, problem_from_spec
from ..problems.families import spec_label
from ..spectrum import fit_probe
from ..train import TrainConfig, fit_condition
from . import family_source
from .local import Numbering, local_share, share_values
from .matrices import dmda_grid, gather_operator

__all__ = ["Source", "build", "update", "same_structure"]


@dataclasses.dataclass
class Source:
    """A PC's model and what describes it: ``info`` (source, arch, options, hierarchy, ...), ``to_petsc``
    (natural node numbers -> the operator's rows) and, for a stored model, its fit ``probe``."""

    kind: str
    model: object
    info: dict
    to_petsc: object
    probe: float | None = None


def build(opts, P, pc, layout):
    """The model the options ask for, on the operator P (collective)."""
    if opts["model"] and family_source.is_family_model(opts["model"], layout):
        source = family_source.build(opts, P, pc, layout, Source, schwarz_operator)
    elif opts["model"]:
        source = _stored(opts, P, pc.getDM(), layout)
    else:
        source = _from_rows(opts, P, pc, layout)
    source.info["options"] = opts
    return source


def same_structure(source, opts, P):
    """The one "same structure?" test: the same Mat (handle and size) under the same options, with a model
    that follows A (built from the operator, untrained, or generating its factors from it): then new values
    are an :func:`update`."""
    if source is None or source.kind == "stored" or opts["train_steps"] or opts != source.info["options"]:
        return False
    return source.info["mat"] == (int(P.handle), P.getSize()[0])


def update(source, opts, P, pc, layout):
    """Take P's new values into ``source`` in place; False (on every rank alike) when the structure changed."""
    try:
        update_of = {"rows": lambda: _update_rows(source, opts, P, pc, layout),
                     "family": lambda: family_source.update(source, P, pc),
                     "family-rows": lambda: False}  # new values: generated anew from the new rows
        ok = update_of[source.kind]()
    except ValueError:
        ok = False
    return bool(layout.comm.allreduce(int(ok), op=_mpi().MIN)) if layout.world_size > 1 else ok


# --------------------------------------------------------------------- rows
def _from_rows(opts, P, pc, layout):
    """Exact (sparse factorizations) at full rank, Schwarz factors at a given rank, dense or trained."""
    spec = _spec_of(opts, pc, dmda_grid(pc.getDM()), layout.world_size)
    try:
        share, problem = local_share(P, pc.getDM(), spec, layout)
        hierarchy = _hierarchy_of(share, problem, spec, opts)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    exact = opts["factors"] == "sparse" and not opts["rank"] and not opts["train_steps"]
    model = schwarz_operator(hierarchy, layout, opts["rank"], "exact" if exact else "schwarz")
    arch = _architecture(hierarchy, opts, model.r)
    info = {"source": "built from the operator, from this rank's rows" + ("" if exact else (
                f", truncated Schwarz factors (rank {model.r})" if opts["rank"] else ", dense Schwarz factors")),
            "arch": arch, "from_rows": True, "rows_held": share.rows_held, "hierarchy": hierarchy,
            "mat": (int(P.handle), P.getSize()[0]), "spec": spec}
    if opts["train_steps"]:
        info["training"] = _train_in_setup(model, opts, layout)
    return Source("rows", model, info, share.numbering.to_petsc)


def _update_rows(source, opts, P, pc, layout):
    """The shares on the new rows' values, their structure kept (level 0 and the tiled coarse levels
    below), else rebuilt: level 0 on its exchange plan, whole coarse levels anew; then the model's values."""
    spec, model = source.info["spec"], source.model
    valued = share_values(P, pc.getDM(), model.decomposition)
    hierarchy = source.info["hierarchy"].follow_share(*valued) if valued else None
    if hierarchy is None:
        share, problem = valued or local_share(P, pc.getDM(), spec, layout, plan=model.decomposition.plan)
        hierarchy = _hierarchy_of(share, problem, spec, opts)
    if not model.refactor(hierarchy.decomposition, hierarchy.problem, hierarchy.below):
        return False
    source.info["hierarchy"] = hierarchy
    return True


def _architecture(hierarchy, opts, r):
    """The PC's model as a checkpoint describes it: models.architecture, as training writes it."""
    cfg = {"model": "dd", "rank": r, "coarse_rank": None, "symmetric": True, "levels": opts["levels"],
           "top_size": opts["top_size"], "level_coarse": opts["level_coarse"]}
    return architecture(cfg, hierarchy.problem, hierarchy)


def _hierarchy_of(share, problem, spec, opts):
    """The hierarchy over a share built from this rank's rows: its coarse levels from the summed A_1."""
    return build_hierarchy(problem, spec, opts["levels"], opts["top_size"], opts["level_coarse"], share=share)


# ------------------------------------------------------------------- stored
def _stored(opts, P, dm, layout):
    """A stored model. Its problem is rebuilt from the checkpoint: a family assembles the rows a rank
    needs from its stencil, so the operator handed to the PC is gathered only when that problem cannot
    be rebuilt here (a matrix file absent) or has no A (learnt from pairs)."""
    path = opts["model"]
    payload = read_collective(path, layout)  # rank 0 reads; every rank gets it or the same error
    arch = architecture_of(payload)
    if arch["model"] != "dd":
        raise CheckpointError(f"{path} holds a {arch['model']} model; DDAttentionPC needs a DD-attention model")
    n = P.getSize()[0]
    if arch["n"] != n:
        raise CheckpointError(f"{path} is a model for n={arch['n']}, but the operator has n={n}")
    carried = P.getName() or ""
    learnt_from_pairs = arch["problem"]["family"] == "data"  # no A to name: the probe decides
    if carried.startswith("pddattn ") and carried[len("pddattn "):] != spec_label(arch["problem"]) \
            and not learnt_from_pairs:
        raise CheckpointError(f"{path} is a model of {spec_label(arch['problem'])}, but the operator is "
                              f"{carried[len('pddattn '):]}")
    try:
        problem = problem_from_spec(arch["problem"])
    except ValueError:  # e.g. the training matrix file is not here: the probe decides
        problem = None
    gathered = problem is None or not problem.has_operator
    if gathered:  # the operator handed to the PC is the A (pairs alone: on their grid)
        grid = None if problem is None else arch["problem"]["grid"]
        problem = operator_problem(gather_operator(P, dm)[0], grid)
    model = stored_model(payload, lambda a: model_from_architecture(a, layout, problem=problem,
                                                                     dtype=torch.float64, init=LOADED))
    restore(payload, model)
    probe = payload.get("progress", {}).get("probe")
    if probe is None:  # a checkpoint from before the probe was stored
        probe = fit_probe(model, problem.A, layout)
    built_from = ("this rank's share, its rows from the stencil" if not model.decomposition.whole else
                  "rebuilt whole on every rank from its stencil or file")
    info = {"source": f"model {path}", "arch": arch, "gathered": gathered, "built_from": built_from}
    return Source("stored", model, info, Numbering(dm).to_petsc, probe)


# ------------------------------------------------------------------ helpers
def _spec_of(opts, pc, grid, size):
    """The decomposition spec of the options: boxes of the DMDA's grid (4x4) or algebraic blocks (16)."""
    text = opts["subdomains"] or _default_subdomains(pc, grid, size)
    try:
        layout_N = parse_subdomains(text)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    kind = "boxes" if len(layout_N) == 2 else "algebraic"
    if kind == "boxes" and (grid is None or len(grid) != 2):
        raise ConfigurationError(f"-{opts['prefix']}pddattn_subdomains {text} needs a 2D DMDA on the PC (the "
                                 f"grid of the boxes); without one give a number of algebraic subdomains")
    N = list(layout_N) if kind == "boxes" else int(np.prod(layout_N))
    return {"kind": kind, "N": N, "delta": opts["overlap"], "pou": "count", "coarse": opts["coarse"]}


def _default_subdomains(pc, grid, size):
    """One subdomain per rank, as PCASM: the DMDA's process grid when there is one."""
    dm = pc.getDM()
    if grid is not None and len(grid) == 2:
        Px, Py = (int(v) for v in dm.getProcSizes())
        return f"{Px}x{Py}"
    return str(size)


def _train_in_setup(model, opts, layout):
    """-pddattn_train_steps: condition-loss training of the PC's own model, on its layout (serial or
    distributed over the PC's ranks: train.fit_condition), kappa estimated at the start and the end.

    The default lr 1e-4 is what a short run needs: on diffusion2d jump:1e4 at 63^2
    (4x4 boxes, delta 2, full ranks) 30 steps took the kappa estimate from 45 to 24
    at 1e-4, while at 1e-3 and 1e-2 it first rose tenfold and ended above the start.
    """
    if model.rank_bound() < model.n:
        raise ConfigurationError(
            f"-{opts['prefix']}pddattn_train_steps needs an invertible M^-1 (the condition loss estimates "
            f"kappa(M A)), but local rank {model.r} gives rank at most {model.rank_bound():,} < n = {model.n:,}; "
            f"leave -{opts['prefix']}pddattn_rank at 0 (full)")
    cfg = TrainConfig.of(model="dd", symmetric=True, loss="condition", steps=opts["train_steps"], lr=opts["train_lr"],
                      warmup=0, dtype="float64")
    return fit_condition(model, cfg, layout)


def _mpi():
    from mpi4py import MPI
    return MPI
