"""Exact parts by sparse factorizations (init='exact') equal the dense full-rank Schwarz factors.

    mpirun -n 3 python -m pytest --with-mpi -m mpi tests/test_exact.py
"""
import numpy as np
import pytest
import torch

from pddattn import DDAttention, boxes, make_problem
from pddattn.decomposition import algebraic
from tolerances import cond, rounding

GRID = (23, 19)
CASES = {
    "boxes-harmonic": lambda p: boxes(GRID, (4, 3), 2, "count", "harmonic", p.A),
    "boxes-q1": lambda p: boxes(GRID, (3, 3), 1, "count", "q1", p.A),
    "algebraic": lambda p: algebraic(p.A, 7, 2),
}


def pair(case, levels, coefficient="lognormal:1"):
    p = make_problem("diffusion2d", GRID, coefficient, seed=1)
    d = CASES[case](p)
    kw = dict(symmetric=True, problem=p, dtype=torch.float64, levels=levels, top_size=8)
    return p, d, DDAttention(d, r=d.max_size, init="schwarz", **kw), DDAttention(d, r=d.max_size, init="exact", **kw)


@pytest.mark.parametrize("levels", [2, 3])
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_sparse_path_equals_the_dense_factors(case, levels):
    p, d, dense, exact = pair(case, levels)
    x = torch.from_numpy(np.random.default_rng(3).standard_normal((p.n, 4)))
    with torch.no_grad():  # values only: the dense factors are parameters
        a, b = dense.matvec(x), exact.matvec(x)
    # Sparse solves against dense inverse factors of the same blocks: kappa(A_i) eps each, kappa(A_i) <= kappa(A).
    assert float((a - b).abs().max() / a.abs().max()) < rounding(cond(p.A), factor=100)
    assert exact.num_parameters() == 0 and exact.rank_bound() == p.n


def test_the_sparse_path_is_additive_schwarz_with_exact_solves():
    """Independently: Phi A_0^-1 Phi^T + sum_i R_i^T D_i^1/2 A_i^-1 D_i^1/2 R_i, dense."""
    p, d, _, exact = pair("boxes-harmonic", 2, "jump:1e4")
    A = p.A.toarray()
    w = d.pou_weights()
    M = d.phi.toarray() @ np.linalg.solve(d.phi.toarray().T @ A @ d.phi.toarray(), d.phi.toarray().T)
    for i, s in enumerate(d.subdomains):
        D = np.sqrt(w[i, : len(s)])
        M[np.ix_(s, s)] += D[:, None] * np.linalg.inv(A[np.ix_(s, s)]) * D[None, :]
    x = np.random.default_rng(5).standard_normal((p.n, 2))
    y = exact.matvec(torch.from_numpy(x)).numpy()
    assert np.abs(y - M @ x).max() / np.abs(M @ x).max() < rounding(cond(A), factor=100)  # solves, as above


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("levels", [2, 3])
def test_the_distributed_sparse_path_equals_serial(levels):
    from mpi4py import MPI
    from pddattn.parallel import Layout
    from pddattn.parallel.operator import DistributedDDAttention
    p = make_problem("diffusion2d", GRID, "lognormal:1", seed=1)
    d = algebraic(p.A, 8, 2)
    kw = dict(symmetric=True, problem=p, dtype=torch.float64, levels=levels, top_size=8, init="exact")
    serial = DDAttention(d, r=d.max_size, **kw)
    layout = Layout()
    dist = DistributedDDAttention(d, r=d.max_size, layout=layout, **kw)
    x = np.random.default_rng(9).standard_normal((p.n, 3))
    want = serial.matvec(torch.from_numpy(x)).numpy()[dist.own_rows]
    got = dist.matvec(torch.from_numpy(x[dist.own_rows])).numpy()
    error = np.abs(got - want).max() / np.abs(want).max() if len(want) else 0.0
    # The same sparse solves, their blocks factored on other ranks: kappa(A) eps, factor 100 for the sums.
    assert MPI.COMM_WORLD.allreduce(error, op=MPI.MAX) < rounding(cond(p.A), factor=100)
    dist.free()
    layout.free()


def test_the_block_diagonal_of_overlapping_subdomains_is_block_diag_of_their_blocks():
    import scipy.sparse as sp
    from pddattn.decomposition import boxes
    from pddattn.problems import make_problem
    from pddattn.problems.families import block_diagonal
    p = make_problem("diffusion2d", (23, 19), "jump:1e4")
    d = boxes((23, 19), (3, 2), 2, coarse="q1")
    a = block_diagonal(p.rows, d.subdomains)
    b = sp.block_diag([p.block(s) for s in d.subdomains], format="csc")
    assert (a != b).nnz == 0 and a.nnz == b.nnz  # bitwise: no arithmetic on the values


@pytest.mark.parametrize("package", ["petsc", "cholmod"])
def test_both_factor_packages_solve_the_block_diagonal_and_count_what_petsc_logs(package):
    """CHOLMOD (the default where PETSc has SuiteSparse) and PETSc's own Cholesky are one operator."""
    pytest.importorskip("petsc4py")
    from petsc4py import PETSc
    from pddattn.decomposition import boxes
    from pddattn.exact import _PetscCholesky, factor_package
    from pddattn.problems import make_problem
    from pddattn.problems.families import block_diagonal
    if package == "cholmod" and factor_package() != "cholmod":
        pytest.skip("this PETSc has no SuiteSparse")
    p = make_problem("diffusion2d", (23, 19), "jump:1e4")
    A = block_diagonal(p.rows, boxes((23, 19), (3, 2), 2, coarse="q1").subdomains)
    X = np.random.default_rng(3).standard_normal((A.shape[0], 2))
    factor = _PetscCholesky(A, package=package)
    before = PETSc.Log.getFlops()
    got = factor.solve(X)
    logged = PETSc.Log.getFlops() - before
    want = np.linalg.solve(A.toarray(), X)
    # Two backward-stable solves of one SPD system: kappa(A) eps apart, factor 10.
    assert np.abs(got - want).max() <= rounding(cond(A), factor=10) * np.abs(want).max()
    assert factor.package == package and logged == factor.flops(columns=2)
