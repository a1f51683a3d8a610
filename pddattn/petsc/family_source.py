"""DDAttentionPC with a generated-factor (family) model: ``-pddattn_model fam.pt`` on any operator of its family.

The factors are generated from the operator PETSc passes, in one of two ways:

- **from this rank's rows** (``family-rows``), where the Mat has a 2D DMDA
  and the model's coarse space is built from geometry (q1): each rank takes
  its share of the boxes as the PC built from the operator does
  (petsc/local.py: the rows of its subdomains and the ring of its own rows,
  never A whole), computes the features of its boxes from those rows and
  generates their factors alone (generator.py); A_0 = Phi^T A Phi is a
  sum of per-rank products, and the coarse block is A_0^-1 (exact) or
  Q_0(A_0) Q_0(A_0)^T (a generated coarse block); the model is then the
  distributed operator with these factors, and omega D^-1 is the PC's
  Jacobi term at the model's weight omega. New values rebuild it.
- **gathered** otherwise (no DMDA, a coarse space that needs A, or generated
  coarse functions): the
  operator is gathered on every rank, which applies the whole model; its
  grid is the square one of its size unless ``-pddattn_grid nx x ny`` says
  otherwise. New values of the same Mat are a values update.

``-ksp_view`` says which. A Mat the model cannot serve (another stencil, a
grid it cannot tile, a size without a grid) is refused with one line on
every rank. M(A)^-1 = coarse + generated local term + omega D^-1 is SPD, so
CG may use it.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from .. import family_run
from ..checkpoint import CheckpointError
from ..errors import ConfigurationError
from ..generator import (GENERATOR_DTYPES, BoxGrids, CoarseStencilFeatures, Generator, StencilFeatures,
                         factor_scale, generated_coarse_block, generated_factors)
from ..patterns import Pattern
from ..hierarchy import build_hierarchy
from ..problems.families import parse_grid
from .local import local_share
from .matrices import dmda_grid, gather_operator

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


def build(opts, P, pc, layout, Source, share_model):
    """A Source for the family model in ``opts['model']`` on the operator P (collective): from this rank's
    rows where the Mat has a 2D DMDA and the coarse space is geometric, else gathered."""
    path = opts["model"]
    spec, payload = layout.bcast(family_run.load(path) if layout.is_root else None)  # rank 0 reads, all get it
    grid = dmda_grid(pc.getDM())
    if grid is not None and len(grid) == 2 and spec.coarse == "q1" and not spec.coarse_functions \
            and not opts.get("grid"):
        return _from_rows(path, spec, payload, P, pc, layout, Source, share_model)
    return _gathered(path, spec, payload, opts, P, pc, layout, Source)


def _from_rows(path, spec, payload, P, pc, layout, Source, share_model):
    """Each rank generates its own boxes' factors from the rows it holds (module docstring)."""
    grid = dmda_grid(pc.getDM())
    dspec = family_run.decomposition_spec(spec, grid)
    try:
        share, problem = local_share(P, pc.getDM(), dspec, layout)
        hierarchy = build_hierarchy(problem, dspec, share=share)
        held = share.held
        union = np.unique(np.concatenate([share.subdomains[i] for i in held]))
        rows = _stencil_rows(P, share.numbering, union, grid)
        features = StencilFeatures(rows, grid, union)(rows.data)
    except ValueError as exc:
        raise CheckpointError(f"{path} cannot serve this operator: {exc}") from None
    generated_top = spec.coarse_block == "generated"
    model = share_model(hierarchy, layout, rank=spec.rank, init="none", r0=spec.coarse_rank if generated_top else None)
    grids = BoxGrids(grid, (share.core_map.bx, share.core_map.by), share.delta, share.max_size, held).localize(union)
    X, scale = grids.layout(features)
    generator = Generator(BoxGrids.CHANNELS, spec.rank, spec.width, spec.depth,
                          GENERATOR_DTYPES[spec.generator_dtype])
    generator.load_state_dict(_prefixed(payload["state"], "generator."))
    with torch.no_grad():
        Q = generated_factors(generator, torch.as_tensor(X), torch.as_tensor(scale), torch.as_tensor(grids.slots),
                              spec.rank, factor_scale(spec.local, grid), spec.local)
        model.Q.copy_(Q.to(model.Q.dtype))
        model.Q0.copy_(_coarse_block(spec, payload, share).to(model.Q0.dtype))
    omega = float(torch.nn.functional.softplus(payload["state"]["jacobi"]))
    info = {"source": f"generated-factor model {path}", "family": spec, "grid": grid, "from_rows": True,
            "rows_held": share.rows_held, "jacobi_weight": omega, "mat": (int(P.handle), P.getSize()[0]),
            "arch": {"problem": {"family": "operator", "grid": list(grid)}}}
    return Source("family-rows", model, info, share.numbering.to_petsc)


