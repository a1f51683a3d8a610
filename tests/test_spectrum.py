"""Lanczos on M A and the condition-number loss, against dense linear algebra."""
import numpy as np
import pytest
import torch

from pddattn.decomposition import intervals as Decomposition
from pddattn.operators import DDAttention
from pddattn.parallel.layout import ConfigurationError
from pddattn.problems.laplace1d import laplacian_dense
from pddattn.spectrum import condition_loss, condition_number, lanczos, laplacian_apply
from pddattn.train import TrainConfig, train
from tolerances import cond, rounding


def schwarz_model(n=63, N=4, delta=2, perturb=0.0, seed=0):
    d = Decomposition(n, N, delta)
    model = DDAttention(d, r=-(-n // N) + 2 * delta, symmetric=True, init="schwarz", dtype=torch.float64)
    if perturb:  # simple eigenvalues, so eigenvalue derivatives exist
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1 + perturb * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def dense_spectrum(model):
    M = model.dense().detach().numpy()
    return np.sort(np.linalg.eigvals(M @ laplacian_dense(model.n)).real)


def test_laplacian_apply_is_the_fd_matrix():
    x = torch.randn(37, 3, dtype=torch.float64)
    # Three-term sums in another order: each entry within 3 eps |A_row| |x| (tolerances.py).
    atol = rounding(factor=3) * 4 * 38 ** 2 * x.abs().max().item()
    assert torch.allclose(laplacian_apply(x, 37), torch.from_numpy(laplacian_dense(37)) @ x, rtol=0, atol=atol)


def test_full_lanczos_finds_every_eigenvalue_of_MA():
    model = schwarz_model(perturb=0.05)
    theta, X = lanczos(model, steps=model.n)
    exact = dense_spectrum(model)
    assert len(theta) == model.n
    # Eigenvalues of M A two ways: rounding relative to |M A| reaches the smallest at kappa(M A) eps; full
    # Lanczos of n steps against a dense eigensolver, factor n.
    kappa = exact[-1] / exact[0]
    assert np.allclose(theta.numpy(), exact, rtol=rounding(kappa, factor=model.n), atol=0)
    A = laplacian_dense(model.n)
    # A-orthonormal to rounding: the re-orthogonalised basis loses kappa(A) eps per step at most, n steps.
    assert np.allclose(X.numpy().T @ A @ X.numpy(), np.eye(model.n), atol=rounding(cond(A), factor=model.n))


def test_short_lanczos_finds_the_extremes():
    model = schwarz_model(n=255, N=8, delta=4)
    theta, _ = lanczos(model, steps=40)
    exact = dense_spectrum(model)
    # Not rounding: 40 Lanczos steps converge the extreme Ritz values (Kaniel-Paige) to about 1e-10 on this
    # spectrum; 1e-6 is what the condition loss needs of them.
    assert abs(theta[0].item() / exact[0] - 1) < 1e-6 and abs(theta[-1].item() / exact[-1] - 1) < 1e-6
    assert condition_number(model) == pytest.approx(exact[-1] / exact[0], rel=1e-6)


def test_condition_loss_gradient_is_the_derivative_of_log_kappa():
    model = schwarz_model(perturb=0.05, seed=1)
    loss, _ = condition_loss(model, seed=0, steps=model.n, extremes=1)
    exact = dense_spectrum(model)
    assert loss.item() == pytest.approx(np.log(exact[-1] / exact[0]), rel=1e-9)
    loss.backward()
    g = torch.Generator().manual_seed(2)
    directions = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in model.parameters()]
    predicted = sum((p.grad * d).sum() for p, d in zip(model.parameters(), directions)).item()
    eps, values = 1e-6, []
    for sign in (1, -1):
        with torch.no_grad():
            for p, d in zip(model.parameters(), directions):
                p.add_(sign * eps * d)
        ev = dense_spectrum(model)
        values.append(np.log(ev[-1] / ev[0]))
        with torch.no_grad():
            for p, d in zip(model.parameters(), directions):
                p.sub_(sign * eps * d)
    assert predicted == pytest.approx((values[0] - values[1]) / (2 * eps), rel=1e-5)


def test_training_the_condition_loss_lowers_kappa(tmp_path):
    cfg = TrainConfig.of(n=255, subdomains=8, overlap=4, rank=40, symmetric=True, init="schwarz", data="probe",
                      dtype="float64", loss="condition", steps=40, lr=0.003, warmup=5, eval_every=20, test_size=8)
    model, summary = train(cfg, out=tmp_path)
    rows = summary["history"]
    assert [r["step"] for r in rows] == [0, 20, 40] and all("condition" in r for r in rows)
    start = dense_spectrum(schwarz_model(n=255, N=8, delta=4))
    kappa0 = rows[0]["condition"]
    assert kappa0 == pytest.approx(start[-1] / start[0], rel=1e-6)
    exact = dense_spectrum(model)
    assert summary["condition"] == pytest.approx(exact[-1] / exact[0], rel=1e-3)
    assert summary["condition"] < 0.8 * kappa0


@pytest.mark.parametrize("changes,message", [
    (dict(loss="kappa"), "unknown loss 'kappa'"),
    (dict(loss="condition"), "--loss condition needs a symmetric DD model"),
    (dict(loss="condition", symmetric=True, model="global"), "--loss condition needs a symmetric DD model"),
])
def test_condition_loss_configuration_errors(changes, message):
    with pytest.raises(ConfigurationError, match=message):
        TrainConfig.of(**changes).validate()


def test_a_condition_run_that_raises_kappa_ends_on_its_best_model(tmp_path):
    cfg = TrainConfig.of(n=255, subdomains=8, overlap=4, rank=40, symmetric=True, init="schwarz", data="probe",
                      dtype="float64", loss="condition", steps=10, lr=0.5, warmup=0, eval_every=5, test_size=8)
    model, summary = train(cfg, out=tmp_path)
    kappas = [r["condition"] for r in summary["history"]]
    assert kappas[-1] > kappas[0]  # the step size is far too large on purpose
    assert summary["best_step"] == 0 and summary["condition"] == kappas[0]
    start = dense_spectrum(schwarz_model(n=255, N=8, delta=4))
    exact = dense_spectrum(model)
    assert exact[-1] / exact[0] == pytest.approx(start[-1] / start[0], rel=1e-9)
