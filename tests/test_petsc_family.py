"""DDAttentionPC with a generated-factor model on operators it never saw, from each rank's rows, on 1-4 ranks.

    mpirun -n 3 python -m pytest --with-mpi -m mpi tests/test_petsc_family.py

On a DMDA each rank generates its own boxes' factors from the rows it holds
(never A whole); without one the operator is gathered and the whole model
applied on every rank. Both are the family model's M(A)^-1 = coarse +
generated local term + omega D^-1 on the held-out operator, written out here
by the serial model (family.py).
"""
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from pddattn.family_run import FamilySpec, model_for, train_family
from pddattn.problems import make_problem

PETSc = pytest.importorskip("petsc4py.PETSc")
pytestmark = pytest.mark.mpi(min_size=1)

from test_petsc import world, worst  # noqa: E402
from test_petsc_operator import apply_natural, make_pc, on_dmda, plain  # noqa: E402
from tolerances import EPS32, cond, rounding  # noqa: E402

SPEC = FamilySpec(grid=(15, 15), box=8, operators=2, steps=3, rank=4, width=8, depth=2, test_operators=1)
HELD_OUT = make_problem("diffusion2d", (23, 23), "darcy", seed=7_000_001)  # another grid, an unseen field
KAPPA = cond(HELD_OUT.A)


def _model_path(spec=SPEC):
    """Train serially on rank 0; every rank gets the path."""
    path = None
    if world().Get_rank() == 0:
        out = Path(tempfile.mkdtemp(prefix="pddattn-family-"))
        train_family(spec, out)
        path = str(out / "checkpoint.pt")
        if spec.coarse_block == "generated":  # a coarse block of the size of A_0^-1's, not the start's ~0
            payload = torch.load(path, weights_only=True)
            last = f"coarse_generator.net.{2 * spec.depth}.weight"
            payload["state"][last] = torch.randn_like(payload["state"][last]) * 0.3
            torch.save(payload, path)
    return world().bcast(path, root=0)


def _serial_operator(path, problem):
    """The family model's M(A)^-1 on ``problem``, dense, from the serial code."""
    import pddattn.family_run as fr
    spec, payload = fr.load(path)
    model = model_for(spec, payload, problem.A, problem.grid)
    op = model.values([problem.A])[0]
    with torch.no_grad():
        return model.matvec(torch.eye(problem.n, dtype=torch.float64), op).numpy(), model, op


@pytest.mark.parametrize("where, spec", [("dmda", SPEC), ("plain", SPEC),
                                         ("dmda", dataclasses.replace(SPEC, coarse_block="generated")),
                                         ("dmda", dataclasses.replace(SPEC, local="ritz")),
                                         ("dmda", dataclasses.replace(SPEC, generator_dtype="float32"))],
                         ids=["dmda", "plain", "dmda-generated-coarse-block", "dmda-ritz", "dmda-float32-generator"])
def test_the_pc_is_the_family_models_operator_on_a_held_out_field(where, spec):
    path = _model_path(spec)
    M, _, _ = _serial_operator(path, HELD_OUT)
    A, dm, natural = (on_dmda if where == "dmda" else plain)(HELD_OUT)
    pc = make_pc(A, dm, f"fam{where}_", model=path)
    pc.setUp()
    source = pc.getPythonContext().source
    assert source.kind == ("family-rows" if where == "dmda" else "family")
    x = np.random.default_rng(3).standard_normal(HELD_OUT.n)
    y = apply_natural(pc, A, natural, x)
    # the boxes' terms summed in another order and the coarse block solved another way (a dense Cholesky
    # here, a sparse one there): kappa(A_0) <= kappa(A) kappa(Phi^T Phi) (Phi^T Phi ~ 10), factor 100
    error = worst(np.abs(y - M @ x).max() / np.abs(M @ x).max())
    tolerance = rounding(10 * KAPPA, 100)
    if spec.generator_dtype == "float32":  # a rank's boxes convolved in a batch of their own: the factors
        tolerance += rounding(KAPPA, 2 * 300, EPS32)  # may round apart (factor 300, as in test_family), twice
    assert error <= tolerance, error
    if where == "dmda":
        assert source.info["rows_held"] < HELD_OUT.n or world().Get_size() == 1  # never A whole
    if world().Get_rank() == 0:
        print(f"family PC ({where}) against the serial model: {error:.2e}")
    pc.destroy()
    A.destroy()


def test_new_values_of_the_same_dmda_mat_generate_the_factors_anew():
    path = _model_path()
    A, dm, natural = on_dmda(HELD_OUT)
    pc = make_pc(A, dm, "famnew_", model=path)
    pc.setUp()
    A.scale(2.5)  # new values, same structure: M(2.5 A)^-1 = M(A)^-1 / 2.5 (the model is scale-equivariant)
    pc.setUp()
    x = np.random.default_rng(4).standard_normal(HELD_OUT.n)
    M, _, _ = _serial_operator(path, HELD_OUT)
    y = apply_natural(pc, A, natural, x)
    assert worst(np.abs(2.5 * y - M @ x).max() / np.abs(M @ x).max()) <= rounding(10 * KAPPA, 100)
    assert pc.getPythonContext().setups["built"] == 2
    pc.destroy()
    A.destroy()
