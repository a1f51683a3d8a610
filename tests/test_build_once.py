"""Data built from a spec is built once per run: one decomposition (with its coarse basis) per level."""
import collections

import pytest

import pddattn.coarse
from pddattn.train import TrainConfig, train

TINY = dict(n=1023, subdomains=32, steps=2, test_size=4, batch=4, eval_every=1)


@pytest.fixture
def builds(monkeypatch):
    """Counts coarse-basis builds (every decomposition builder ends in one) by decomposition kind."""
    calls = collections.Counter()
    real = pddattn.coarse.attach_coarse

    def counted(d, kind, A=None):
        calls[d.spec["kind"]] += 1
        return real(d, kind, A)

    monkeypatch.setattr(pddattn.coarse, "attach_coarse", counted)
    return calls


@pytest.mark.parametrize("levels,expected", [(2, {"intervals": 1}), (4, {"intervals": 1, "algebraic": 2})])
def test_train_builds_each_level_once(builds, levels, expected):
    train(TrainConfig(**TINY, levels=levels, top_size=4), out=None)
    assert dict(builds) == expected  # before: 2 at two levels, 7 at four


def test_compare_builds_the_decomposition_once(builds, tmp_path):
    from pddattn.compare import compare
    compare(TrainConfig(**TINY), out=tmp_path, echo=lambda *a: None)
    assert dict(builds) == {"intervals": 1}  # DD model and its Schwarz start share it; before: 5


def test_the_pcs_setup_with_training_builds_once(builds, monkeypatch):
    PETSc = pytest.importorskip("petsc4py.PETSc")
    import pddattn.operators
    import pddattn.petsc.local
    factors, real = [], pddattn.operators.schwarz_factors
    monkeypatch.setattr(pddattn.operators, "schwarz_factors", lambda *a, **k: factors.append(1) or real(*a, **k))
    shares, share = [], pddattn.petsc.local.local_share
    monkeypatch.setattr(pddattn.petsc.local, "local_share", lambda *a, **k: shares.append(1) or share(*a, **k))
    from pddattn.petsc import DDAttentionPC, petsc_matrix
    from pddattn.problems import make_problem
    p = make_problem("diffusion2d", (15, 15), "lognormal:1", seed=2)
    A = petsc_matrix(p.A, PETSc.COMM_SELF)
    pc = PETSc.PC().create(comm=PETSc.COMM_SELF)
    pc.setOptionsPrefix("once_")
    for key, value in dict(subdomains="4", overlap=1, train_steps=2).items():
        PETSc.Options("once_")[f"pddattn_{key}"] = value
    pc.setOperators(A)
    pc.setType("python")
    pc.setPythonContext(DDAttentionPC())
    pc.setUp()
    # The PC trains its own model, built from its rows (petsc/local.py): one share, its A_i eigendecompositions
    # once (before: a gathered decomposition shared by two models, each factorizing every A_i)
    assert len(shares) == 1 and len(factors) == 1 and pc.getPythonContext().info["training"]["steps"] == 2
    pc.destroy()
