"""The PETSc preconditioner on 1, 2 and 3 ranks (3 gives a Vec layout unlike the model's).

    mpirun -n 3 python -m pytest --with-mpi -m mpi tests/test_petsc.py

Assertions are collective: the worst value over all ranks is checked.
"""
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

import reference as ref
from pddattn.train import TrainConfig, train
from tolerances import APPLY

PETSc = pytest.importorskip("petsc4py.PETSc")
pytestmark = pytest.mark.mpi(min_size=1)


def world():
    from mpi4py import MPI
    return MPI.COMM_WORLD


def worst(value):
    from mpi4py import MPI
    return world().allreduce(float(value), op=MPI.MAX)


def everyone(flag):
    from mpi4py import MPI
    return bool(world().allreduce(int(bool(flag)), op=MPI.LAND))


def saved_model(**cfg):
    """Train (or only initialise, steps=0) serially on rank 0; every rank gets the path."""
    path, error = None, None
    if world().Get_rank() == 0:
        try:  # a failure here must reach every rank, or the others wait in bcast forever
            out = Path(tempfile.mkdtemp(prefix="pddattn-petsc-"))
            config = dict(dict(dtype="float64", batch=8, test_size=8, eval_every=5, lr=0.05, warmup=1), **cfg)
            train(TrainConfig.of(**config), out=out)
            path = str(out / "checkpoint.pt")
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
    path, error = world().bcast((path, error), root=0)
    if error:
        raise RuntimeError(f"training the test model on rank 0 failed: {error}")
    return path


def preconditioner(A, path, prefix=""):
    pc = PETSc.PC().create(comm=PETSc.COMM_WORLD)
    pc.setOptionsPrefix(prefix)
    pc.setOperators(A)
    pc.setType("python")
    pc.setPythonContext(__import__("pddattn.petsc", fromlist=["DDAttentionPC"]).DDAttentionPC())
    PETSc.Options(prefix)["pddattn_model"] = path
    return pc


def global_vec(A, seed):
    """A Vec with the same global random entries on every rank layout."""
    n = A.getSize()[0]
    values = np.random.default_rng(seed).standard_normal(n)
    x = A.createVecRight()
    lo, hi = x.getOwnershipRange()
    x.setArray(values[lo:hi])
    return x, values


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("N", [6, 7])  # 7 subdomains over 2 or 3 ranks: a layout unlike PETSc's
def test_pc_apply_equals_the_operator(symmetric, N):
    from pddattn.checkpoint import load_model
    from pddattn.petsc import laplacian_matrix
    n = 61
    path = saved_model(n=n, subdomains=N, overlap=2, rank=3, symmetric=symmetric, steps=3)
    A = laplacian_matrix(n)
    pc = preconditioner(A, path, prefix="t_")
    PETSc.Options("t_")["pddattn_smoother"] = "none"  # the rank-3 model itself, without Jacobi added
    pc.setUp()
    serial, _ = load_model(path)  # the same model, whole, on every rank
    x, values = global_vec(A, 1)
    y = x.duplicate()
    lo, hi = x.getOwnershipRange()
    errors = []
    for transpose in (False, True):
        (pc.applyTranspose if transpose else pc.apply)(x, y)
        with torch.no_grad():
            expected = serial.matvec(torch.from_numpy(values).reshape(-1, 1), transpose=transpose).numpy().ravel()
        errors.append(np.abs(y.getArray() - expected[lo:hi]).max() / np.abs(expected).max())
    assert worst(max(errors)) <= APPLY  # a trained rank-3 model: one application, the sums in PETSc's order


def test_a_model_too_small_for_the_ranks_is_a_clear_error_everywhere():
    from pddattn.petsc import laplacian_matrix
    if world().Get_size() < 3:
        pytest.skip("needs more ranks than the model has subdomains")
    path = saved_model(n=30, subdomains=2, overlap=0, rank=2, steps=1)
    A = laplacian_matrix(30)
    _error_on_every_rank(lambda: preconditioner(A, path, "few_"), "domain ranks but only N=2 subdomains")


def test_view_describes_the_model():
    from pddattn.petsc import laplacian_matrix
    path = saved_model(n=40, subdomains=4, overlap=1, rank=2, symmetric=True, steps=1)
    A = laplacian_matrix(40)
    pc = preconditioner(A, path, prefix="v_")
    pc.setUp()
    log = world().bcast(tempfile.mktemp(suffix=".txt") if world().Get_rank() == 0 else None, root=0)
    viewer = PETSc.Viewer().createASCII(log, comm=PETSc.COMM_WORLD)
    pc.view(viewer)
    viewer.destroy()
    text = Path(log).read_text() if world().Get_rank() == 0 else ""
    expected = ["DD attention preconditioner, model", "intervals N=4 (4 subdomains), overlap delta=1",
                "symmetric (SPSD)", "local rank r=2", "operator: laplace1d 40 const seed=0, n=40"]
    assert everyone(world().Get_rank() != 0 or all(e in text for e in expected)), text


