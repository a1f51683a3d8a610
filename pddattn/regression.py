"""Reduced-rank regression: the best rank-r linear map fitted to pairs (f, u), with no matrix.

The capacity of a rank-r global model when only data is known. With the
training pairs as columns of F and U (n x S), the least-squares map on the
data's span is W = U F^+, and the best rank-r map in the Frobenius norm of
the fit is W_r = P_r W, with P_r the projector on the r leading left
singular vectors of the fitted values U F^+ F (Izenman 1975; Reinsel and
Velu 1998). In the S x S sample space, with G = F^T F = V Lambda V^T
(eigenvalues below ``rcond`` dropped) and E_r the r leading eigenvectors of
V^T U^T U V,

    W_r f = U C (F^T f),   C = V E_r E_r^T Lambda^-1 V^T,

so every quantity is a Gram matrix: sums over nodes, which a distributed
caller reduces with ``allsum`` (each rank holds its own nodes' rows).
"""
from __future__ import annotations

import numpy as np

__all__ = ["data_gram", "map_norm", "reduced_rank_map", "reduced_rank_error"]

RCOND = 1e-12  # relative to the largest eigenvalue of F^T F (singular values squared)


def _identity(x):
    return x


def data_gram(F, U, allsum=_identity):
    """(V, Lambda, M = V^T U^T U V, U^T U) of node-major pairs F, U (n_local, S)."""
    G = allsum(F.T @ F)
    Guu = allsum(U.T @ U)
    lam, V = np.linalg.eigh(G)
    keep = lam > RCOND * max(lam[-1], np.finfo(float).tiny)
    V, lam = V[:, keep], lam[keep]
    return V, lam, V.T @ Guu @ V, Guu


def map_norm(gram):
    """||U F^+||_2: the largest gain of the map the pairs define on their span."""
    V, lam, M, _ = gram
    if not len(lam):
        return 0.0
    s = 1.0 / np.sqrt(lam)
    return float(np.sqrt(max(np.linalg.eigvalsh(s[:, None] * M * s[None, :])[-1], 0.0)))


def reduced_rank_map(gram, r):
    """The S x S matrix C of the rank-r map W_r f = U C F^T f."""
    V, lam, M, _ = gram
    mu, E = np.linalg.eigh(M)
    Er = E[:, -min(r, len(mu)):] if r > 0 else E[:, :0]
    return V @ Er @ (Er.T / lam[None, :]) @ V.T


def reduced_rank_error(F, U, F_test, U_test, r, allsum=_identity, chunk=256):
    """Mean relative L2 error on the test pairs of the best rank-r map fitted to the training pairs.

    Parameters
    ----------
    F, U : ndarray (n_local, S)
        Training pairs, node-major, this rank's nodes.
    F_test, U_test : ndarray (n_local, T)
        Test pairs on the same nodes.
    r : int
    allsum : callable
        Sum of an array over the ranks holding the other nodes (identity serially).
    """
    C = reduced_rank_map(data_gram(F, U, allsum), r)
    total = 0.0
    for lo in range(0, F_test.shape[1], chunk):
        Ft, Ut = F_test[:, lo:lo + chunk], U_test[:, lo:lo + chunk]
        Y = U @ (C @ allsum(F.T @ Ft))
        num, den = allsum(np.stack([((Y - Ut) ** 2).sum(0), (Ut ** 2).sum(0)]))
        total += float(np.sqrt(num / den).sum())
    return total / F_test.shape[1]
