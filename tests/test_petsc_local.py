"""The PC's set-up from each rank's rows (petsc/local.py) against the whole-operator construction.

    mpirun -n 4 python -m pytest --with-mpi -m mpi tests/test_petsc_local.py

A rank's share (its subdomains, count weights, rows of Phi, the top A_0)
must equal the corresponding parts of the Decomposition built from the whole
A, on DMDA boxes (PETSc's box ordering, uneven splits) and on algebraic
blocks of a bare matrix; and no rank may hold more of A than its subdomains
and the ring around its rows.
"""
import numpy as np
import pytest

from pddattn.decomposition import algebraic, boxes
from pddattn.problems import make_problem

PETSc = pytest.importorskip("petsc4py.PETSc")
pytestmark = pytest.mark.mpi(min_size=1)

from test_petsc import everyone, worst  # noqa: E402
from test_petsc_operator import make_pc, on_dmda, plain  # noqa: E402
from tolerances import cond, rounding  # noqa: E402

GRID = (19, 17)
PROBLEM = make_problem("diffusion2d", GRID, "jump:1e4", seed=1)
# Index sets and weights are exact; harmonic Phi comes from local solves of A_II, relative rounding
# kappa(A_II) eps <= kappa(A) eps (1.1e5 here), factor 10 for the sums: tolerances.py.
SOLVES = rounding(cond(PROBLEM.A), factor=10)


def _layout():
    from pddattn.parallel.layout import Layout
    return Layout(comm=PETSc.COMM_WORLD.tompi4py())


def _compare(share, d):
    """The largest relative difference between a share and the whole decomposition's same parts."""
    from pddattn.parallel.layout import subdomain_holdings
    held = subdomain_holdings(d, share.plan.comm.Get_size() if share.plan.comm is not None else 1)
    mine = held[PETSc.COMM_WORLD.getRank()] if len(held) > 1 else held[0]
    assert np.array_equal(share.held, mine)
    assert all(np.array_equal(a, d.subdomains[i]) for a, i in zip(share.subdomains, mine))
    weights = d.pou_weights()
    assert all(np.array_equal(w, weights[i, : len(w)]) for w, i in zip(share.weights, mine))
    assert share.coarse_size == d.coarse_size and share.max_size == d.max_size
    phi = d.phi[share.own]
    worst_phi = abs(share.phi - phi).max() / max(abs(phi).max(), 1e-300) if phi.nnz else 0.0
    if not d.coarse_size:
        return worst_phi
    A0 = (d.phi.T @ PROBLEM.A @ d.phi).tocsr()
    return max(worst_phi, abs(share.A0 - A0).max() / abs(A0).max())


@pytest.mark.parametrize("layout,delta,coarse", [((4, 3), 1, "harmonic"), ((3, 2), 2, "q1"), ((5, 4), 0, "harmonic"),
                                                 ((2, 2), 2, "none"), ((4, 3), 1, "nicolaides")])
def test_a_share_of_dmda_boxes_equals_the_whole_decomposition(layout, delta, coarse):
    from pddattn.parallel.layout import process_grid
    from pddattn.petsc.local import local_share
    size = PETSc.COMM_WORLD.getSize()
    if size > 1 and process_grid(layout, size) is None:
        pytest.skip(f"{size} ranks do not tile {layout}")
    A, dm, _ = on_dmda(PROBLEM)
    spec = {"kind": "boxes", "N": list(layout), "delta": delta, "pou": "count", "coarse": coarse}
    share, _ = local_share(A, dm, spec, _layout())
    d = boxes(GRID, layout, delta, "count", coarse, PROBLEM.A)
    assert worst(_compare(share, d)) <= SOLVES


@pytest.mark.parametrize("N,delta,coarse", [(5, 2, "harmonic"), (7, 0, "harmonic"), (4, 1, "harmonic"),
                                           (5, 2, "nicolaides")])
def test_a_share_of_algebraic_blocks_equals_the_whole_decomposition(N, delta, coarse):
    from pddattn.petsc.local import local_share
    A, _, _ = plain(PROBLEM)
    spec = {"kind": "algebraic", "N": N, "delta": delta, "pou": "count", "coarse": coarse}
    share, _ = local_share(A, None, spec, _layout())
    d = algebraic(PROBLEM.A, N, delta, "count", coarse)
    assert worst(_compare(share, d)) <= SOLVES


