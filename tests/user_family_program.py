"""A user's petsc4py program on their own operator (a scipy .npz), preconditioned by a trained family model.

    mpirun -n 2 python tests/user_family_program.py A.npz -ksp_type cg -pc_type python \\
        -pc_python_type pddattn.petsc.DDAttentionPC -pddattn_model fam.pt -ksp_norm_type unpreconditioned

It sets new values on the same Mat and solves again (the PC takes them as a values update), and,
as most programs, never destroys its KSP.
"""
import sys

import petsc4py
import scipy.sparse as sp

petsc4py.init(sys.argv)
from petsc4py import PETSc  # noqa: E402

A = sp.load_npz(sys.argv[1]).tocsr()
n = A.shape[0]
M = PETSc.Mat().createAIJ([n, n], nnz=5, comm=PETSc.COMM_WORLD)
lo, hi = M.getOwnershipRange()


def fill(B):
    for i in range(lo, hi):
        row = B[i]
        M.setValues(i, row.indices.astype(PETSc.IntType), row.data)
    M.assemble()


fill(A)
b, x = M.createVecs()
b.set(1.0)
ksp = PETSc.KSP().create(PETSc.COMM_WORLD)
ksp.setOperators(M)
ksp.setFromOptions()
r = b.duplicate()
for name, B in (("first", A), ("scaled", 2.5 * A)):
    if name != "first":
        fill(B)
    ksp.solve(b, x)
    M.mult(x, r)
    r.aypx(-1.0, b)
    PETSc.Sys.Print(f"{name}: reason {ksp.getConvergedReason()} its {ksp.getIterationNumber()} "
                    f"true {r.norm() / b.norm():.3e}")
pc = ksp.getPC().getPythonContext()
PETSc.Sys.Print(f"setups built {pc.setups['built']} refactored {pc.setups['refactored']}")
