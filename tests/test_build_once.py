"""Data built from a spec is built once per run: one Hierarchy (decompositions and coarse bases of every
level), counted through the Hierarchy's own public counter, and handed to whoever needs the levels."""
import pytest

from pddattn.hierarchy import Hierarchy
from pddattn.train import TrainConfig, train

TINY = dict(n=1023, subdomains=32, steps=2, test_size=4, batch=4, eval_every=1)


@pytest.fixture
def builds():
    """The number of hierarchies built since the test started."""
    start = Hierarchy.builds
    return lambda: Hierarchy.builds - start


@pytest.mark.parametrize("levels", [2, 4])
def test_train_builds_the_hierarchy_once(builds, levels):
    model, _ = train(TrainConfig.of(**TINY, levels=levels, top_size=4), out=None)
    assert builds() == 1  # before the Hierarchy: 2 decompositions at two levels, 7 at four
    assert len(model.level_operators) == levels - 1


def test_compare_builds_the_hierarchy_once(builds, tmp_path):
    """The DD model and its Schwarz start share one hierarchy; the global model needs none."""
    from pddattn.compare import compare
    compare(TrainConfig.of(**TINY), out=tmp_path, echo=lambda *a: None)
    assert builds() == 1  # before: 5 decompositions


def _pc_on(A, prefix, **options):
    """A set-up DDAttentionPC on the PETSc Mat A with ``-{prefix}pddattn_*`` options."""
    from petsc4py import PETSc
    from pddattn.petsc import DDAttentionPC
    pc = PETSc.PC().create(comm=PETSc.COMM_SELF)
    pc.setOptionsPrefix(prefix)
    for key, value in options.items():
        PETSc.Options(prefix)[f"pddattn_{key}"] = value
    pc.setOperators(A)
    pc.setType("python")
    pc.setPythonContext(DDAttentionPC())
    pc.setUp()
    return pc


def test_the_pcs_setup_with_training_builds_once(builds):
    """The PC trains its own model on the hierarchy of its rows (petsc/local.py): built once."""
    PETSc = pytest.importorskip("petsc4py.PETSc")
    from pddattn.petsc import petsc_matrix
    from pddattn.problems import make_problem
    p = make_problem("diffusion2d", (15, 15), "lognormal:1", seed=2)
    pc = _pc_on(petsc_matrix(p.A, PETSc.COMM_SELF), "once_", subdomains="4", overlap=1, train_steps=2)
    context = pc.getPythonContext()
    assert builds() == 1 and context.info["training"]["steps"] == 2
    assert context.info["hierarchy"].decomposition is context.model.decomposition
    pc.destroy()


def test_a_pcs_hierarchy_follows_new_values(builds):
    """New values of the PC's Mat: its hierarchy follows them on its structure, not a new build (a rank's
    share takes them from its rows: Hierarchy.follow_share), for a Nicolaides coarse space too."""
    PETSc = pytest.importorskip("petsc4py.PETSc")
    import numpy as np
    from pddattn.petsc import petsc_matrix
    from pddattn.problems import make_problem
    p, q = (make_problem("diffusion2d", (15, 15), "lognormal:1", seed=s) for s in (2, 3))
    A = petsc_matrix(p.A, PETSc.COMM_SELF)
    pc = _pc_on(A, "update_", subdomains="4", overlap=1, coarse="nicolaides")
    context = pc.getPythonContext()
    hierarchy = context.info["hierarchy"]
    assert context.info["from_rows"] and not context.info.get("gathered")
    B = petsc_matrix(q.A, PETSc.COMM_SELF)
    A.zeroEntries()
    A.axpy(1.0, B, structure=PETSc.Mat.Structure.SAME_NONZERO_PATTERN)
    pc.setUp()
    assert builds() == 1 and context.setups == {"built": 1, "refactored": 1}
    assert context.info["hierarchy"] is hierarchy
    assert abs(hierarchy.problem.rows(np.arange(p.n)) - q.A).max() == 0  # one rank reads every row
    pc.destroy()