def test_the_dmda_numbering_is_the_application_ordering():
    from pddattn.petsc.local import Numbering
    _, dm, natural = on_dmda(PROBLEM)
    numbering = Numbering(dm)
    nodes = np.arange(PROBLEM.n)
    petsc = np.asarray(dm.getAO().app2petsc(nodes.astype(PETSc.IntType)), dtype=np.int64)
    assert np.array_equal(numbering.to_petsc(nodes), petsc)
    assert np.array_equal(numbering.to_natural(petsc), nodes)


@pytest.mark.parametrize("where", ["dmda", "plain"])
def test_no_rank_holds_more_of_a_than_its_subdomains_and_their_ring(where):
    """The PC holds A only at the union of its subdomains and the ring of its rows; never the whole."""
    A, dm, natural = (on_dmda if where == "dmda" else plain)(PROBLEM)
    size = PETSc.COMM_WORLD.getSize()
    subdomains = f"{2 * size}x2" if where == "dmda" and size <= 4 else str(4 * size)
    pc = make_pc(A, dm, f"held{where}_", subdomains=subdomains, overlap=1)
    pc.setUp()
    context = pc.getPythonContext()
    share, problem = context.model.decomposition, context.model.problem
    assert context.info["from_rows"] and problem._A is None  # the whole A was never assembled here
    reads = np.unique(np.concatenate(list(share.subdomains)))
    ring = np.unique(PROBLEM.A[share.own].indices)  # the rows' neighbours, from the test's own matrix
    assert share.rows_held == len(np.union1d(reads, ring))
    elsewhere = np.setdiff1d(np.arange(PROBLEM.n), np.union1d(reads, ring))
    if size > 1:
        assert share.rows_held < PROBLEM.n and len(elsewhere)
        with pytest.raises(ValueError, match="holds A's rows"):
            problem.rows(elsewhere[:1])


@pytest.mark.parametrize("correction,local,coarse", [("balanced", 1, 2), ("multiplicative", 4, 1),
                                                    ("additive", 1, 1)])
def test_the_cost_model_counts_the_flops_petsc_logs(correction, local, coarse):
    """The model's flops of the triangular solves equal PETSc's own counter over the parts one application
    runs, and a whole application logs those flops too."""
    import torch
    from pddattn.exact import application_cost
    A, dm, _ = on_dmda(PROBLEM)
    pc = make_pc(A, dm, f"cost{correction}_", subdomains="4x4", overlap=2, coarse_correction=correction)
    pc.setUp()
    model = pc.getPythonContext().model
    x = torch.from_numpy(np.random.default_rng(5).standard_normal((len(model.own_rows), 1)))
    cost = application_cost(model, correction, degree=2)
    before = PETSc.Log.getFlops()
    with torch.no_grad():
        for _ in range(local):
            model.local_matvec(x)
        for _ in range(coarse):
            model.coarse_term(x)
    assert everyone(PETSc.Log.getFlops() - before == cost["logged"] > 0)
    u, v = A.createVecs()
    u.setRandom()
    products = {"additive": 0, "balanced": 2, "multiplicative": 4}[correction]
    lo, hi = A.getOwnershipRange()
    mult = 2 * A.getInfo(PETSc.Mat.InfoType.LOCAL)["nz_used"] - (hi - lo)  # what PETSc logs per MatMult
    # the PC's M1 reads and writes through W = D^1/2 R, a MatMult and a MatMultTranspose: on one rank the
    # 3 s flops the model counts for D^1/2 twice and the scatter-add (PETSc logs ghost entries twice)
    one_level = pc.getPythonContext()._one_level
    before = PETSc.Log.getFlops()
    one_level.W.mult(u, one_level.t)
    one_level.W.multTranspose(one_level.s, v)
    weights = local * (PETSc.Log.getFlops() - before)
    counted = 3 * local * len(model.parametrization.local_solve.rows)
    assert everyone(weights == counted if PETSc.COMM_WORLD.getSize() == 1 else weights >= counted)
    before = PETSc.Log.getFlops()
    pc.apply(u, v)
    vector_ops = PETSc.Log.getFlops() - before - cost["logged"] - products * mult - weights
    assert everyone(0 <= vector_ops <= 20 * (hi - lo))  # the axpys and scalings around the parts (20 n at k = 2)
    assert cost["total"][0] > cost["logged"] and cost["total"][1] > 0


