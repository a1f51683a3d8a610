"""A trained DD-attention operator as a PETSc preconditioner, and `pddattn solve`.

    mpirun -n 2 pddattn solve -ksp_type cg -pc_type python \\
        -pc_python_type pddattn.petsc.DDAttentionPC -pddattn_model runs/dd/checkpoint.pt -ksp_monitor

In a program of your own (petsc4py), the same options configure any KSP:

    ksp.setFromOptions()    # with -pc_type python -pc_python_type pddattn.petsc.DDAttentionPC
                            #      -pddattn_model PATH   (under the PC's options prefix)

Composition with PETSc's own preconditioners goes through options, e.g.
``-pc_type composite -pc_composite_pcs python,jacobi
-sub_0_pc_python_type pddattn.petsc.DDAttentionPC -sub_0_pddattn_model PATH``.

``setUp`` loads the checkpoint collectively (rank 0 reads, everyone gets the
payload or the same error) and builds the distributed operator on pc.comm,
once per operator. ``apply`` runs the operator in float64 on the Vec's
local rows; when the Vec's ownership ranges differ from the model's (cores
of contiguous subdomain blocks), a PETSc Scatter made once in setUp moves
the entries there and back.
"""
from __future__ import annotations

import sys
import time

import numpy as np
import torch

__all__ = ["DDAttentionPC", "laplacian_matrix", "solve_main"]


def _petsc():
    from petsc4py import PETSc
    return PETSc


class DDAttentionPC:
    """petsc4py Python-PC context applying y = M^-1 x of a trained DD-attention model."""

    def __init__(self):
        self.model = self.path = self.payload = None
        self._scatter = self._xm = self._ym = None

    def _model_path(self, pc):
        from .parallel.layout import ConfigurationError
        PETSc = _petsc()
        prefix = pc.getOptionsPrefix() or ""
        path = PETSc.Options(prefix).getString("pddattn_model", "")  # options are alike on every rank
        if not path:
            raise ConfigurationError(f"DDAttentionPC needs the option -{prefix}pddattn_model PATH "
                                     "(a pddattn checkpoint)")
        return path

    def setUp(self, pc):
        from .checkpoint import CheckpointError, read_collective, restore
        from .models import model_from_architecture
        from .parallel.layout import Layout
        A, _ = pc.getOperators()
        n = A.getSize()[0]
        path = self._model_path(pc)
        if self.model is not None and path == self.path and self.model.n == n:
            return  # same operator size, same model: nothing to rebuild
        layout = Layout(comm=pc.comm.tompi4py())
        payload = read_collective(path, layout)  # rank 0 reads; every rank gets it or the same error
        arch = payload["architecture"]
        if arch["model"] != "dd":
            raise CheckpointError(f"{path} holds a {arch['model']} model; DDAttentionPC needs a DD-attention model")
        if arch["n"] != n:
            raise CheckpointError(f"{path} is a model for n={arch['n']}, but the operator has n={n}")
        model = model_from_architecture(arch, layout, dtype=torch.float64)
        restore(payload, model)
        self.model, self.path, self.payload = model.eval(), path, payload
        self._setup_layout(A)

    def _setup_layout(self, A):
        """Build the Vec-layout <-> model-layout Scatter when the two differ on any rank."""
        PETSc = _petsc()
        lo, hi = getattr(self.model, "own_range", (0, self.model.n))
        rstart, rend = A.getOwnershipRange()
        comm = A.getComm()
        differs = comm.tompi4py().allreduce(int((rstart, rend) != (lo, hi)))
        self._scatter = None
        if differs:
            x = A.createVecRight()
            self._xm = PETSc.Vec().createMPI((hi - lo, self.model.n), comm=comm)
            self._ym = self._xm.duplicate()
            index = PETSc.IS().createStride(hi - lo, first=lo, step=1, comm=comm)
            self._scatter = PETSc.Scatter().create(x, index, self._xm, None)

    def _apply(self, x, y, transpose):
        PETSc = _petsc()
        if self._scatter is not None:
            self._scatter.scatter(x, self._xm, addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)
            x, target = self._xm, self._ym
        else:
            target = y
        with torch.no_grad():
            values = torch.from_numpy(x.getArray(readonly=True).reshape(-1, 1).copy())
            result = self.model.matvec(values, transpose=transpose).numpy().reshape(-1)
        target.setArray(result)
        if self._scatter is not None:
            self._scatter.scatter(target, y, addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.REVERSE)

    def apply(self, pc, x, y):
        self._apply(x, y, transpose=False)

    def applyTranspose(self, pc, x, y):
        self._apply(x, y, transpose=True)

    def view(self, pc, viewer):
        a = self.payload["architecture"] if self.payload else {}
        if not a:
            viewer.printfASCII("  DD attention: not set up\n")
            return
        lines = [f"DD attention preconditioner from {self.path}",
                 f"n={a['n']}, N={a['N']} subdomains, delta={a['delta']}, pou={a['pou']}",
                 f"local rank r={a['rank']}, coarse rank r0={a['coarse_rank']} (n_0={a['N'] - 1}), "
                 f"coarse={'yes' if a['coarse'] else 'no'}",
                 f"{'symmetric (SPSD)' if a['symmetric'] else 'non-symmetric'}, "
                 f"{self.model.num_parameters():,} parameters",
                 f"layout: {'PETSc Scatter to the model layout' if self._scatter else 'Vec layout = model layout'}"]
        for line in lines:
            viewer.printfASCII(f"  {line}\n")


