"""A user's petsc4py program that, like most, never destroys its KSP: its objects die with the interpreter.

    mpirun -n 2 python tests/user_program.py -ksp_type cg -pc_type python \\
        -pc_python_type pddattn.petsc.DDAttentionPC -pddattn_subdomains 4 -log_view
"""
import sys
import petsc4py
petsc4py.init(sys.argv)
from petsc4py import PETSc
n = 200
A = PETSc.Mat().createAIJ([n, n], nnz=3, comm=PETSc.COMM_WORLD)
lo, hi = A.getOwnershipRange()
for i in range(lo, hi):
    A[i, i] = 2.0
    if i > 0: A[i, i - 1] = -1.0
    if i < n - 1: A[i, i + 1] = -1.0
A.assemble()
b, x = A.createVecs(); b.set(1.0)
ksp = PETSc.KSP().create(PETSc.COMM_WORLD)
ksp.setOperators(A)
ksp.setFromOptions()
ksp.solve(b, x)
PETSc.Sys.Print(f"reason {ksp.getConvergedReason()} its {ksp.getIterationNumber()}")
