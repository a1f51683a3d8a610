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

__all__ = ["DDAttentionPC", "laplacian_matrix", "petsc_matrix", "solve_main", "rank_deficiency"]

_TRUE_RESIDUAL_SLACK = 1.01  # KSP's recursive residual and the true one differ in the last digits


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
        PETSc = _petsc()
        A, _ = pc.getOperators()
        n = A.getSize()[0]
        path = self._model_path(pc)
        if self.model is not None and path == self.path and self.model.n == n:
            return  # same operator size, same model: nothing to rebuild
        layout = Layout(comm=pc.comm.tompi4py())
        payload = read_collective(path, layout)  # rank 0 reads; every rank gets it or the same error
        from .checkpoint import architecture_of
        arch = architecture_of(payload)
        if arch["model"] != "dd":
            raise CheckpointError(f"{path} holds a {arch['model']} model; DDAttentionPC needs a DD-attention model")
        if arch["n"] != n:
            raise CheckpointError(f"{path} is a model for n={arch['n']}, but the operator has n={n}")
        model = model_from_architecture(arch, layout, dtype=torch.float64)
        restore(payload, model)
        self.model, self.path, self.payload = model.eval(), path, payload
        self._setup_layout(A)
        deficiency = rank_deficiency(model)
        if deficiency:
            PETSc.Sys.Print(f"DDAttentionPC: {deficiency}", comm=pc.comm)

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
        if not self.payload:
            viewer.printfASCII("  DD attention: not set up\n")
            return
        from .checkpoint import architecture_of
        a = architecture_of(self.payload)
        d, p = a["decomposition"], a["problem"]
        lines = [f"DD attention preconditioner from {self.path}",
                 f"problem {p['family']} grid {'x'.join(map(str, p['grid']))} coefficient {p['coefficient']}",
                 f"n={a['n']}, {d['kind']} N={d['N']} subdomains, delta={d['delta']}, pou={d['pou']}",
                 f"local rank r={a['rank']}, coarse {d['coarse']} rank r0={a['coarse_rank']} "
                 f"(n_0={self.model.decomposition.coarse_size})",
                 f"{'symmetric (SPSD)' if a['symmetric'] else 'non-symmetric'}, "
                 f"{self.model.num_parameters():,} parameters",
                 f"layout: {'PETSc Scatter to the model layout' if self._scatter else 'Vec layout = model layout'}"]
        for line in lines:
            viewer.printfASCII(f"  {line}\n")


def rank_deficiency(model):
    """A one-line notice when M^-1 is singular (rank < n), with what to do; '' when it is not."""
    d = model.decomposition
    local = int(np.minimum(model.r, d.sizes).sum())
    coarse = min(model.r0, d.coarse_size) if model.coarse else 0
    rank_bound = local + coarse
    if model.r >= d.max_size and rank_bound >= d.n:
        return ""
    return (f"the model is rank-deficient: local rank {model.r} < subdomain size {d.max_size}, so M^-1 has rank "
            f"at most {min(rank_bound, d.n):,} < n = {d.n:,} and is singular. A Krylov method can then report "
            f"convergence on the preconditioned residual while the true residual stays large. Use full local ranks "
            f"(train with --rank {d.max_size} --init schwarz) or compose with a smoother: -pc_type composite "
            f"-pc_composite_type multiplicative -pc_composite_pcs python,sor")


def petsc_matrix(A, comm=None, ownership=None):
    """A scipy CSR matrix as a distributed PETSc AIJ matrix; each rank inserts its own rows."""
    PETSc = _petsc()
    comm = comm or PETSc.COMM_WORLD
    n = A.shape[0]
    if ownership is None:
        local, _ = PETSc.Sys.splitOwnership(n, comm=comm)
        rstart = comm.tompi4py().exscan(local) or 0
    else:
        rstart, local = ownership[0], ownership[1] - ownership[0]
    rows = A.tocsr()[rstart:rstart + local]
    rows.sort_indices()
    csr = (rows.indptr.astype(PETSc.IntType), rows.indices.astype(PETSc.IntType), rows.data.astype(PETSc.ScalarType))
    M = PETSc.Mat().createAIJ(((local, n), (local, n)), csr=csr, comm=comm)
    M.assemble()
    return M


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


def _check_input_file(path, what, comm):
    """One collective verdict on a file: every rank raises the same one-line error or none does."""
    from .parallel.layout import CollectiveError
    import os
    problem = None
    if comm.getRank() == 0 and not os.path.isfile(path):
        problem = f"{what} {path} does not exist (or is not a file)"
    problem = comm.tompi4py().bcast(problem, root=0)
    if problem:
        raise CollectiveError(problem)