def test_a_matrix_file_is_read_by_rows_with_matload_and_never_whole(tmp_path):
    """pddattn solve's route for a PETSc binary file: each rank its rows; b, u and the PC from those rows alone."""
    from pddattn.petsc.solve import _white_rhs, assemble_problem
    from pddattn.problems import make_sampler
    from pddattn.problems.families import read_matrix, unread_matrix_problem, write_petsc_binary
    comm = PETSc.COMM_WORLD.tompi4py()
    path = comm.bcast(str(tmp_path / "A.petsc") if comm.Get_rank() == 0 else None)
    if comm.Get_rank() == 0:
        write_petsc_binary(PROBLEM.A, path)
    comm.Barrier()
    problem = unread_matrix_problem(path)
    A, _, _ = assemble_problem(problem, PETSc.COMM_WORLD, dmda=False)
    lo, hi = A.getOwnershipRange()
    indptr, indices, values = A.getValuesCSR()
    import scipy.sparse as sp
    mine = sp.csr_matrix((values, indices, indptr), shape=(hi - lo, problem.n))
    assert abs(mine - PROBLEM.A[lo:hi]).max() == 0
    b, u = _white_rhs("solve", A, seed=0)
    r = b.duplicate()
    A.mult(u, r)
    r.axpy(-1.0, b)
    assert r.norm() <= 10 * SOLVES * b.norm()  # a backward-stable direct solve: ||r|| <= kappa eps ||A|| ||u||
    serial_f, _ = make_sampler("solve", PROBLEM, seed=0).sample(1)
    assert np.array_equal(b.getArray(), serial_f[0, lo:hi])  # the serial sampler's right-hand side
    pc = make_pc(A, None, "fromfile_", subdomains="4", overlap=1)
    pc.setUp()
    assert pc.getPythonContext().info.get("from_rows")
    assert problem._A is None  # nothing above read the whole matrix
    with pytest.raises(ValueError, match="neither a PETSc binary Mat file nor a scipy .npz"):
        unread_matrix_problem(__file__)
    if comm.Get_rank() == 0:
        write_petsc_binary(sp.random(6, 4, density=0.5, format="csr"), str(tmp_path / "wide.petsc"))
        with pytest.raises(ValueError, match="6 x 4"):
            unread_matrix_problem(str(tmp_path / "wide.petsc"))
    assert read_matrix(path).shape == PROBLEM.A.shape


@pytest.mark.parametrize("where,subdomains,overlap", [("dmda", "4x3", 2), ("plain", "5", 1)])
def test_the_petsc_one_level_term_equals_the_models(where, subdomains, overlap):
    """M1 on PETSc's Mat and Vecs (one_level.py) is the model's local_matvec to 1e-12, in the operator's
    numbering (a DMDA's box ordering on several ranks), for the transpose too (the same: symmetric)."""
    import torch
    A, dm, natural = (on_dmda if where == "dmda" else plain)(PROBLEM)
    pc = make_pc(A, dm, f"onelevel{where}_", subdomains=subdomains, overlap=overlap)
    pc.setUp()
    context = pc.getPythonContext()
    assert context._one_level is not None
    x, y = A.createVecs()
    x.setArray(np.random.default_rng(3).standard_normal(len(natural)))
    context._one_level(x, y)
    values = context._rows.to_model(x)
    with torch.no_grad():
        expected = context.model.local_matvec(torch.from_numpy(values[:, None]))[:, 0].numpy()
    got = y.duplicate()
    context._rows.to_vec(expected, got)
    got.axpy(-1.0, y)
    assert worst(got.norm() / y.norm()) <= SOLVES  # sparse local solves in PETSc and in the model