def laplacian_matrix(n, comm=None, ownership=None):
    """A = h^-2 tridiag(-1, 2, -1) as a distributed AIJ matrix (PETSc's layout unless given)."""
    PETSc = _petsc()
    comm = comm or PETSc.COMM_WORLD
    local = PETSc.DECIDE if ownership is None else ownership[1] - ownership[0]
    A = PETSc.Mat().createAIJ(((local, n), (local, n)), nnz=(3, 2), comm=comm)
    h2 = float((n + 1) ** 2)
    rstart, rend = A.getOwnershipRange()
    for i in range(rstart, rend):
        cols = [j for j in (i - 1, i, i + 1) if 0 <= j < n]
        A.setValues(i, cols, [2.0 * h2 if j == i else -h2 for j in cols])
    A.assemble()
    return A


def _right_hand_side(args, A, n):
    """b (and the exact solution when known) on A's row layout."""
    from .problem import FourierSampler, ProbeSampler
    PETSc = _petsc()
    b, exact = A.createVecLeft(), None
    rstart, rend = A.getOwnershipRange()
    if args.rhs in ("fourier", "probe"):
        sampler = (FourierSampler(n, args.modes or n, seed=args.seed) if args.rhs == "fourier"
                   else ProbeSampler(n, seed=args.seed))
        f, u = sampler.sample(1, lo=rstart, hi=rend)
        b.setArray(f[0])
        exact = b.duplicate()
        exact.setArray(u[0])
    elif args.rhs.endswith(".npy"):
        values = np.load(args.rhs)
        if values.shape != (n,):
            raise ValueError(f"{args.rhs} holds an array of shape {values.shape}, expected ({n},)")
        b.setArray(values[rstart:rend])
    else:
        viewer = PETSc.Viewer().createBinary(args.rhs, "r", comm=A.getComm())
        b.load(viewer)
        if b.getSize() != n:
            raise ValueError(f"{args.rhs} holds a Vec of size {b.getSize()}, expected {n}")
    return b, exact


def solve_main(args, layout):
    """`pddattn solve`: assemble A, take b, solve with a KSP configured by the options database."""
    import petsc4py
    petsc4py.init(sys.argv[:1] + args.petsc_options)
    PETSc = _petsc()
    PETSc.Options().insertString(" ".join(args.petsc_options))  # in case PETSc was initialised earlier
    n = args.n
    if n is None:
        model_path = next((PETSc.Options(p).getString("pddattn_model", "") for p in ("", "sub_0_", "sub_1_")
                           if PETSc.Options(p).hasName("pddattn_model")), None)
        if model_path:
            from .checkpoint import read_collective
            n = read_collective(model_path, layout)["architecture"]["n"]
        else:
            n = 1023
    comm = PETSc.COMM_WORLD
    A = laplacian_matrix(n, comm)
    b, exact = _right_hand_side(args, A, n)
    x = b.duplicate()
    ksp = PETSc.KSP().create(comm)
    ksp.setOperators(A)
    ksp.setTolerances(rtol=1e-8)
    ksp.setFromOptions()
    t0 = time.perf_counter()
    ksp.setUp()
    setup = time.perf_counter() - t0
    ksp.solve(b, x)
    solve = time.perf_counter() - t0 - setup
    r = b.duplicate()
    A.mult(x, r)
    r.aypx(-1.0, b)
    lines = [f"n={n}, ranks={comm.getSize()}, KSP {ksp.getType()}, PC {ksp.getPC().getType()}",
             f"converged reason {ksp.getConvergedReason()}: {ksp.getIterationNumber()} iterations",
             f"final relative residual ||b - A x|| / ||b|| = {r.norm() / b.norm():.3e}",
             f"time: setup {setup:.3f} s, solve {solve:.3f} s"]
    if exact is not None:
        exact.axpy(-1.0, x)
        lines.append(f"relative error against the exact solution: {exact.norm() / x.norm():.3e}")
    PETSc.Sys.Print("\n".join(lines))
    if ksp.getConvergedReason() < 0:
        from .parallel.layout import CollectiveError
        raise CollectiveError(f"KSP did not converge (reason {ksp.getConvergedReason()})")