def _right_hand_side(args, A, problem):
    """b (and the exact solution when known) on A's row layout; refuses missing files and NaN."""
    from .parallel.layout import CollectiveError
    from .problems import make_sampler
    PETSc = _petsc()
    comm, n = A.getComm(), problem.n
    b, exact = A.createVecLeft(), None
    rstart, rend = A.getOwnershipRange()
    if args.rhs in ("fourier", "probe", "solve"):
        kind = args.rhs if args.rhs != "fourier" or problem.constant else "solve"
        try:
            sampler = make_sampler(kind, problem, args.modes if kind == "fourier" else None, seed=args.seed)
        except ValueError as exc:
            raise CollectiveError(str(exc)) from None
        f, u = sampler.sample(1, lo=rstart, hi=rend)
        b.setArray(f[0])
        exact = b.duplicate()
        exact.setArray(u[0])
    elif args.rhs.endswith(".npy"):
        _check_input_file(args.rhs, "right-hand side file", comm)
        values = comm.tompi4py().bcast(_load_npy(args.rhs) if comm.getRank() == 0 else None, root=0)
        if isinstance(values, str):
            raise CollectiveError(values)
        if values.shape != (n,):
            raise CollectiveError(f"{args.rhs} holds an array of shape {values.shape}, expected ({n},)")
        b.setArray(values[rstart:rend])
    else:
        _check_input_file(args.rhs, "right-hand side file", comm)
        try:
            b.load(PETSc.Viewer().createBinary(args.rhs, "r", comm=comm))
        except PETSc.Error:
            raise CollectiveError(f"{args.rhs} is not a PETSc binary Vec file (nor .npy)") from None
        if b.getSize() != n:
            raise CollectiveError(f"{args.rhs} holds a Vec of size {b.getSize()}, expected {n}")
    finite = comm.tompi4py().allreduce(int(np.isfinite(b.getArray(readonly=True)).all()), op=_mpi_min())
    if not finite:
        raise CollectiveError(f"the right-hand side {args.rhs} holds NaN or infinite entries")
    return b, exact


def _mpi_min():
    from mpi4py import MPI
    return MPI.MIN


def _load_npy(path):
    """The 1D float64 array in a .npy file, or an error message (rank 0 reads, all get the result)."""
    try:
        values = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        return f"cannot read {path} as a .npy array: {str(exc).splitlines()[0]}"
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.number):
        return f"{path} holds a {values.ndim}D {values.dtype} array, expected a 1D array of numbers"
    return values.astype(np.float64)


def _norm_name(value):
    names = {getattr(_petsc().KSP.NormType, k): k.lower() for k in ("NONE", "PRECONDITIONED", "UNPRECONDITIONED",
                                                                    "NATURAL")}
    return names.get(value, str(value))


def _solve_problem(args, layout):
    """The problem to solve: the model's own (from -pddattn_model) or the command line's."""
    PETSc = _petsc()
    from .models import problem_of
    from .parallel.layout import CollectiveError
    model_path = next((PETSc.Options(p).getString("pddattn_model", "") for p in ("", "sub_0_", "sub_1_")
                       if PETSc.Options(p).hasName("pddattn_model")), None)
    given = any(v is not None for v in (args.n, args.grid, args.problem, args.coefficient, args.matrix))
    try:
        if model_path and not given:
            from .checkpoint import architecture_of, read_collective
            from .problems import problem_from_spec
            return problem_from_spec(architecture_of(read_collective(model_path, layout))["problem"])
        if args.matrix:
            _check_input_file(args.matrix, "matrix file", PETSc.COMM_WORLD)
        return problem_of({"problem": args.problem or "laplace1d", "n": args.n or 1023, "grid": args.grid,
                           "coefficient": args.coefficient or "const", "coefficient_seed": args.coefficient_seed,
                           "matrix": args.matrix})
    except ValueError as exc:
        raise CollectiveError(str(exc)) from None


def solve_main(args, layout):
    """`pddattn solve`: assemble A, take b, solve with a KSP from the options; check the true residual.

    KSP's own test may use the preconditioned residual (left-preconditioned
    GMRES, CG's default norm), which a singular M^-1 can drive to zero while
    ||b - A x|| stays large. Success is therefore judged here on the true
    relative residual against KSP's tolerance; a miss is an error (exit 2).
    """
    import petsc4py
    petsc4py.init(sys.argv[:1] + args.petsc_options)
    PETSc = _petsc()
    PETSc.Options().insertString(" ".join(args.petsc_options))  # in case PETSc was initialised earlier
    from .parallel.layout import CollectiveError
    problem = _solve_problem(args, layout)
    comm = PETSc.COMM_WORLD
    A = petsc_matrix(problem.A, comm)
    b, exact = _right_hand_side(args, A, problem)
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
    rtol, atol, _, _ = ksp.getTolerances()
    true_rel = r.norm() / b.norm()
    tol = max(rtol, atol / b.norm())
    reason = ksp.getConvergedReason()
    met = true_rel <= _TRUE_RESIDUAL_SLACK * tol
    spec = problem.spec()
    lines = [f"problem {spec['family']} grid {'x'.join(map(str, problem.grid))} coefficient {spec['coefficient']}: "
             f"n={problem.n}, ranks={comm.getSize()}, KSP {ksp.getType()}, PC {ksp.getPC().getType()}, "
             f"norm {_norm_name(ksp.getNormType())}",
             f"KSP converged reason {reason}: {ksp.getIterationNumber()} iterations",
             f"true relative residual ||b - A x|| / ||b|| = {true_rel:.3e} (tolerance {tol:.1e}: "
             f"{'met' if met else 'MISSED'})",
             f"time: setup {setup:.3f} s, solve {solve:.3f} s"]
    if exact is not None:
        exact.axpy(-1.0, x)
        lines.append(f"relative error against the exact solution: {exact.norm() / x.norm():.3e}")
    PETSc.Sys.Print("\n".join(lines))
    if reason < 0:
        raise CollectiveError(f"KSP did not converge (reason {reason}); true relative residual {true_rel:.3e}")
    if not met:
        raise CollectiveError(
            f"KSP reported convergence (reason {reason}) but the true relative residual {true_rel:.3e} misses the "
            f"tolerance {tol:.1e}: its test used the preconditioned residual. Use -ksp_norm_type unpreconditioned "
            f"(CG) or -ksp_pc_side right (GMRES), or a nonsingular preconditioner")
