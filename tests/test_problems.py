"""Problems: stencils against independent dense constructions, coefficient specs, matrix files, exact data."""
import numpy as np
import pytest
import scipy.sparse as sp

import reference as ref
from pddattn.problems import (backward_error, coefficient_field, make_problem, make_sampler, problem_from_spec,
                              write_petsc_binary)
from tolerances import rounding


def test_laplace1d_and_constant_diffusion1d_are_the_seed_matrix():
    A = make_problem("laplace1d", (17,)).A.toarray()
    assert np.array_equal(A, ref.laplacian(17))
    assert np.array_equal(make_problem("diffusion1d", (17,), "const").A.toarray(), A)


def _field_factor(coefficient):
    """A row sums 2 (1D) or 4 (2D) face values, each k(x) at a point computed two ways: the rounding of the
    row (factor 4 or 8) plus k's own: lognormal:S is exp(S g), g a sum of 256 features (factor S * 256)."""
    kind, _, value = coefficient.partition(":")
    return float(value) * 256 if kind == "lognormal" else 0.0


@pytest.mark.parametrize("coefficient", ["smooth:100", "jump:1e4", "lognormal:1.5"])
def test_diffusion1d_matches_the_definition(coefficient):
    k = coefficient_field(coefficient, seed=3, dim=1)
    A = make_problem("diffusion1d", (23,), coefficient, seed=3).A.toarray()
    B = ref.diffusion1d(23, lambda x: float(k(np.array([[x]]))[0]))
    assert np.abs(A - B).max() <= rounding(factor=4 + _field_factor(coefficient)) * np.abs(B).max()


@pytest.mark.parametrize("coefficient", ["const", "smooth:10", "jump:1e4", "lognormal:1", "darcy"])
def test_diffusion2d_matches_the_definition(coefficient):
    k = coefficient_field(coefficient, seed=1, dim=2)
    A = make_problem("diffusion2d", (7, 5), coefficient, seed=1).A.toarray()
    B = ref.diffusion2d(7, 5, lambda x, y: float(k(np.array([[x, y]]))[0]))
    assert np.abs(A - B).max() <= rounding(factor=8 + _field_factor(coefficient)) * np.abs(B).max()
    if coefficient == "const":  # poisson2d is the constant case, x fastest
        assert np.abs(make_problem("poisson2d", (7, 5)).A.toarray() - B).max() <= rounding(factor=8) * \
            np.abs(B).max()


def test_coefficient_ranges_and_seeds():
    x = np.random.default_rng(0).uniform(size=(4000, 2))
    smooth = coefficient_field("smooth:50", 0, 2)(x)
    assert smooth.min() >= 1 - 1e-12 and smooth.max() <= 50 + 1e-9 and smooth.max() > 40
    jump = coefficient_field("jump:1e4", 0, 2)(x)
    assert set(np.unique(jump)) == {1.0, 1e4}
    a, b = coefficient_field("lognormal:1", 0, 2)(x), coefficient_field("lognormal:1", 1, 2)(x)
    assert np.array_equal(a, coefficient_field("lognormal:1", 0, 2)(x)) and not np.allclose(a, b)
    assert 0.5 < np.log(a).std() < 2.0 and (a > 0).all()


def test_the_darcy_field_is_the_thresholded_cosine_series():
    """12 where sum_k xi_k (pi^2 |k|^2 + 9)^-1 cos(pi k1 x) cos(pi k2 y) >= 0, else 3 (k != 0, 64 modes per
    axis, xi_k from the seed): checked against that sum written out, at points away from its zero set."""
    from pddattn.problems.coefficients import DARCY_MODES
    x = np.random.default_rng(1).uniform(size=(300, 2))
    k = np.arange(DARCY_MODES)
    xi = np.random.default_rng([4, 7919]).standard_normal((DARCY_MODES, DARCY_MODES))
    g = np.array([(xi / (np.pi**2 * (k[:, None]**2 + k[None, :]**2) + 9.0)
                   * np.outer(np.cos(np.pi * k * a), np.cos(np.pi * k * b))).sum() - xi[0, 0] / 9.0 for a, b in x])
    field = coefficient_field("darcy", 4, 2)(x)
    clear = np.abs(g) > 1e-9 * np.abs(g).max()  # the series' rounding decides only at its zero set
    assert set(np.unique(field)) == {3.0, 12.0} and np.array_equal(field[clear], np.where(g >= 0, 12.0, 3.0)[clear])
    assert np.array_equal(field, coefficient_field("darcy", 4, 2)(x))
    assert not np.array_equal(field, coefficient_field("darcy", 5, 2)(x))
    with pytest.raises(ValueError, match="takes no value"):
        coefficient_field("darcy:2", 0, 2)


@pytest.mark.parametrize("kwargs,match", [
    (dict(family="heat3d"), "unknown problem family"),
    (dict(family="poisson2d", grid=(31,)), "needs a nx x ny grid"),
    (dict(family="diffusion1d", grid=(31,), coefficient="jump:-5"), "contrast must be a positive number"),
    (dict(family="diffusion1d", grid=(31,), coefficient="jump:0"), "contrast must be a positive number"),
    (dict(family="diffusion1d", grid=(31,), coefficient="wavy:2"), "unknown coefficient"),
    (dict(family="laplace1d", grid=(31,), coefficient="smooth:3"), "constant coefficient"),
    (dict(family="diffusion1d", grid="31y"), "grid must look like"),
])
def test_bad_specs_are_one_line_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_problem(**kwargs)