def _coarse_block(spec, payload, share):
    """Q_0 with Q_0 Q_0^T the coarse block, from the summed A_0 every rank holds: L^-T of A_0 = L L^T
    (exact), or the stored coarse generator's G_0(X_0(A_0)) (generated)."""
    A0 = sp.csr_matrix(share.A0)
    if spec.coarse_block != "generated":
        return torch.as_tensor(np.linalg.inv(np.linalg.cholesky(A0.toarray())).T)
    A0.sum_duplicates()
    stencil = CoarseStencilFeatures(Pattern.of(A0), (len(share.core_map.bx) - 2, len(share.core_map.by) - 2))
    generator = Generator(CoarseStencilFeatures.CHANNELS, spec.coarse_rank, spec.width, spec.depth,
                          GENERATOR_DTYPES[spec.generator_dtype])
    generator.load_state_dict(_prefixed(payload["state"], "coarse_generator."))
    X0, s0 = stencil(A0.data)
    return generated_coarse_block(generator, torch.as_tensor(X0), s0)


def _prefixed(state, prefix):
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _stencil_rows(P, numbering, nodes, grid):
    """A's rows ``nodes`` (sorted, natural) with every column (their grid neighbours too), as CSR
    (len(nodes), n) in natural columns: MatCreateSubMatrices on these rows and columns only."""
    from petsc4py import PETSc
    nx, ny = grid
    x, y = nodes % nx, nodes // nx
    near = [nodes, nodes[x > 0] - 1, nodes[x < nx - 1] + 1, nodes[y > 0] - nx, nodes[y < ny - 1] + nx]
    cols = np.unique(np.concatenate(near))
    row_p, col_p = numbering.to_petsc(nodes), numbering.to_petsc(cols)
    ro, co = np.argsort(row_p), np.argsort(col_p)
    isr = PETSc.IS().createGeneral(row_p[ro].astype(PETSc.IntType), comm=PETSc.COMM_SELF)
    isc = PETSc.IS().createGeneral(col_p[co].astype(PETSc.IntType), comm=PETSc.COMM_SELF)
    sub = P.createSubMatrices(isr, isc)[0]
    indptr, indices, values = sub.getValuesCSR()
    S = sp.csr_matrix((values, cols[co][indices], indptr), shape=(len(nodes), P.getSize()[0]))
    for obj in (sub, isr, isc):
        obj.destroy()
    back = np.empty(len(nodes), dtype=np.int64)
    back[ro] = np.arange(len(nodes))  # nodes[k] is row back[k] of S
    S = S[back].tocsr()
    S.sort_indices()
    return S


def _gathered(path, spec, payload, opts, P, pc, layout, Source):
    """The whole model on every rank from the gathered operator."""
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


def _block_words(spec):
    if spec.coarse_block == "generated":
        return f"coarse block Q_0 Q_0^T generated from A_0, rank {spec.coarse_rank}"
    return "exact" + (f", {spec.coarse_functions} generated functions per box" if spec.coarse_functions else "")


def view_lines(source):
    """What -ksp_view says about a family model."""
    m, spec = source.model, source.info["family"]
    d = m.decomposition
    if source.kind == "family-rows":
        return [f"DD attention preconditioner, {source.info['source']}",
                f"factors generated from the operator on each rank from its rows (A held on "
                f"{source.info['rows_held']:,} of {m.n:,} rows here, never gathered): rank {m.r}, generator width "
                f"{spec.width}, depth {spec.depth}, trained on {spec.operators} members of {spec.problem} "
                f"{spec.coefficient} at {'x'.join(map(str, spec.grid))}",
                f"operator grid {'x'.join(map(str, source.info['grid']))} (its DMDA): boxes N={d.spec['N']} ({d.N} "
                f"subdomains, about {spec.box} nodes wide), overlap delta={d.delta}, coarse {d.coarse} "
                f"n_0={d.coarse_size} ({_block_words(spec)})",
                f"SPD: coarse + generated local term + omega D^-1 (omega = {source.info['jacobi_weight']:.3g}, "
                "the PC's Jacobi term)"]
    return [f"DD attention preconditioner, {source.info['source']}",
            f"factors generated from the operator: {m.num_parameters():,} shared parameters (rank {m.r}, "
            f"generator width {spec.width}, depth {spec.depth}), trained on {spec.operators} members of "
            f"{spec.problem} {spec.coefficient} at {'x'.join(map(str, spec.grid))}",
            f"operator grid {'x'.join(map(str, source.info['grid']))}: boxes N={d.spec['N']} ({d.N} subdomains, "
            f"about {spec.box} nodes wide), overlap delta={d.delta}, coarse {d.coarse} n_0={d.coarse_size} "
            f"({_block_words(spec)})",
            "SPD: coarse + generated local term + omega D^-1 "
            f"(omega = {float(torch.nn.functional.softplus(m.model.jacobi.detach())):.3g})",
            "set-up from the whole operator, gathered on every rank (each applies the whole model)"]
