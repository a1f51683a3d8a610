import numpy as np
import pytest

from pddattn.problems.laplace1d import (FourierSampler, ProbeSampler, apply_laplacian, laplacian_dense,
                             laplacian_eigenvalues, sine_modes, sine_synthesis)


def relative_residual(f, u, n):
    return np.linalg.norm(apply_laplacian(u, n) - f, axis=-1) / np.linalg.norm(f, axis=-1)


@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_exact_eigenpairs(n):
    A = laplacian_dense(n)
    S = sine_modes(n, n).T
    assert np.allclose(A @ S, S * laplacian_eigenvalues(n), rtol=1e-12, atol=1e-9 * (n + 1) ** 2)
    assert np.allclose(apply_laplacian(S.T, n), (A @ S).T, rtol=1e-13, atol=1e-10 * (n + 1) ** 2)


@pytest.mark.parametrize("n,K", [(15, 8), (31, 16), (63, 32), (63, 63)])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_fourier_pairs_meet_the_literal_residual_bar(n, K, alpha):
    # Where float64 allows it (eps * cond(A) well below 1e-12), ||Au - f|| / ||f|| <= 1e-12.
    f, u = FourierSampler(n, K, alpha, seed=3).sample(16)
    assert relative_residual(f, u, n).max() <= 1e-12


@pytest.mark.parametrize("n,K", [(1023, 16), (4095, 4095), (100_000, 16), (100_000, 100_000)])
def test_fourier_pairs_are_exact_to_rounding_at_any_size(n, K):
    """Backward error at rounding level, and a residual no larger than the
    correctly rounded exact solution has: beyond n ~ 100 the literal residual
    bar is out of reach of *any* float64 vector (eps * 4 h^-2 grows like n^2)."""
    s = FourierSampler(n, K, 0.0, seed=5)
    a = s.coefficients(2)
    f, u = s.evaluate(a)
    r = np.linalg.norm(apply_laplacian(u, n) - f, axis=-1)
    norm_A = 4.0 * (n + 1) ** 2
    assert (r / (norm_A * np.linalg.norm(u, axis=-1) + np.linalg.norm(f, axis=-1))).max() < 1e-15
    if K <= 64:  # extended-precision reference by direct summation
        k = np.arange(1, K + 1, dtype=np.longdouble)
        lam = 4 * (n + 1) ** 2 * np.sin(k * np.pi / (2 * (n + 1))) ** 2
        table = np.sin(np.pi * ((np.arange(1, K + 1)[:, None] * np.arange(1, n + 1)[None, :]) % (2 * n + 2))
                       .astype(np.longdouble) / (n + 1))
        u_ref = (a.astype(np.longdouble) / lam) @ table
        assert (np.linalg.norm(u - u_ref, axis=-1) / np.linalg.norm(u_ref, axis=-1)).max() < 1e-14
        # Residuals in extended precision: ours within a small factor of the correctly
        # rounded exact solution's (ours sums K rounded terms, so a few ulps rather than half of one).
        f_ld = f.astype(np.longdouble)
        residual = lambda v: np.linalg.norm(apply_laplacian(v.astype(np.longdouble), n) - f_ld, axis=-1)  # noqa
        assert (residual(u) <= 10 * residual(u_ref.astype(np.float64))).all()


def test_fft_and_table_synthesis_agree(rng):
    n, K = 301, 40
    coef = rng.standard_normal((5, K))
    table = sine_modes(n, K, 17, 230)
    direct = sine_synthesis(coef, n, 17, 230, table)
    fft = sine_synthesis(coef, n, 17, 230)
    assert np.abs(direct - fft).max() <= 1e-13 * np.abs(direct).max()


@pytest.mark.parametrize("kind", ["fourier", "probe"])
def test_slices_equal_the_whole(kind):
    n = 200
    from pddattn.problems import make_problem, make_sampler
    s = make_sampler(kind, make_problem("laplace1d", (n,)), modes=37 if kind == "fourier" else None, alpha=0.5, seed=9)
    f, u = s.sample(4, stream=1, index=7)
    for lo, hi in [(0, 1), (0, 50), (50, 51), (120, 200), (199, 200)]:
        fs, us = s.sample(4, stream=1, index=7, lo=lo, hi=hi)
        assert np.allclose(fs, f[:, lo:hi], rtol=0, atol=1e-12 * np.abs(f).max())
        assert np.allclose(us, u[:, lo:hi], rtol=0, atol=1e-12 * np.abs(u).max())


def test_probe_pairs_are_exact_and_white(rng):
    n = 511
    f, u = ProbeSampler(n, seed=1).sample(64)
    assert np.allclose(apply_laplacian(u, n), f, rtol=0, atol=1e-12 * np.abs(f).max())
    # All n modes with alpha = 0: u is white noise of variance (n + 1) / 2.
    assert abs(u.var() / ((n + 1) / 2) - 1) < 0.05


def test_seeding_is_reproducible_and_streams_differ():
    s = FourierSampler(50, 10, seed=4)
    assert np.array_equal(s.coefficients(3, 0, 5), s.coefficients(3, 0, 5))
    assert not np.allclose(s.coefficients(3, 0, 5), s.coefficients(3, 1, 5))
    assert not np.allclose(s.coefficients(3, 0, 5), FourierSampler(50, 10, seed=5).coefficients(3, 0, 5))


def test_large_n_is_quick():
    import time
    t = time.perf_counter()
    f, u = FourierSampler(100_000, 16, seed=0).sample(8)
    assert f.shape == (8, 100_000)
    assert time.perf_counter() - t < 30  # generous: O(n K) work, well under a second normally


@pytest.mark.parametrize("bad", [dict(n=0), dict(n=-3), dict(n=2.5), dict(n=10, modes=0), dict(n=10, modes=11),
                                 dict(n=10, modes=3, alpha=-1.0)])
def test_bad_sampler_arguments(bad):
    with pytest.raises(ValueError, match="must be"):
        FourierSampler(bad["n"], bad.get("modes", 1), bad.get("alpha", 0.0))


def test_unknown_data_kind():
    from pddattn.problems import make_problem, make_sampler
    with pytest.raises(ValueError, match="unknown data kind"):
        make_sampler("gaussian", make_problem("laplace1d", (10,)))