@pytest.mark.parametrize("suffix", [".npz", ".bin"])
def test_matrix_files_round_trip_and_are_checked(tmp_path, suffix):
    A = make_problem("diffusion2d", (6, 5), "lognormal:1").A
    path = tmp_path / f"A{suffix}"
    sp.save_npz(path, A) if suffix == ".npz" else write_petsc_binary(A, path)
    p = make_problem("matrix", None, matrix=str(path))
    assert (p.A != A).nnz == 0 and p.spec()["checksum"] and problem_from_spec(p.spec()) == p
    assert make_problem("matrix", (6, 5), matrix=str(path)).grid == (6, 5)
    bad = {"notspd": A - 2 * sp.eye(30) * abs(A).max(), "nonsym": A + sp.random(30, 30, 0.1, random_state=0),
           "nonsquare": A[:, :29]}
    for name, B in bad.items():
        q = tmp_path / f"{name}{suffix}"
        sp.save_npz(q, sp.csr_matrix(B)) if suffix == ".npz" else write_petsc_binary(B, q)
        with pytest.raises(ValueError, match={"notspd": "not positive definite", "nonsym": "not symmetric",
                                              "nonsquare": "not square"}[name]):
            make_problem("matrix", None, matrix=str(q))
    (tmp_path / "junk.bin").write_bytes(b"\x00" * 40)
    with pytest.raises(ValueError, match="neither a scipy .npz nor a PETSc binary"):
        make_problem("matrix", None, matrix=str(tmp_path / "junk.bin"))


def test_petsc_can_read_what_we_write(tmp_path):
    PETSc = pytest.importorskip("petsc4py.PETSc")
    A = make_problem("diffusion1d", (12,), "jump:100").A
    write_petsc_binary(A, tmp_path / "A.bin")
    M = PETSc.Mat().load(PETSc.Viewer().createBinary(str(tmp_path / "A.bin"), "r", comm=PETSc.COMM_SELF))
    indptr, indices, data = M.getValuesCSR()
    assert (sp.csr_matrix((data, indices, indptr), shape=A.shape) != A).nnz == 0


@pytest.mark.parametrize("family,grid,coefficient,kind", [
    ("poisson2d", (9, 7), "const", "fourier"), ("diffusion2d", (9, 7), "jump:1e4", "solve"),
    ("diffusion2d", (9, 7), "lognormal:1", "probe"), ("diffusion1d", (40,), "smooth:100", "solve"),
    ("laplace1d", (40,), "const", "fourier"),
])
def test_data_is_exact_reproducible_and_sliceable(family, grid, coefficient, kind):
    p = make_problem(family, grid, coefficient)
    s = make_sampler(kind, p, seed=4)
    f, u = s.sample(5, stream=1, index=7)
    assert backward_error(p.A, f, u) <= rounding(factor=45)  # backward stable: a small multiple of eps
    f2, u2 = make_sampler(kind, p, seed=4).sample(5, stream=1, index=7, lo=3, hi=11)
    assert np.array_equal(f2, f[:, 3:11]) and np.array_equal(u2, u[:, 3:11])
    assert not np.allclose(s.sample(5, stream=1, index=8)[0], f)


def test_fourier_data_is_refused_for_variable_coefficients():
    with pytest.raises(ValueError, match="needs constant coefficients"):
        make_sampler("fourier", make_problem("diffusion2d", (5, 5), "jump:10"))


@pytest.mark.parametrize("family,coefficient", [("poisson2d", "const"), ("diffusion2d", "jump:1e3")])
def test_smallest_eigenpairs(family, coefficient):
    p = make_problem(family, (45, 47), coefficient)
    lam, V = p.smallest_eigenpairs(6)
    exact = np.linalg.eigvalsh(p.A.toarray())[:6]
    # Shift-invert Lanczos to its convergence tolerance, not rounding: eigsh's tol=1e-10 on relative Ritz
    # residuals bounds the eigenvalues' relative error by 1e-10 |A| / lambda_1 ... met to 1e-9 here; the
    # eigenvectors' residual relative to |A| (~1e-7 lambda_max) and their orthogonality follow.
    assert np.abs(lam / exact - 1).max() <= 1e-9
    assert np.abs(p.A @ V - V * lam).max() <= 1e-7 * lam.max() and np.abs(V.T @ V - np.eye(6)).max() <= 1e-9


@pytest.mark.parametrize("grid,modes", [((13, 11), None), ((31, 29), 50)])
def test_fourier_rows_of_a_box_equal_the_whole_synthesis(grid, modes):
    """A rank's box is synthesised separably (S_y T S_x^T), equal to slicing the DST of the whole grid."""
    from pddattn.problems.samplers import evaluate_rows
    p = make_problem("poisson2d", grid)
    s = make_sampler("fourier", p, modes, seed=3)
    coef = s.coefficients(5, 1, 2)
    f, u = s.evaluate(coef)
    i, j = np.meshgrid(np.arange(2, 9), np.arange(3, 7))
    rows = np.sort((j * grid[0] + i).ravel())
    fr, ur = evaluate_rows(s, coef, rows)
    # Separable synthesis against the whole DST: sums of at most nx + ny terms per entry, in another order.
    bound = rounding(factor=sum(grid))
    assert np.abs(fr - f[:, rows]).max() < bound * np.abs(f).max()
    assert np.abs(ur - u[:, rows]).max() < bound * np.abs(u).max()
