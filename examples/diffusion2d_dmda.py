"""A user's own petsc4py program: 2D variable-coefficient diffusion on a DMDA, KSP from options.

-div(k grad u) = 1 on the unit square, u = 0 on the boundary, 5-point finite
volumes on an M x M grid of interior nodes, k = 1 with channels of k = 1e4
(or any k through -contrast). Nothing here knows about pddattn: DD attention
is reached through PETSc options alone.

    mpirun -n 4 python examples/diffusion2d_dmda.py -ksp_type cg \\
        -pc_type python -pc_python_type pddattn.petsc.DDAttentionPC \\
        -pddattn_subdomains 4x4 -pddattn_overlap 2 -ksp_norm_type unpreconditioned

    mpirun -n 4 python examples/diffusion2d_dmda.py -ksp_type cg -pc_type gamg   # the same, with GAMG

Prints the iterations and the true relative residual ||b - A x|| / ||b||.
"""
import sys

import petsc4py

petsc4py.init(sys.argv)
from petsc4py import PETSc  # noqa: E402


def coefficient(x, y, contrast):
    """k(x, y): 1, with two horizontal channels of k = contrast."""
    return contrast if (0.25 <= y < 0.3125) or (0.625 <= y < 0.6875) else 1.0


def assemble(da, contrast):
    """The 5-point matrix with face coefficients k at the face midpoints (harmonic in spirit, simple here)."""
    M, N = da.getSizes()
    hx, hy = 1.0 / (M + 1), 1.0 / (N + 1)
    A = da.createMatrix()
    A.setOption(PETSc.Mat.Option.NEW_NONZERO_ALLOCATION_ERR, True)
    row, col = PETSc.Mat.Stencil(), PETSc.Mat.Stencil()
    (i0, i1), (j0, j1) = da.getRanges()
    for j in range(j0, j1):
        for i in range(i0, i1):
            x, y = (i + 1) * hx, (j + 1) * hy
            row.index = (i, j)
            faces = [((i - 1, j), coefficient(x - hx / 2, y, contrast) / hx ** 2),
                     ((i + 1, j), coefficient(x + hx / 2, y, contrast) / hx ** 2),
                     ((i, j - 1), coefficient(x, y - hy / 2, contrast) / hy ** 2),
                     ((i, j + 1), coefficient(x, y + hy / 2, contrast) / hy ** 2)]
            A.setValueStencil(row, row, sum(k for _, k in faces))
            for (p, q), k in faces:
                if 0 <= p < M and 0 <= q < N:
                    col.index = (p, q)
                    A.setValueStencil(row, col, -k)
    A.assemble()
    return A


def main():
    opts = PETSc.Options()
    m = opts.getInt("m", 63)
    contrast = opts.getReal("contrast", 1e4)
    da = PETSc.DMDA().create(dim=2, sizes=(m, m), dof=1, stencil_width=1,
                             stencil_type=PETSc.DMDA.StencilType.STAR, comm=PETSc.COMM_WORLD)
    da.setUp()
    A = assemble(da, contrast)
    b, x = A.createVecs()
    b.set(1.0)
    ksp = PETSc.KSP().create(PETSc.COMM_WORLD)
    ksp.setDM(da)
    ksp.setDMActive(False)  # the operator is ours; the DM tells the preconditioner the grid
    ksp.setOperators(A)
    ksp.setTolerances(rtol=1e-8)
    ksp.setFromOptions()
    ksp.solve(b, x)
    r = b.duplicate()
    A.mult(x, r)
    r.aypx(-1.0, b)
    PETSc.Sys.Print(f"grid {m}x{m}, contrast {contrast:g}, {PETSc.COMM_WORLD.getSize()} ranks: "
                    f"KSP {ksp.getType()} PC {ksp.getPC().getType()}: reason {ksp.getConvergedReason()}, "
                    f"{ksp.getIterationNumber()} iterations, true relative residual {r.norm() / b.norm():.3e}")


if __name__ == "__main__":
    main()
