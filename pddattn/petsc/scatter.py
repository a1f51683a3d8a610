"""A PETSc Vec's entries moved to a model's rows and back: one Scatter, made once per structure.

The model's rows on a rank are its own nodes (the cores of its subdomains, in
the grid's natural order); PETSc's are its ownership range. Where the two
agree on every rank no Scatter is made and the arrays are used as they are.
"""
from __future__ import annotations

import numpy as np

__all__ = ["ModelRows"]


class ModelRows:
    """Vec layout <-> model layout for ``petsc_rows`` (the model's own rows, as PETSc indices) of P."""

    def __init__(self, P, petsc_rows):
        from petsc4py import PETSc
        rstart, rend = P.getOwnershipRange()
        comm = P.getComm()
        same = np.array_equal(petsc_rows, np.arange(rstart, rend))
        self.scatter = self._xm = self._ym = None
        if comm.tompi4py().allreduce(int(not same)):  # collective: every rank makes it or none
            x = P.createVecRight()
            self._xm = PETSc.Vec().createMPI((len(petsc_rows), P.getSize()[0]), comm=comm)
            self._ym = self._xm.duplicate()
            index = PETSc.IS().createGeneral(petsc_rows.astype(PETSc.IntType), comm=comm)
            self.scatter = PETSc.Scatter().create(x, index, self._xm, None)
            for obj in (x, index):
                obj.destroy()

    def to_model(self, x):
        """The model's rows of Vec x (a copy)."""
        from petsc4py import PETSc
        if self.scatter is None:
            return x.getArray(readonly=True).copy()
        self.scatter.scatter(x, self._xm, addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)
        return self._xm.getArray(readonly=True).copy()

    def to_vec(self, values, y):
        """Vec y from the model's rows ``values``."""
        from petsc4py import PETSc
        if self.scatter is None:
            y.setArray(values)
            return
        self._ym.setArray(values)
        self.scatter.scatter(self._ym, y, addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.REVERSE)

    def destroy(self):
        for obj in (self.scatter, self._xm, self._ym):
            if obj is not None:
                obj.destroy()
        self.scatter = self._xm = self._ym = None
