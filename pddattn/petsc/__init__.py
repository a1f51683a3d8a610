"""DD attention in PETSc: the preconditioner DDAttentionPC and `pddattn solve`.

    mpirun -n 4 pddattn solve --problem diffusion2d --grid 127x127 --coefficient jump:1e4 --dmda \\
        -ksp_type cg -ksp_norm_type unpreconditioned \\
        -pc_type python -pc_python_type pddattn.petsc.DDAttentionPC -pddattn_subdomains 4x4

In a program of your own (petsc4py), the same options configure any KSP
(``ksp.setFromOptions()``); see examples/diffusion2d_dmda.py. Composition
with PETSc's own preconditioners goes through options, e.g. ``-pc_type
composite -pc_composite_pcs python,sor -sub_0_pc_python_type
pddattn.petsc.DDAttentionPC``.
"""
import sys

from .matrices import gather_operator, laplacian_matrix, petsc_matrix
from .pc import DDAttentionPC, rank_deficiency
from .solve import solve_main
from .teardown import unknown_pc

__all__ = ["DDAttentionPC", "rank_deficiency", "petsc_matrix", "laplacian_matrix", "gather_operator", "solve_main"]


def __getattr__(name):
    """``-pc_python_type pddattn.petsc.NAME`` with a NAME this module lacks: one line, not a crash.

    petsc4py looks the class up with hasattr; a plain AttributeError makes it
    import a module of that name, fail, and leave a Python PC without a
    context, which crashes PetscFinalize (SEGV, exit 59). A name some
    ``*pc_python_type`` option asks for gets a stand-in context instead: its
    create() registers the PC for the clean exit (teardown.py) and its
    setFromOptions raises the one-line error.
    """
    if not name.startswith("_") and f"{__name__}.{name}" in _python_pc_types():
        return unknown_pc(f"{__name__}.{name}", __all__[0])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _python_pc_types():
    """The values of every ``*pc_python_type`` option in PETSc's database (empty before PETSc starts)."""
    petsc = sys.modules.get("petsc4py.PETSc")
    if petsc is None or not petsc.Sys.isInitialized():
        return set()
    return {value for key, value in petsc.Options().getAll().items() if key.endswith("pc_python_type")}
