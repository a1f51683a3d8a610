"""The spectrum of the preconditioned operator M A, and a loss on its condition number.

For symmetric positive definite M and A, M A is self-adjoint in the A inner
product <x, y>_A = x^T A y, with real eigenvalues in [lambda_min, lambda_max];
CG preconditioned by M needs O(sqrt(kappa)) iterations, kappa = lambda_max /
lambda_min. Lanczos in that inner product finds the extreme eigenpairs in a
few dozen products with M A (no factorisation, no dense matrix).

The error loss of training, ||(I - M A) u|| for white u, charges an
eigenvalue near zero at most 1 but one near 5 sixteen times, so minimising it
trades the small end of the spectrum for the large one and can raise kappa.
``condition_loss`` charges both ends symmetrically: by Hellmann-Feynman, the
gradient of an eigenvalue is the gradient of the Rayleigh quotient at its
(fixed) eigenvector, so

    log(mean rho(top Ritz vectors)) - log(mean rho(bottom Ritz vectors))

is a differentiable estimate of log kappa, invariant to the scale of M.
Vectors are node-major (n, b) and whole (one domain rank). A is the
model's own problem matrix (``model.problem.A``), applied as a torch CSR
tensor built once per dtype and device.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

__all__ = ["laplacian_apply", "operator_apply", "lanczos", "condition_loss", "condition_number", "fit_probe"]

LANCZOS_STEPS = 40  # enough for the extremes of M A to a few per cent (tests check against dense)
EXTREMES = 4        # Ritz vectors per end of the spectrum in the loss


def laplacian_apply(x, n):
    """A x for node-major ``x`` of shape (n, b), A = h^-2 tridiag(-1, 2, -1), h = 1 / (n + 1)."""
    padded = torch.nn.functional.pad(x, (0, 0, 1, 1))  # the Dirichlet zeros
    return float(n + 1) ** 2 * (2.0 * x - padded[:-2] - padded[2:])


def operator_apply(model):
    """x -> A x for node-major x, with A = model.problem.A as a cached torch CSR tensor."""
    like = next(model.parameters())
    key = (like.dtype, like.device)
    cache = getattr(model, "_a_csr", None)
    if cache is None or cache[0] != key:
        A = model.problem.A.tocsr()
        with warnings.catch_warnings():  # "sparse CSR support is in beta": we use only A @ dense
            warnings.simplefilter("ignore", UserWarning)
            csr = torch.sparse_csr_tensor(torch.from_numpy(A.indptr.astype(np.int64)),
                                          torch.from_numpy(A.indices.astype(np.int64)),
                                          torch.from_numpy(A.data), A.shape, dtype=like.dtype, device=like.device,
                                          check_invariants=False)
        cache = model._a_csr = (key, csr)
    csr = cache[1]
    return lambda x: csr @ x.contiguous()


def _a_normalise(v, apply_a):
    return v / torch.sqrt((v * apply_a(v)).sum())


@torch.no_grad()
def lanczos(model, steps=LANCZOS_STEPS, seed=0):
    """Ritz values (ascending) and A-orthonormal Ritz vectors (n, k) of M A.

    Lanczos with full re-orthogonalisation in the A inner product from a
    seeded random start; k = min(steps, n), fewer if an invariant subspace
    is found first.
    """
    n, k_max = model.n, min(steps, model.n)
    apply_a = operator_apply(model)
    like = next(model.parameters())
    g = torch.Generator().manual_seed(int(seed))
    V = like.new_zeros(n, k_max)   # Lanczos vectors, and A times them (kept: A is cheap,
    AV = like.new_zeros(n, k_max)  # but recomputing it for every re-orthogonalisation is not)
    V[:, :1] = _a_normalise(torch.randn(n, 1, generator=g, dtype=torch.float64).to(like), apply_a)
    AV[:, :1] = apply_a(V[:, :1])
    alpha, beta = [], []
    for j in range(k_max):
        w = model.matvec(AV[:, j:j + 1])
        alpha.append((w * AV[:, j:j + 1]).sum())
        for _ in range(2):  # twice is enough (Kahan): A-orthogonal to rounding
            w = w - V[:, :j + 1] @ (AV[:, :j + 1].T @ w)
        aw = apply_a(w)
        b = torch.sqrt((w * aw).sum().clamp_min(0))
        if j + 1 == k_max or b <= 1e-12 * alpha[0].abs():
            break
        beta.append(b)
        V[:, j + 1:j + 2], AV[:, j + 1:j + 2] = w / b, aw / b
    k = len(alpha)
    T = torch.diag(torch.stack(alpha))
    if k > 1:
        off = torch.stack(beta[:k - 1])
        T = T + torch.diag(off, 1) + torch.diag(off, -1)
    theta, S = torch.linalg.eigh(T)
    return theta, V[:, :k] @ S


def rayleigh_quotients(model, X):
    """rho(x) = (A x)^T M (A x) / x^T A x for each column; differentiable in M's parameters."""
    AX = operator_apply(model)(X)
    return (AX * model.matvec(AX)).sum(0) / (X * AX).sum(0)


def condition_loss(model, seed, steps=LANCZOS_STEPS, extremes=EXTREMES):
    """(loss, Ritz values): a differentiable estimate of log kappa(M A) (see the module docstring)."""
    theta, X = lanczos(model, steps, seed)
    m = max(1, min(extremes, X.shape[1] // 2))
    rho = rayleigh_quotients(model, torch.cat([X[:, :m], X[:, -m:]], 1))
    if not bool((rho[:m] > 0).all()):
        raise ValueError("M A has a non-positive eigenvalue: the model is not positive definite "
                                 "(train the condition loss from --init schwarz with --symmetric)")
    return torch.log(rho[m:].mean()) - torch.log(rho[:m].mean()), theta


def condition_number(model, steps=2 * LANCZOS_STEPS, seed=12345):
    """Estimated kappa(M A) = largest / smallest Ritz value (a lower bound that tightens with steps)."""
    theta, _ = lanczos(model, steps, seed)
    return float(theta[-1] / theta[0])


PROBE_SAMPLES = 4


def fit_probe(model, A, layout=None):
    """Mean over 4 fixed vectors x of ||x - M^-1 A x|| / ||x||: how well M^-1 fits A.

    Stored in checkpoints at training and compared by DDAttentionPC with the
    operator it is given: a model of another matrix gives another value. The
    vectors are counter-based noise (a function of the node only), so the
    probe is the same serially and on any layout. ``A`` is a Problem or a
    scipy matrix (its own rows are used) or a function from own rows of x
    (node-major) to own rows of A x.
    """
    from .problems.samplers import Noise
    rows = model.own_rows
    noise = Noise(0x5EED, 7, 0, PROBE_SAMPLES, model.n)
    x = noise.at(rows).T
    if callable(A):
        ax = A(x)
    else:
        local = A.rows(rows) if hasattr(A, "rows") else A[rows]
        cols = np.unique(local.indices)
        ax = local[:, cols] @ noise.at(cols).T
    p = next(model.parameters())
    with torch.no_grad():
        y = model.matvec(torch.from_numpy(np.ascontiguousarray(ax)).to(dtype=p.dtype, device=p.device))
    y = y.double().cpu().numpy()
    num, den = ((x - y) ** 2).sum(0), (x ** 2).sum(0)
    if layout is not None and layout.domain_size > 1:
        num, den = layout.domain_sum(num), layout.domain_sum(den)
    return float(np.mean(np.sqrt(num / den)))
