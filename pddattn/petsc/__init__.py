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
from .matrices import gather_operator, laplacian_matrix, petsc_matrix
from .pc import DDAttentionPC, rank_deficiency
from .solve import solve_main

__all__ = ["DDAttentionPC", "rank_deficiency", "petsc_matrix", "laplacian_matrix", "gather_operator", "solve_main"]
