"""Two-level additive Schwarz from A: the factors that initialise DD attention, and natural scales.

    A_i = R_i A R_i^T   (dense, small)      Q_i Q_i^T = best rank-r part of A_i^-1
    A_0 = Phi^T A Phi   (sparse product)    Q_0 Q_0^T = best rank-r0 part of A_0^-1

With full ranks DD attention is then two-level additive Schwarz with PoU
weights, sum_i R_i^T D_i^1/2 A_i^-1 D_i^1/2 R_i + Phi A_0^-1 Phi^T.

Local blocks come from one batched dense eigendecomposition over all
subdomains (padding rows carry a diagonal above every real eigenvalue, so
padding modes sort last and are dropped). Constant-coefficient 1D intervals
have a closed-form fast path (a test shows it equal to the general one).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh

from .errors import CollectiveError

__all__ = ["local_blocks", "local_inverse_factors", "coarse_matrix", "coarse_inverse_factor",
           "schwarz_factors", "natural_scale", "galerkin", "local_top_inverse_eigenvalue", "coarse_top_inverse_eigenvalue"]

_BATCH_BYTES = 1 << 28  # dense blocks per eigendecomposition batch


def natural_scale(top_inverse_eigenvalue, size):
    """RMS entry of the leading column of Q when Q Q^T is an inverse with that top eigenvalue.

    The scale-aware optimiser and the random init measure every factor in
    this unit, so one learning rate suits blocks of very different size.
    """
    if not 0 < top_inverse_eigenvalue < np.inf:  # a block of A with an eigenvalue <= 0 (max over ranks: alike)
        raise CollectiveError("the matrix is not positive definite (a subdomain or coarse block has an eigenvalue "
                              "<= 0); pddattn needs a symmetric positive definite operator")
    return float(np.sqrt(top_inverse_eigenvalue / max(size, 1)))


def _closed_form(problem, d):
    return problem.constant and problem.dim == 1 and d.contiguous


def local_blocks(problem, d, subdomains):
    """Dense (len(subdomains), L, L) blocks R_i A R_i^T from the rows of A they need.

    The padding diagonal lies above every eigenvalue of its block (Gershgorin
    on the block), a value of the block alone, as the factors must be.
    """
    L = d.max_size
    out = np.zeros((len(subdomains), L, L))
    for row, i in enumerate(subdomains):
        s = d.subdomains[i]
        block = problem.block(s).toarray()
        out[row, : len(s), : len(s)] = block
        out[row, range(len(s), L), range(len(s), L)] = 2.0 * float(np.abs(block).sum(axis=1).max()) + 1.0
    return out


def _batches(d, count):
    step = max(1, _BATCH_BYTES // (8 * d.max_size**2))
    return [(a, min(a + step, count)) for a in range(0, count, step)]


def _dirichlet_inverse_factor(size, r, h):
    """Q Q^T = best rank-r part of (h^-2 tridiag(-1, 2, -1)_size)^-1, by its sine eigenpairs."""
    k = np.arange(1, min(r, size) + 1)
    m = np.arange(1, size + 1)
    v = np.sqrt(2.0 / (size + 1)) * np.sin(np.pi * np.outer(m, k) / (size + 1))
    mu = 4.0 / h**2 * np.sin(k * np.pi / (2 * (size + 1))) ** 2
    return v / np.sqrt(mu)


def local_inverse_factors(problem, d, r, closed_form=True, subdomains=None):
    """(N, L, r) with Q_i Q_i^T the best rank-r part of A_i^-1; zero padding rows and columns.

    ``subdomains`` (indices): only those blocks, in that order, shape (len, L, r). A
    rank of the MPI operator computes its own blocks only, so its set-up work and
    memory follow its share of the subdomains, not N.
    """
    held = np.arange(d.N) if subdomains is None else np.asarray(subdomains, dtype=np.int64)
    sizes = d.sizes[held][:, None]
    Q = np.zeros((len(held), d.max_size, r))
    if closed_form and _closed_form(problem, d):
        h, cache = 1.0 / (problem.n + 1), {}
        for row, size in enumerate(sizes[:, 0]):
            f = cache.setdefault(int(size), _dirichlet_inverse_factor(int(size), r, h))
            Q[row, : f.shape[0], : f.shape[1]] = f
        return Q
    for a, b in _batches(d, len(held)):
        mu, V = np.linalg.eigh(local_blocks(problem, d, held[a:b]))
        k = min(r, d.max_size)
        Q[a:b, :, :k] = V[:, :, :k] / np.sqrt(mu[:, None, :k])
    Q *= (np.arange(d.max_size)[None, :, None] < sizes[:, :, None])   # padding rows
    Q *= (np.arange(r)[None, None, :] < sizes[:, :, None])            # modes past n_i: padding modes
    return Q


def coarse_matrix(problem, d):
    """A_0 = Phi^T A Phi as a dense array (n_0 x n_0); a rank's share holds it summed."""
    return d.coarse_operator(problem).toarray()


