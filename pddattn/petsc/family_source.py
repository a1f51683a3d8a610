"""DDAttentionPC with a generated-factor (family) model: ``-pddattn_model fam.pt`` on any operator of its family.

The factors are generated from the operator PETSc passes: its values are
gathered on every rank (the model is whole on each, as the ``gathered``
source; ``-ksp_view`` says so), its grid is the DMDA's or, without one, the
square grid of its size (``-pddattn_grid nx x ny`` states another). New
values of the same Mat are a values update (features, Phi, A_0's
factorization), never a new structure. A Mat the model cannot serve
(another stencil, a grid it cannot tile, a size without a grid) is refused
with one line on every rank.

M(A)^-1 = coarse + generated local term + omega D^-1 is SPD, so CG may use it.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import family_run
from ..checkpoint import CheckpointError
from ..errors import ConfigurationError
from ..problems.families import parse_grid
from .matrices import gather_operator

__all__ = ["is_family_model", "build", "update", "FamilyOnRanks"]


def is_family_model(path, layout):
    """Whether ``path`` holds a family checkpoint (decided on rank 0, told to all)."""
    def peek():
        try:
            return family_run.is_family(torch.load(path, map_location="cpu", weights_only=True))
        except Exception:  # noqa: BLE001 - the stored-model reader says what is wrong with the file
            return False
    return bool(layout.bcast(peek() if layout.is_root else None))


class FamilyOnRanks:
    """The whole family model on every rank, seen by the PC as a model of this rank's own rows.

    ``own_rows``: the natural indices of the rows PETSc gives this rank;
    ``matvec`` takes their values, gathers x over the ranks, applies M(A)^-1
    and returns them again.
    """

    symmetric, has_coarse, exact = True, False, False

    def __init__(self, model, op, own_rows, comm):
        self.model, self.op, self.own_rows, self.comm = model, op, np.asarray(own_rows), comm
        self.n, self.r, self.decomposition = model.n, model.r, model.decomposition
        self._order = np.concatenate(comm.allgather(self.own_rows)) if comm is not None else None

    def eval(self):
        self.model.eval()
        return self

    def free(self):
        self.op.free()

    def to(self, *args, **kwargs):
        self.model.to(*args, **kwargs)
        return self

    def parameters(self):
        return self.model.parameters()

    def num_parameters(self):
        return self.model.num_parameters()

    def rank_bound(self):
        return self.n  # the omega D^-1 shift makes M(A)^-1 SPD

    def matvec(self, x, transpose=False):
        """M(A)^-1 x for x the own rows (m, B); symmetric, so the transpose is itself."""
        if self.comm is None:
            whole = x
        else:
            whole = torch.empty(self.n, x.shape[1], dtype=x.dtype)
            whole[self._order] = torch.cat(self.comm.allgather(x))
        y = self.model.apply_of(self.op)(whole.T).T  # the factors generated once per operator
        return y if self.comm is None else y[self.own_rows]


def _grid(opts, dm_grid, n):
    if opts.get("grid"):
        try:
            return parse_grid(opts["grid"])
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
    grid = dm_grid if dm_grid is not None and len(dm_grid) == 2 else family_run.square_grid(n)
    if grid is None:
        raise ConfigurationError(f"a generated-factor model needs the operator's 2D grid: the Mat has {n} rows, "
                                 f"not a square; give a 2D DMDA or -{opts['prefix']}pddattn_grid nx x ny")
    return grid


def build(opts, P, pc, layout, Source):
    """A Source for the family model in ``opts['model']`` on the operator P (collective)."""
    path = opts["model"]
    payload = layout.bcast(family_run.load(path) if layout.is_root else None)  # rank 0 reads, all get it
    spec, payload = payload
    A, petsc_of_natural, dm_grid = gather_operator(P, pc.getDM())
    grid = _grid(opts, dm_grid, A.shape[0])
    try:
        model = family_run.model_for(spec, payload, A, grid)
        op = model.values([A])[0]
    except ValueError as exc:
        raise CheckpointError(f"{path} cannot serve this operator: {exc}") from None
    rstart, rend = P.getOwnershipRange()
    own = np.nonzero((petsc_of_natural >= rstart) & (petsc_of_natural < rend))[0]
    comm = layout.comm if layout.world_size > 1 else None
    info = {"source": f"generated-factor model {path}", "family": spec, "grid": grid, "gathered": True,
            "mat": (int(P.handle), P.getSize()[0]), "arch": {"problem": {"family": "operator", "grid": list(grid)}}}
    return Source("family", FamilyOnRanks(model, op, own, comm), info, petsc_of_natural.__getitem__)


def update(source, P, pc):
    """New values of the same Mat: the factors generated from them (a values update); False for another
    pattern."""
    A, _, _ = gather_operator(P, pc.getDM())
    model = source.model.model
    if not model.hierarchy.same_structure(A):
        return False
    source.model.op.free()
    source.model.op = model.values([A])[0]
    return True


def view_lines(source):
    """What -ksp_view says about a family model."""
    m, spec = source.model, source.info["family"]
    d = m.decomposition
    return [f"DD attention preconditioner, {source.info['source']}",
            f"factors generated from the operator: {m.num_parameters():,} shared parameters (rank {m.r}, "
            f"generator width {spec.width}, depth {spec.depth}), trained on {spec.operators} members of "
            f"{spec.problem} {spec.coefficient} at {'x'.join(map(str, spec.grid))}",
            f"operator grid {'x'.join(map(str, source.info['grid']))}: boxes N={d.spec['N']} ({d.N} subdomains, "
            f"about {spec.box} nodes wide), overlap delta={d.delta}, coarse {d.coarse} n_0={d.coarse_size} (exact)",
            "SPD: coarse + generated local term + omega D^-1 "
            f"(omega = {float(torch.nn.functional.softplus(m.model.jacobi.detach())):.3g})",
            "set-up from the whole operator, gathered on every rank (each applies the whole model)"]
