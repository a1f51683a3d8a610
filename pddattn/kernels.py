"""The batched kernels of DD attention, written once: node-major tensors (nodes x batch).

The serial operator (operators.py), the MPI operator (parallel/operator.py,
which only adds communication around them), the factor parametrizations
(factors.py) and the PETSc preconditioner all call these. Node-major layout
makes R_i a gather of contiguous rows and R_i^T a row scatter-add;
subdomains are padded to a common length L so one ``bmm`` handles all of
them, with no Python loop over subdomains in forward or backward.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["subdomain_attention", "SparseMatrix", "sparse_pair", "torch_csr", "coarse_restrict",
           "coarse_interpolate"]


def subdomain_attention(x, index, weight, Q, K):
    """sum_i R_i^T D_i^1/2 Q_i K_i^T D_i^1/2 R_i x, batched over subdomains.

    Parameters
    ----------
    x : Tensor, shape (m, B)
        Node-major input on a range of m nodes (contiguous for speed).
    index : LongTensor, shape (N, L)
        R_i as row indices into x. Padding entries may point at any row:
        D_i^1/2 is zero there, so they read and write nothing.
    weight : Tensor, shape (N, L, 1)
        D_i^1/2, zero at padding.
    Q, K : Tensor, shape (N, L, r)
        Per-subdomain factors (pass them swapped for the transpose).

    Returns
    -------
    Tensor, shape (m, B)
    """
    m, batch = x.shape
    X = x[index]                                                               # R_i
    # D^1/2 Q K^T D^1/2 = (D^1/2 Q)(D^1/2 K)^T: weight whichever is smaller, the
    # factors (N L r numbers each) or the gathered data (N L B, in and out).
    if batch >= Q.shape[-1]:
        Y = torch.bmm(weight * Q, torch.bmm((weight * K).transpose(1, 2), X))  # D^1/2 Q_i K_i^T D^1/2
    else:  # single vectors: Krylov solves, Lanczos
        Y = weight * torch.bmm(Q, torch.bmm(K.transpose(1, 2), weight * X))
    return x.new_zeros(m, batch).index_add(0, index.reshape(-1), Y.reshape(-1, batch))  # R_i^T


class _SparseProduct(torch.autograd.Function):
    """y = S x for a constant sparse S; the backward applies the stored S^T."""

    @staticmethod
    def forward(ctx, x, S, S_T):
        ctx.S_T = S_T
        return S @ x.contiguous()

    @staticmethod
    def backward(ctx, grad):
        return ctx.S_T @ grad.contiguous(), None, None


class SparseMatrix:
    """A constant sparse matrix as torch CSR (autograd, any device) and scipy CSR (CPU inference).

    Without autograd on the CPU (PC applications, evaluations) the product is
    scipy's single-threaded kernel: torch's sparse products run on OpenMP
    threads, which a rank sharing its cores with others oversubscribes
    (measured 0.2 ms against 14-25 ms per Phi^T x at 255^2 under load).
    """

    def __init__(self, rows, cols, vals, shape, dtype, device):
        self._coo, self._torch = (rows, cols, vals, shape, dtype, device), None
        self.scipy = sp.csr_matrix((np.asarray(vals, dtype=np.float64), (rows, cols)), shape=shape)

    @property
    def torch(self):
        """The torch CSR tensor, made on first use (a PC that never trains never pays its coalesce)."""
        if self._torch is None:
            rows, cols, vals, shape, dtype, device = self._coo
            coo = torch.sparse_coo_tensor(np.stack([rows, cols]), vals, shape, dtype=dtype, device=device,
                                          check_invariants=True).coalesce()
            with warnings.catch_warnings():  # "sparse CSR support is in beta": we use only S @ dense
                warnings.simplefilter("ignore", UserWarning)
                self._torch = coo.to_sparse_csr()
        return self._torch

    def __matmul__(self, x):
        if not torch.is_grad_enabled() and x.device.type == "cpu":
            return torch.from_numpy(np.asarray(self.scipy @ x.detach().numpy())).to(x.dtype)
        return _SparseProduct.apply(x, self.torch, self.transpose.torch)


def torch_csr(A, dtype, device):
    """A scipy CSR matrix as a torch CSR tensor of ``dtype`` on ``device`` (for products A @ dense only)."""
    with warnings.catch_warnings():  # "sparse CSR support is in beta": we use only A @ dense
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(A.indptr.astype(np.int64)),
                                       torch.from_numpy(A.indices.astype(np.int64)),
                                       torch.from_numpy(A.data), A.shape, dtype=dtype, device=device,
                                       check_invariants=False)


def sparse_pair(rows, cols, vals, shape, dtype, device):
    """(S, S^T) as SparseMatrix from coordinates; both are applied in O(nnz B)."""
    S = SparseMatrix(rows, cols, vals, shape, dtype, device)
    S_T = SparseMatrix(cols, rows, vals, shape[::-1], dtype, device)
    S.transpose, S_T.transpose = S_T, S
    return S, S_T


def coarse_restrict(x, phi, phi_t):
    """Phi^T x for node-major x (m, B), given (Phi, Phi^T) restricted to those m rows."""
    return phi_t @ x


def coarse_interpolate(z, phi, phi_t):
    """Phi z, node-major (m, B), from (Phi, Phi^T) restricted to m rows."""
    return phi @ z