def galerkin(problem, phi, rows_per_block=1 << 16):
    """Phi^T A Phi (sparse) from blocks of A's rows: never more than a block of A at once."""
    phi = sp.csr_matrix(phi)
    out = sp.csr_matrix((phi.shape[1], phi.shape[1]))
    for lo in range(0, problem.n, rows_per_block):
        rows = np.arange(lo, min(lo + rows_per_block, problem.n))
        out = out + phi[rows].T @ (problem.rows(rows) @ phi)
    return out.tocsr()


def coarse_inverse_factor(problem, d, r0):
    """(n_0, r0) with Q_0 Q_0^T the best rank-r0 part of A_0^-1 (zero columns past n_0)."""
    Q0 = np.zeros((d.coarse_size, r0))
    if d.coarse_size and r0:
        mu, V = np.linalg.eigh(coarse_matrix(problem, d))
        k = min(r0, len(mu))
        Q0[:, :k] = V[:, :k] / np.sqrt(mu[:k])
    return Q0


def schwarz_factors(problem, d, r, r0, subdomains=None):
    """(Q, Q0): DD attention with K = Q is two-level additive Schwarz truncated to ranks r, r0.

    Q holds the blocks of ``subdomains`` only, when given (see local_inverse_factors).
    """
    return local_inverse_factors(problem, d, r, subdomains=subdomains), coarse_inverse_factor(problem, d, r0)


def data_gain(problem):
    """||A^-1||_2 estimated from the user's pairs, for a problem without a matrix (family 'data')."""
    if problem.pairs is None:
        raise ValueError("a problem without a matrix needs its pairs (--data FILE) to set the factors' scale")
    return problem.pairs.gain()


def global_top_inverse_eigenvalue(problem):
    """1 / lambda_min(A); without a matrix, the data's estimate of it."""
    if not problem.has_operator:
        return data_gain(problem)
    return 1.0 / problem.smallest_eigenpairs(1)[0][0]


def local_top_inverse_eigenvalue(problem, d, subdomains=None):
    """max_i 1 / lambda_min(A_i) over ``subdomains`` (default all): the largest local inverse eigenvalue.

    Each block's value depends on that block alone (a fixed Lanczos start), so
    a rank computes its own subdomains and a max over ranks equals the serial one.
    Without a matrix, the data's ||A^-1|| scaled as a second-order elliptic
    operator's, lambda_min(A_i) / lambda_min(A) ~ (n / n_i)^(2 / dim): it only
    sets the factors' initial size and learning rates.
    """
    if not problem.has_operator:
        return data_gain(problem) * (d.max_size / problem.n) ** (2.0 / problem.dim)
    if _closed_form(problem, d):
        h, size = 1.0 / (problem.n + 1), d.max_size
        return h**2 / (4.0 * np.sin(np.pi / (2 * (size + 1))) ** 2)
    top, seen = 0.0, {}
    for i in range(d.N) if subdomains is None else subdomains:
        s = d.subdomains[i]
        block = problem.block(s)
        key = (len(s), block.indptr.tobytes(), block.indices.tobytes(), block.data.tobytes())
        if key not in seen:  # equal blocks (a constant coefficient's interior boxes) once
            seen[key] = _smallest_eigenvalue(block)
        top = max(top, 1.0 / seen[key] if seen[key] > 0 else np.inf)  # inf: refused by natural_scale
    return top


def _smallest_eigenvalue(block):
    """lambda_min of a sparse SPD block: dense for small ones, else shift-invert Lanczos at 0."""
    if block.shape[0] <= 64:
        return np.linalg.eigvalsh(block.toarray())[0]
    # A fixed start vector: ARPACK's own would depend on its earlier calls.
    return eigsh(block.tocsc(), k=1, sigma=0, which="LM", return_eigenvectors=False, tol=1e-6,
                 v0=np.ones(block.shape[0]))[0]


def coarse_top_inverse_eigenvalue(problem, d):
    """1 / lambda_min(A_0); without a matrix, the data's ||A^-1|| n_0 / n (Phi interpolates: ||Phi v||^2 ~ n / n_0)."""
    if not d.coarse_size:
        return 1.0
    if not problem.has_operator:
        return data_gain(problem) * d.coarse_size / problem.n
    return 1.0 / np.linalg.eigvalsh(coarse_matrix(problem, d))[0]
