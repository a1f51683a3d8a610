"""`pddattn solve`: assemble A (a built-in family, a matrix file, or a DMDA), solve, check the true residual.

    mpirun -n 2 pddattn solve --problem diffusion2d --grid 127x127 --coefficient jump:1e4 --dmda \\
        -ksp_type cg -ksp_norm_type unpreconditioned -pc_type python \\
        -pc_python_type pddattn.petsc.DDAttentionPC -pddattn_subdomains 4x4
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np
import scipy.sparse as sp

from ..checkpoint import architecture_of, read_collective
from ..errors import CollectiveError
from ..models import problem_of
from ..problems import make_sampler, problem_from_spec
from ..problems.families import matrix_shape, parse_grid, spec_label, unread_matrix_problem
from ..problems.samplers import Noise, evaluate_rows
from .local import Numbering
from .matrices import mat_read, petsc_matrix
from .verdict import judge, norm_name, true_residual_test

__all__ = ["solve_main", "assemble_problem", "timed_solve", "PetscFailure", "petsc_message", "reason_text"]


class PetscFailure(RuntimeError):
    """PETSc refused an option or failed in a solve, perhaps on this rank only (the CLI ends the job)."""


def petsc_message(exc):
    """The line of a PETSc error that says what went wrong (its last), without the rank tag."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[-1] if lines else "error"
    return "PETSc: " + (text.split("] ", 1)[1] if text.startswith("[") and "] " in text else text)


def reason_text(reason):
    """'converged reason 2: ...' or 'diverged reason -10 (DIVERGED_...)': KSP's verdict in words."""
    names = {v: k for k, v in vars(_petsc().KSP.ConvergedReason).items() if not k.startswith("_") and
             isinstance(v, int)}
    word = "converged" if reason > 0 else "diverged" if reason < 0 else "stopped"
    name = names.get(reason, "")
    return f"{word} reason {reason}" + (f" ({name})" if reason <= 0 and name else "")


def _petsc():
    from petsc4py import PETSc
    return PETSc


def _check_input_file(path, what, comm):
    """One collective verdict on a file: every rank raises the same one-line error or none does."""
    problem = None
    if comm.getRank() == 0 and not os.path.isfile(path):
        problem = f"{what} {path} does not exist (or is not a file)"
    problem = comm.tompi4py().bcast(problem, root=0)
    if problem:
        raise CollectiveError(problem)


def _right_hand_side(args, A, problem, natural):
    """b (and the exact solution when known) on A's row layout; refuses missing files and NaN.

    ``natural``: the grid (natural) index of each of this rank's rows (assemble_problem).
    """
    PETSc = _petsc()
    comm, n = A.getComm(), problem.n
    b, exact = A.createVecLeft(), None
    rstart, rend = A.getOwnershipRange()
    if args.rhs in ("fourier", "probe", "solve"):
        kind = args.rhs if args.rhs != "fourier" or problem.constant else "solve"
        if _unread(problem):
            return _white_rhs(kind, A, args.seed)
        try:
            sampler = make_sampler(kind, problem, args.modes if kind == "fourier" else None, seed=args.seed)
        except ValueError as exc:
            raise CollectiveError(str(exc)) from None
        rows = natural
        order = np.argsort(rows)
        f, u = (np.empty((1, len(rows))) for _ in range(2))
        f[:, order], u[:, order] = evaluate_rows(sampler, sampler.coefficients(1), rows[order])
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
        b.setArray(values[natural])
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


def _solve_problem(args, layout):
    """The problem to solve: the model's own (from -pddattn_model) or the command line's."""
    PETSc = _petsc()
    model_path = next((PETSc.Options(p).getString("pddattn_model", "") for p in ("", "sub_0_", "sub_1_")
                       if PETSc.Options(p).hasName("pddattn_model")), None)
    given = any(v is not None for v in (args.n, args.grid, args.problem, args.coefficient, args.matrix))
    try:
        if model_path and not given:
            spec = architecture_of(read_collective(model_path, layout))["problem"]
            if spec["family"] == "data":
                raise ValueError(f"{model_path} was learnt from pairs alone (no matrix): give the operator to "
                                 f"solve, --problem with --n/--grid, or --matrix")
            return problem_from_spec(spec)
        if args.matrix:
            _check_input_file(args.matrix, "matrix file", PETSc.COMM_WORLD)
            if matrix_shape(args.matrix) is not None:  # each rank gets its rows (mat_read in assemble_problem)
                return unread_matrix_problem(args.matrix, parse_grid(args.grid) if args.grid else None)
        return problem_of({"problem": args.problem or "laplace1d", "n": args.n or 1023, "grid": args.grid,
                           "coefficient": args.coefficient or "const", "coefficient_seed": args.coefficient_seed,
                           "matrix": args.matrix})
    except ValueError as exc:
        raise CollectiveError(str(exc)) from None


