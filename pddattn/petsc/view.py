"""What -ksp_view says about DDAttentionPC: the operator, its levels, its set-up and its cost."""
from __future__ import annotations

import torch

from . import family_source
from ..exact import application_cost
from ..problems.families import spec_label

__all__ = ["view_lines", "setups_line", "levels_text", "describe", "dtype_of"]


def view_lines(ctx, pc):
    """The lines of the PC context ``ctx``'s view (its model, source and set-ups)."""
    if ctx.model is None:
        return ["DD attention: not set up"]
    if ctx.source.kind in ("family", "family-rows"):
        return family_source.view_lines(ctx.source) + [setups_line(ctx)]
    a, m = ctx.info["arch"], ctx.model
    d = m.decomposition
    lines = [f"DD attention preconditioner, {ctx.info['source']}",
             f"operator: {describe(a['problem'])}, n={m.n}",
             f"{d.spec['kind']} N={d.spec['N']} ({d.N} subdomains), overlap delta={d.delta}, pou={d.pou}, "
             f"ranks holding them: {m.layout.domain_size if m.spread else 1}",
             f"local rank r={m.r} (largest subdomain {d.max_size}{': full' if m.r >= d.max_size else ''}), "
             f"coarse {d.coarse} n_0={d.coarse_size}, {levels_text(m)}",
             f"{'symmetric (SPSD)' if m.symmetric else 'non-symmetric'}, "
             + ("exact parts by sparse Cholesky (A_i of the held subdomains, top block), nothing learned"
                if getattr(m, "exact", False) else
                f"{m.num_parameters():,} parameters, applied in {str(dtype_of(m)).split('.')[-1]}"),
             f"layout: {'PETSc Scatter to the model rows' if ctx._rows.scatter else 'Vec layout = model layout'}",
             f"coarse correction: {ctx.info['options']['correction']}"
             + (f" (Chebyshev degree {ctx._vcycle.degree} on [0.1, 1.1] x lambda_max(M1 A) = "
                f"{ctx._vcycle.lambda_max:.4g})" if ctx._vcycle is not None else "")
             + (", plus D^-1 (Jacobi, -pddattn_smoother)" if ctx._jacobi is not None else ""),
             (f"set-up from this rank's rows: A held on {ctx.info['rows_held']:,} of {m.n:,} rows (its "
              f"subdomains and the ring of its rows), never gathered" if ctx.info.get("from_rows") else
              "set-up from the whole operator, gathered on every rank" if ctx.info.get("gathered") else
              f"set-up on the stored model's problem ({ctx.info.get('built_from')}); the operator never "
              "gathered"),
             setups_line(ctx)]
    if getattr(m, "exact", False) and m.last:
        from petsc4py import PETSc
        _, P = pc.getOperators()
        nnz = int(P.getInfo(PETSc.Mat.InfoType.LOCAL)["nz_used"])
        c = application_cost(m, ctx.info["options"]["correction"], nnz, degree=ctx.info["options"][
            "chebyshev_degree"])
        lines.append(f"cost model per application on this rank: {c['total'][0] / 1e6:.2f} Mflop, "
                     f"{c['total'][1] / 1e6:.1f} MB streamed (local solves {c['local'][0] / 1e6:.2f} Mflop, "
                     f"coarse {c['coarse'][0] / 1e6:.2f}, products with A {c['A'][0] / 1e6:.2f})")
    if "training" in ctx.info:
        t = ctx.info["training"]
        lines.append(f"trained in setUp: {t['steps']} condition-loss steps in {t['seconds']:.2f} s, kappa "
                     f"estimate {t['start']:.3g} -> {t['end']:.3g}")
    return lines


def setups_line(ctx):
    return (f"set-ups: {ctx.setups['built']} built, {ctx.setups['refactored']} refactored on new values; "
            f"the last took {ctx.info.get('seconds', 0.0):.3f} s")


def dtype_of(model):
    return next((p.dtype for p in model.parameters()), torch.float64)


def levels_text(model):
    """'2 levels, top rank r0' or 'L levels: sizes n_1 -> ... -> top (rank r0), distributed/replicated'."""
    levels = model.level_operators
    if len(levels) == 1:
        return f"2 levels, coarse rank r0={model.r0}"
    sizes = [f"{m.n} ({'distributed' if m.spread else 'replicated'})" for m in levels[1:]]
    sizes.append(f"top {levels[-1].decomposition.coarse_size} (replicated, rank {levels[-1].r0})")
    return f"{model.levels} levels: " + " -> ".join(sizes)


def describe(spec):
    if spec.get("family") == "operator":
        return f"the operator given to the PC (grid {'x'.join(map(str, spec['grid']))})"
    return spec_label(spec)
