"""How `pddattn solve` judges a KSP solve: on the true residual, as the tolerance says.

KSP's own test can use the preconditioned residual ||M^-1 (b - A x)|| (CG's
default norm, left-preconditioned GMRES). With a nonsingular M^-1 that is a
legitimate criterion; with a singular one it can reach zero while
||b - A x|| stays large. So, unless the user's options choose otherwise,
KSP is set to test what its tolerance says (``true_residual_test``), and
the verdict (``judge``) separates the cases.
"""
from __future__ import annotations

from .pc import DDAttentionPC, rank_deficiency

__all__ = ["RULE", "PRECONDITIONED_NORM_FACTOR", "true_residual_test", "judge", "norm_name"]

# KSP's recursive residual and the true one differ in the last digits.
TRUE_RESIDUAL_SLACK = 1.01
# A user who chose the preconditioned norm accepts a true residual up to this many times the tolerance.
PRECONDITIONED_NORM_FACTOR = 1e3
# Methods whose true-residual test is the unpreconditioned norm with left preconditioning, or right preconditioning.
_UNPRECONDITIONED_NORM = {"cg", "pipecg", "groppcg", "pipecgrr", "cr", "pipecr", "fcg", "pipefcg", "richardson"}
_RIGHT_SIDE = {"gmres", "lgmres", "dgmres", "pgmres", "bcgs", "ibcgs", "fbcgs", "fbcgsr", "bcgsl"}

RULE = (f"How a solve is judged. Unless your options set -ksp_norm_type or -ksp_pc_side, KSP tests the true "
        f"residual: the unpreconditioned norm for CG-type methods, right preconditioning for GMRES-type ones; "
        f"'converged' then means ||b - A x|| / ||b|| met the tolerance (rtol, or atol / ||b||). If you choose the "
        f"preconditioned norm, KSP's verdict stands, with the true residual printed beside it, unless the "
        f"preconditioner is singular (a rank-deficient DD-attention model) or the true residual exceeds "
        f"{PRECONDITIONED_NORM_FACTOR:g} times the tolerance. A failed solve ends with one 'pddattn: error:' line "
        f"and exit status 2.")


def _petsc():
    from petsc4py import PETSc
    return PETSc


def true_residual_test(ksp):
    """Make KSP test the true residual unless the user's options chose a norm or a side; the choice made."""
    PETSc = _petsc()
    options = PETSc.Options(ksp.getOptionsPrefix() or "")
    if options.hasName("ksp_norm_type") or options.hasName("ksp_pc_side"):
        return "the user's"
    kind = ksp.getType()
    if kind in _UNPRECONDITIONED_NORM:
        ksp.setNormType(PETSc.KSP.NormType.UNPRECONDITIONED)
        return "unpreconditioned norm (pddattn's default)"
    if kind in _RIGHT_SIDE:
        ksp.setPCSide(PETSc.PC.Side.RIGHT)
        return "right preconditioning (pddattn's default)"
    return "KSP's default"


def tests_true_residual(ksp):
    """Whether KSP's convergence test is on b - A x (unpreconditioned norm, or right preconditioning)."""
    PETSc = _petsc()
    return ksp.getNormType() == PETSc.KSP.NormType.UNPRECONDITIONED


def singular_preconditioner(ksp):
    """The rank-deficiency notice of the KSP's own DDAttentionPC, or '' (composites with a smoother are not)."""
    pc = ksp.getPC()
    if pc.getType() != "python":
        return ""
    context = pc.getPythonContext()
    if isinstance(context, DDAttentionPC) and context.model is not None and context._jacobi is None:
        return rank_deficiency(context.model)  # with Jacobi added (the default) M^-1 + D^-1 is SPD
    return ""


def judge(ksp, true_rel, b_norm):
    """(verdict line, error message or None) of a finished solve with true relative residual ``true_rel``."""
    rtol, atol, _, _ = ksp.getTolerances()
    tol = max(rtol, atol / b_norm)
    reason = ksp.getConvergedReason()
    if tests_true_residual(ksp):
        ok = true_rel <= TRUE_RESIDUAL_SLACK * tol
        line = f"(tolerance {tol:.1e} on the true residual: {'met' if ok else 'MISSED'})"
        if reason < 0:
            return line, f"KSP did not converge (reason {reason}); true relative residual {true_rel:.3e}"
        if not ok:
            return line, (f"KSP reported convergence (reason {reason}) but the true relative residual {true_rel:.3e} "
                          f"misses the tolerance {tol:.1e} (its recursive residual drifted from the true one)")
        return line, None
    factor = true_rel / tol
    line = (f"(KSP tested the {norm_name(ksp.getNormType())} norm to {tol:.1e}; the true residual is "
            f"{factor:.3g}x the tolerance, accepted up to {PRECONDITIONED_NORM_FACTOR:g}x)")
    if reason < 0:
        return line, f"KSP did not converge (reason {reason}); true relative residual {true_rel:.3e}"
    singular = singular_preconditioner(ksp)
    if singular or factor > PRECONDITIONED_NORM_FACTOR:
        why = "the preconditioner is singular" if singular else \
            f"the true residual is {factor:.3g}x the tolerance (more than {PRECONDITIONED_NORM_FACTOR:g}x)"
        return line, (f"KSP reported convergence (reason {reason}) on the preconditioned residual, but {why}: true "
                      f"relative residual {true_rel:.3e}. Leave -ksp_norm_type / -ksp_pc_side to pddattn (it then "
                      f"tests the true residual), or use a nonsingular preconditioner")
    return line, None


def norm_name(value):
    names = {getattr(_petsc().KSP.NormType, k): k.lower() for k in ("NONE", "PRECONDITIONED", "UNPRECONDITIONED",
                                                                    "NATURAL")}
    return names.get(value, str(value))