def assemble_problem(problem, comm, dmda):
    """(A as a PETSc Mat, the DMDA or None, the natural (grid) index of each of this rank's rows).

    Without a DMDA, rows are in the problem's own order, split as PETSc does.
    With one (2D), the DMDA distributes the grid in process boxes and A is
    assembled in its ordering, renumbered by arithmetic on the ownership
    ranges (petsc.local.Numbering): no rank asks for the index of all n.
    """
    PETSc = _petsc()
    if not dmda:
        if _unread(problem):  # a matrix file: each rank gets its rows (MatLoad, or .npz rows from rank 0)
            A = mat_read(problem.matrix, comm)
            return A, None, np.arange(*A.getOwnershipRange())
        if problem.stencil is None:  # a matrix in memory: each rank inserts its rows
            A = petsc_matrix(problem.A, comm)
            return A, None, np.arange(*A.getOwnershipRange())
        local, _ = PETSc.Sys.splitOwnership(problem.n, comm=comm)
        rstart = comm.tompi4py().exscan(local) or 0
        rows = sp.csr_matrix(problem.rows(np.arange(rstart, rstart + local)))
        rows.sort_indices()
        csr = (rows.indptr.astype(PETSc.IntType), rows.indices.astype(PETSc.IntType), rows.data)
        A = PETSc.Mat().createAIJ(((local, problem.n), (local, problem.n)), csr=csr, comm=comm)
        A.assemble()
        return A, None, np.arange(rstart, rstart + local)
    if problem.dim != 2:
        raise CollectiveError(f"--dmda needs a 2D grid (e.g. --grid 127x127), the problem has grid {problem.grid}")
    nx, ny = problem.grid
    dm = PETSc.DMDA().create(dim=2, sizes=(nx, ny), dof=1, stencil_width=1,
                             stencil_type=PETSc.DMDA.StencilType.STAR, comm=comm)
    dm.setUp()
    numbering = Numbering(dm)
    rstart, rend = _ownership(dm)
    natural = numbering.to_natural(np.arange(rstart, rend))
    rows = sp.csr_matrix(problem.rows(natural)).tocoo()  # a family's rows from its stencil alone
    local = sp.csr_matrix((rows.data, (rows.row, numbering.to_petsc(rows.col))), shape=(rend - rstart, problem.n))
    local.sort_indices()
    csr = (local.indptr.astype(PETSc.IntType), local.indices.astype(PETSc.IntType), local.data)
    A = PETSc.Mat().createAIJ(((rend - rstart, problem.n), (rend - rstart, problem.n)), csr=csr, comm=comm)
    A.assemble()
    return A, dm, natural


def _unread(problem):
    """A matrix-file problem whose A is not in memory (families.unread_matrix_problem)."""
    return problem.matrix is not None and problem._A is None


def _white_rhs(kind, A, seed):
    """probe (u white, b = A u) or solve (b white, u = A^-1 b by MUMPS) on A's own rows, white by node index."""
    PETSc = _petsc()
    n = A.getSize()[0]
    lo, hi = A.getOwnershipRange()
    white = Noise(seed, 0, 0, 1, n).at(np.arange(lo, hi))[0]  # the serial sampler's first sample, these rows
    b, exact = A.createVecLeft(), A.createVecRight()
    if kind == "probe":
        exact.setArray(white)
        A.mult(exact, b)
        return b, exact
    b.setArray(white)
    ksp = PETSc.KSP().create(comm=A.getComm())
    ksp.setOperators(A)
    ksp.setType("preonly")
    ksp.getPC().setType("cholesky")
    ksp.getPC().setFactorSolverType("mumps")
    ksp.solve(b, exact)
    ksp.destroy()
    return b, exact


