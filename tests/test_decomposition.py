import numpy as np
import pytest

import reference as ref
from pddattn.decomposition import intervals as Decomposition
from pddattn.problems.laplace1d import laplacian_dense
from tolerances import REORDERED, cond, rounding

CASES = [(10, 3, 1), (50, 5, 2), (37, 4, 3), (40, 7, 6), (64, 8, 0), (9, 9, 0), (5, 1, 0), (23, 2, 10)]


@pytest.mark.parametrize("n,N,delta", CASES)
def test_cores_are_balanced_and_subdomains_clip(n, N, delta):
    d = Decomposition(n, N, delta)
    sizes = d.core_sizes
    assert sizes.sum() == n and sizes.max() - sizes.min() <= 1
    assert d.core_bounds.tolist() == ref.cores(n, N)
    for i in range(N):
        assert np.array_equal(d.restriction(i), ref.restrictions(n, N, delta)[i].argmax(1))


@pytest.mark.parametrize("n,N,delta", CASES)
@pytest.mark.parametrize("pou", ["count", "smooth"])
def test_partition_of_unity(n, N, delta, pou):
    d = Decomposition(n, N, delta, pou)
    D = d.pou_weights()
    total = np.zeros(n)
    for i in range(N):
        total[d.restriction(i)] += D[i, : d.sizes[i]]
    assert np.abs(total - 1).max() <= rounding(factor=N)  # a sum of at most N weights (tolerances.py)
    assert (D[np.arange(d.max_size)[None, :] >= d.sizes[:, None]] == 0).all()  # zero padding
    for i, Di in enumerate(ref.pou(n, N, delta, pou)):
        assert np.allclose(D[i, : d.sizes[i]], np.diag(Di), rtol=0, atol=REORDERED)  # ramps two ways


@pytest.mark.parametrize("n,N,delta", CASES)
def test_coarse_basis(n, N, delta):
    d = Decomposition(n, N, delta)
    Phi = d.coarse_basis_dense()
    assert Phi.shape == (n, N - 1)
    assert np.allclose(Phi, ref.coarse_basis(n, N), rtol=0, atol=rounding(factor=4))  # linear hats two ways
    assert ((Phi != 0).sum(1) <= 2).all()
    if N > 1:
        A0 = Phi.T @ laplacian_dense(n) @ Phi
        # Phi^T A Phi in float64: each entry sums O(n) terms of size |A0|, the two triangles in other orders.
        assert np.allclose(A0, A0.T, rtol=0, atol=rounding(factor=n) * np.abs(A0).max())
        assert np.linalg.eigvalsh(A0).min() > 0


@pytest.mark.parametrize("n,N,delta", CASES)
def test_exact_inverse_identity(n, N, delta):
    """A^-1 = Phi (Phi^T A Phi)^-1 Phi^T + sum of the between-coarse-node inverses."""
    d = Decomposition(n, N, delta)
    A = laplacian_dense(n)
    M = np.zeros((n, n))
    if N > 1:
        Phi = d.coarse_basis_dense()
        M += Phi @ np.linalg.solve(Phi.T @ A @ Phi, Phi.T)
    for nodes in d.interior_blocks():
        M[np.ix_(nodes, nodes)] += np.linalg.inv(A[np.ix_(nodes, nodes)])
    Ainv = np.linalg.inv(A)
    assert np.linalg.norm(M - Ainv) <= rounding(cond(A), factor=10) * np.linalg.norm(Ainv)  # both: kappa(A) eps


def test_padded_indices_point_padding_at_the_zero_slot():
    d = Decomposition(11, 3, 2)
    idx = d.padded_indices()
    assert idx.shape == (3, d.max_size)
    assert (idx[d.sizes[:, None] <= np.arange(d.max_size)[None, :]] == 11).all()
    local = d.padded_indices(1, 3, offset=d.starts[1])
    assert local.min() == 0 and local.max() == d.stops[2] - d.starts[1]


def test_round_trip_and_equality():
    from pddattn.decomposition import decomposition_from_spec
    from pddattn.problems import make_problem
    d = Decomposition(30, 4, 2, "smooth")
    again = decomposition_from_spec(d.to_dict(), make_problem("laplace1d", (30,)))
    assert again == d and np.array_equal(again.pou_weights(), d.pou_weights())
    assert d != Decomposition(30, 4, 1, "smooth")


@pytest.mark.parametrize("args,match", [
    ((0, 1, 0), "n must be a positive integer"),
    ((10, 0, 0), r"N \(number of subdomains\) must be an integer in 1..n=10"),
    ((10, 11, 0), "more than the n=10 nodes; N must be in 1..10"),
    ((10, 2, -1), r"delta \(overlap\) must be an integer >= 0"),
    ((10, 2, 5), r"too large.*use 0 <= delta <= 4"),
    ((10, 2.0, 1), "must be an integer"),
])
def test_invalid_input_says_what_is_allowed(args, match):
    with pytest.raises(ValueError, match=match):
        Decomposition(*args)


def test_unknown_pou():
    with pytest.raises(ValueError, match=r"unknown partition of unity 'hat'; choose one of \('count', 'smooth'\)"):
        Decomposition(10, 2, 1, "hat")


def test_single_subdomain_allows_any_overlap():
    d = Decomposition(6, 1, 100)
    assert (d.starts[0], d.stops[0], d.coarse_size) == (0, 6, 0)