def cg_iterations(A, pc_setup, b):
    ksp = PETSc.KSP().create(comm=PETSc.COMM_WORLD)
    ksp.setType("cg")
    ksp.setNormType(PETSc.KSP.NormType.UNPRECONDITIONED)
    ksp.setTolerances(rtol=1e-8, max_it=500)
    pc_setup(ksp)
    x = b.duplicate()
    ksp.solve(b, x)
    return ksp.getIterationNumber(), ksp.getConvergedReason()


@pytest.mark.parametrize("pou", ["count", "smooth"])
def test_cg_with_schwarz_init_matches_an_independent_reference(pou):
    from pddattn.petsc import laplacian_matrix
    n, N, delta = 95, 6, 3
    path = saved_model(n=n, subdomains=N, overlap=delta, pou=pou, rank=n, symmetric=True, init="schwarz", steps=0)
    A = laplacian_matrix(n)
    b, _ = global_vec(A, 2)

    def ours(ksp):
        ksp.setOperators(A)
        ksp.pc.setType("python")
        ksp.pc.setPythonContext(__import__("pddattn.petsc", fromlist=["x"]).DDAttentionPC())
        ksp.pc.setOptionsPrefix("s_")
        PETSc.Options("s_")["pddattn_model"] = path

    # The reference: the dense two-level additive Schwarz matrix from the definitions, applied by PCMAT.
    M = ref.schwarz_matrix(n, N, delta, pou)
    Mref = PETSc.Mat().createDense((A.getSizes()), comm=PETSc.COMM_WORLD)
    Mref.setUp()
    lo, hi = Mref.getOwnershipRange()
    Mref.setValues(list(range(lo, hi)), list(range(n)), M[lo:hi].ravel())
    Mref.assemble()

    def reference(ksp):
        ksp.setOperators(A, Mref)
        ksp.pc.setType("mat")

    it_ours, reason_ours = cg_iterations(A, ours, b)
    it_ref, reason_ref = cg_iterations(A, reference, b)
    it_none, _ = cg_iterations(A, lambda k: (k.setOperators(A), k.pc.setType("none")), b)
    assert everyone(reason_ours > 0 and reason_ref > 0)
    assert worst(abs(it_ours - it_ref)) == 0
    assert worst(it_ours) < 0.5 * it_none


def _error_on_every_rank(make_pc, match):
    try:
        make_pc().setUp()
        raised = ""
    except Exception as exc:  # petsc4py re-raises the context's exception
        raised = str(exc)
    assert everyone(match in raised), raised


@pytest.mark.parametrize("option,value,match", [
    ("pddattn_levels", "1", "pddattn_levels must be >= 2"),
    ("pddattn_train_lr", "0", "pddattn_train_lr must be positive"),
    ("pddattn_coarse", "cubic", "unknown coarse space"),
    ("pddattn_subdomains", "4x", "pddattn_subdomains must look like 32 or 4x4"),
    ("pddattn_subdomains", "3x3", "needs a 2D DMDA on the PC"),
    ("pddattn_chebyshev_degree", "0", "pddattn_chebyshev_degree must be >= 1"),
    ("pddattn_coarse_correction", "twice", "pddattn_coarse_correction must be additive, balanced, multiplicative or auto"),
])
def test_bad_options_are_a_clear_error_everywhere(option, value, match):
    from pddattn.petsc import DDAttentionPC, laplacian_matrix
    A = laplacian_matrix(20)
    prefix = f"bad{option[8:11]}{value.replace('x', '')}_"
    PETSc.Options(prefix)[option] = value

    def make():
        pc = PETSc.PC().create(comm=PETSc.COMM_WORLD)
        pc.setOptionsPrefix(prefix)
        pc.setOperators(A)
        pc.setType("python")
        pc.setPythonContext(DDAttentionPC())
        return pc
    _error_on_every_rank(make, match)


def test_model_for_another_n_is_a_clear_error_everywhere():
    from pddattn.petsc import laplacian_matrix
    path = saved_model(n=30, subdomains=8, overlap=1, rank=2, steps=1)
    A = laplacian_matrix(40)
    _error_on_every_rank(lambda: preconditioner(A, path, "other_n_"), "is a model for n=30, but the operator has n=40")


@pytest.mark.parametrize("content,match", [(None, "no checkpoint file"), (b"junk", "not a PyTorch checkpoint")])
def test_unreadable_model_is_a_clear_error_everywhere(content, match):
    from pddattn.petsc import laplacian_matrix
    path = None
    if world().Get_rank() == 0:
        path = Path(tempfile.mkdtemp()) / "model.pt"
        if content is not None:
            path.write_bytes(content)
        path = str(path)
    path = world().bcast(path, root=0)
    A = laplacian_matrix(20)
    _error_on_every_rank(lambda: preconditioner(A, path, "bad_"), match)