def _ownership(dm):
    """(rstart, rend) of this rank's rows of a DMDA global vector."""
    v = dm.createGlobalVec()
    r = v.getOwnershipRange()
    v.destroy()
    return r


def true_residual_cg(A, dm=None, rtol=1e-8, max_it=10000, prefix=None):
    """A CG KSP on A whose tolerance applies to the true residual (-ksp_norm_type unpreconditioned), the DM
    (if any) attached for the PC's grid but not for solving, options under ``prefix`` taken: what the
    benchmarks compare preconditioners with."""
    PETSc = _petsc()
    ksp = PETSc.KSP().create(A.getComm())
    if prefix:
        ksp.setOptionsPrefix(prefix)
    if dm is not None:
        ksp.setDM(dm)
        ksp.setDMActive(False)
    ksp.setOperators(A)
    ksp.setType("cg")
    ksp.setNormType(PETSc.KSP.NormType.UNPRECONDITIONED)
    ksp.setTolerances(rtol=rtol, max_it=max_it)
    ksp.setFromOptions()
    return ksp


def timed_solve(ksp, A, b):
    """(x, setup seconds, solve seconds, true relative residual ||b - A x|| / ||b||) of one KSP solve."""
    x = b.duplicate()
    t0 = time.perf_counter()
    ksp.setUp()
    setup = time.perf_counter() - t0
    ksp.solve(b, x)
    solve = time.perf_counter() - t0 - setup
    r = b.duplicate()
    A.mult(x, r)
    r.aypx(-1.0, b)
    return x, setup, solve, r.norm() / b.norm()


def solve_main(args, layout):
    """`pddattn solve`: assemble A, take b, solve with a KSP from the options; judge it on the true residual.

    The rule is :data:`pddattn.petsc.verdict.RULE`: KSP tests the true
    residual unless the user's options chose a norm; a preconditioned-norm
    solve KSP calls converged stands unless M^-1 is singular or the true
    residual is far off. A failure is an error (exit 2).
    """
    import petsc4py
    petsc4py.init(sys.argv[:1] + args.petsc_options)
    PETSc = _petsc()
    PETSc.Options().insertString(" ".join(args.petsc_options))  # in case PETSc was initialised earlier
    problem = _solve_problem(args, layout)
    comm = PETSc.COMM_WORLD
    A, dm, natural = assemble_problem(problem, comm, args.dmda)
    A.setName("pddattn " + spec_label(problem.spec()))  # lets DDAttentionPC check a model's problem
    b, exact = _right_hand_side(args, A, problem, natural)
    ksp = PETSc.KSP().create(comm)
    if dm is not None:  # the PC sees the grid (DDAttentionPC's boxes); the operator stays ours
        ksp.setDM(dm)
        ksp.setDMActive(False)
    ksp.setOperators(A)
    ksp.setTolerances(rtol=1e-8)
    try:
        ksp.setFromOptions()
    except PETSc.Error as exc:  # a bad option: every rank alike
        raise CollectiveError(petsc_message(exc)) from None
    test = true_residual_test(ksp)
    try:
        x, setup, solve, true_rel = timed_solve(ksp, A, b)
    except PETSc.Error as exc:  # perhaps on this rank alone (a zero pivot): the CLI ends every rank
        raise PetscFailure(petsc_message(exc)) from None
    verdict, error = judge(ksp, true_rel, b.norm())
    spec = problem.spec()
    lines = [f"problem {spec['family']} grid {'x'.join(map(str, problem.grid))} coefficient {spec['coefficient']}: "
             f"n={problem.n}, ranks={comm.getSize()}, KSP {ksp.getType()}, PC {ksp.getPC().getType()}, "
             f"norm {norm_name(ksp.getNormType())} ({test})",
             f"KSP {reason_text(ksp.getConvergedReason())}: {ksp.getIterationNumber()} iterations",
             f"true relative residual ||b - A x|| / ||b|| = {true_rel:.3e} {verdict}",
             f"time: setup {setup:.3f} s, solve {solve:.3f} s"]
    if exact is not None:
        exact.axpy(-1.0, x)
        lines.append(f"relative error against the exact solution: {exact.norm() / x.norm():.3e}")
    PETSc.Sys.Print("\n".join(lines))
    if error:
        raise CollectiveError(error)
