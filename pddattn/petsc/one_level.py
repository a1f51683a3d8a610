"""The exact one-level term M1 = sum_i R_i^T D_i^1/2 A_i^-1 D_i^1/2 R_i on PETSc Vecs, copy-free.

The model applies M1 through torch and numpy (exact.BlockDiagonalSolve): Vec to
array, ghost exchange, gather, block solve, scatter-add, back to a Vec, which
at 255^2 cost 0.7 ms on top of the 2.0 ms block solve, four times per V-cycle.
Here the same W = D^1/2 R that BlockDiagonalSolve uses becomes a distributed
PETSc Mat (rows: this rank's stacked subdomain rows; columns: the operator's
numbering), so that

    y = W^T diag(A_i)^-1 W x

is MatMult (the ghost exchange is its VecScatter), the same Cholesky's solve
on Vecs that share the arrays, and MatMultTranspose (the reverse sum). A test
checks it against the model's ``local_matvec`` to 1e-12 on 1-4 ranks.
"""
from __future__ import annotations

import numpy as np

__all__ = ["OneLevelSchwarz", "applies"]


def applies(model):
    """Whether the model's finest local term is the exact sparse one in float64 (init='exact')."""
    factors = getattr(model, "parametrization", None)  # a DD model's (a global or FNO model has none)
    return bool(factors is not None and factors.exact and factors.local_solve is not None
                and hasattr(factors.local_solve.solve.lu, "ksp"))


class OneLevelSchwarz:
    """y = M1 x on the operator's Vecs.

    Parameters
    ----------
    model : DDAttention or DistributedDDAttention with init='exact'
    P : petsc4py Mat
        The operator (its column layout is the Vecs').
    to_petsc : callable
        Natural node numbers -> the operator's (petsc/local.Numbering.to_petsc).
    """

    def __init__(self, model, P, to_petsc):
        from petsc4py import PETSc
        ext = model.ext_nodes
        block = model.parametrization.local_solve
        W = block.restriction(len(ext))
        columns = np.asarray(to_petsc(ext), dtype=np.int64)[W.indices]
        self.W = PETSc.Mat().createAIJ(size=((W.shape[0], None), P.getSizes()[1]), comm=P.getComm(),
                                       csr=(W.indptr.astype(PETSc.IntType), columns.astype(PETSc.IntType),
                                            W.data.astype(PETSc.ScalarType)))
        self.t, self.s = self.W.createVecLeft(), self.W.createVecLeft()
        self.lu = block.solve.lu if block.solve.n else None
        # sequential Vecs lent the same memory (VecGetLocalVector): the solve reads and writes in place
        self.tl, self.sl = self.t.createLocalVector(), self.s.createLocalVector()

    def __call__(self, x, y):
        self.W.mult(x, self.t)
        if self.lu is not None:
            self.t.getLocalVector(self.tl, readonly=True)
            self.s.getLocalVector(self.sl)
            self.lu.ksp.solve(self.tl, self.sl)
            self.s.restoreLocalVector(self.sl)
            self.t.restoreLocalVector(self.tl, readonly=True)
        else:
            self.s.set(0.0)
        self.W.multTranspose(self.s, y)

    def destroy(self):
        for obj in (self.W, self.t, self.s, self.tl, self.sl):
            obj.destroy()
        self.W = self.t = self.s = self.tl = self.sl = self.lu = None
