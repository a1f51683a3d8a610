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
Vectors are node-major (rows, b) in the model's layout: all n rows serially,
a rank's own rows when the model is distributed. Serially A is the model's
problem matrix as a torch CSR tensor; distributed, each rank's rows of it
with one ghost plan (parallel/rows.py), and every inner product is summed
over the domain group. The Lanczos start is counter-based noise at the own
rows, so the distributed iteration is the serial one to rounding.

Distributed, the loss is a function of global sums rho_j = N_j / D_j whose
numerators N_j = sum over ranks of a rank's rows' (A x_j)^T M (A x_j) carry
the gradient. Each rank backpropagates sum_j (d loss / d N_j) N_j^(rank):
summed over the ranks (the replicated factors' gradients by the usual
Allreduce), that is the gradient of the loss itself.
"""
from __future__ import annotations

import numpy as np
import torch

from .kernels import torch_csr
from .problems.samplers import Noise

__all__ = ["laplacian_apply", "operator_apply", "lanczos", "condition_loss", "condition_number", "fit_probe"]

LANCZOS_STEPS = 40  # enough for the extremes of M A to a few per cent (tests check against dense)
EXTREMES = 4        # Ritz vectors per end of the spectrum in the loss
LANCZOS_STREAM = 0x1A2C  # the noise stream of Lanczos starts (problems/samplers.Noise)


def laplacian_apply(x, n):
    """A x for node-major ``x`` of shape (n, b), A = h^-2 tridiag(-1, 2, -1), h = 1 / (n + 1)."""
    padded = torch.nn.functional.pad(x, (0, 0, 1, 1))  # the Dirichlet zeros
    return float(n + 1) ** 2 * (2.0 * x - padded[:-2] - padded[2:])


def operator_apply(model):
    """x -> A x for node-major x in the model's layout (module docstring)."""
    if _domain_size(model) > 1:
        return model.operator_rows()
    like = next(model.parameters())
    key = (like.dtype, like.device)
    cache = getattr(model, "_a_csr", None)
    if cache is None or cache[0] != key:
        cache = model._a_csr = (key, torch_csr(model.problem.A.tocsr(), like.dtype, like.device))
    csr = cache[1]
    return lambda x: csr @ x.contiguous()


def _domain_size(model):
    layout = getattr(model, "layout", None)
    return 1 if layout is None else layout.domain_size


def _total(model):
    """A sum over rows made global: the identity serially, summed over the domain group when distributed
    (values only, no autograd)."""
    if _domain_size(model) == 1:
        return lambda t: t
    layout = model.layout
    return lambda t: layout.domain_sum(t.detach())


@torch.no_grad()
def lanczos(model, steps=LANCZOS_STEPS, seed=0):
    """Ritz values (ascending) and A-orthonormal Ritz vectors (rows, k) of M A.

    Lanczos with full re-orthogonalisation in the A inner product from a
    seeded counter-based random start; k = min(steps, n), fewer if an
    invariant subspace is found first. Distributed: the own rows of the
    Ritz vectors, the Ritz values on every rank alike.
    """
    n, k_max = model.n, min(steps, model.n)
    apply_a, total = operator_apply(model), _total(model)
    like = next(model.parameters())
    rows = model.own_rows
    V = like.new_zeros(len(rows), k_max)   # Lanczos vectors, and A times them (kept: A is cheap,
    AV = like.new_zeros(len(rows), k_max)  # but recomputing it for every re-orthogonalisation is not)
    v = torch.from_numpy(Noise(seed, LANCZOS_STREAM, 0, 1, n).at(rows).T).to(like)
    av = apply_a(v)
    norm = torch.sqrt(total(v.T @ av))
    V[:, :1], AV[:, :1] = v / norm, av / norm
    alpha, beta = [], []
    for j in range(k_max):
        w = model.matvec(AV[:, j:j + 1])
        alpha.append(total(w.T @ AV[:, j:j + 1])[0, 0])
        for _ in range(2):  # twice is enough (Kahan): A-orthogonal to rounding
            w = w - V[:, :j + 1] @ total(AV[:, :j + 1].T @ w)
        aw = apply_a(w)
        b = torch.sqrt(total(w.T @ aw).clamp_min(0))[0, 0]
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


def condition_loss(model, seed, steps=LANCZOS_STEPS, extremes=EXTREMES):
    """(loss, Ritz values): a differentiable estimate of log kappa(M A) (see the module docstring).

    Distributed, the loss's value is this rank's 1/P share of the estimate (the domain group's values
    sum to it, as for the error loss) and its gradient this rank's part of the estimate's gradient.
    """
    theta, X = lanczos(model, steps, seed)
    m = max(1, min(extremes, X.shape[1] // 2))
    X = torch.cat([X[:, :m], X[:, -m:]], 1)
    total = _total(model)
    AX = operator_apply(model)(X)
    numerators = (AX * model.matvec(AX)).sum(0)  # (A x)^T M (A x) on this rank's rows: differentiable
    N = total(numerators.detach())
    rho = N / total((X * AX).sum(0))  # Rayleigh quotients of M A, global
    if not bool((rho[:m] > 0).all()):
        raise ValueError("M A has a non-positive eigenvalue: the model is not positive definite "
                                 "(train the condition loss from --init schwarz with --symmetric)")
    estimate = torch.log(rho[m:].mean()) - torch.log(rho[:m].mean())
    # d estimate / d rho_j = +-1 / (sum of rho over j's end); d rho_j / d N_j = rho_j / N_j
    slope = torch.cat([-1 / rho[:m].sum().expand(m), 1 / rho[m:].sum().expand(m)]) * rho / N
    part = (slope * numerators).sum()
    return part - part.detach() + estimate / _domain_size(model), theta


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
