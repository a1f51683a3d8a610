"""The coarse space enlarged by generated functions, in the boxes' own sparsity.

With c functions generated per box, Phi = [Phi_q1, G], G's column (j, k) being
D_j^1/2 Z_j[:, k] on box j's nodes and zero elsewhere, and the coarse term is
Phi A_0^-1 Phi^T with A_0 = Phi^T A Phi (family.FamilyDDAttention.parts).
Written densely, G is n x N c and every product with it costs n N c: at 83^2
with 4 functions per box that was 0.17 of the 0.22 s a field's training step
took. Here nothing of size n x N c is formed:

- A G lives on each box's *extended* nodes (the box and A's neighbours of it):
  (N, E, c), summed from A's rows at the box's nodes;
- G^T A G is nonzero only for pairs of boxes whose nodes meet the other's
  extended nodes (neighbours): a c x c block per pair;
- Phi_q1^T A G from Phi_q1's rows at the extended nodes; Phi_q1^T A Phi_q1
  is the exact coarse operator, which does not depend on the weights;
- G^T x and G y are a gather and a scatter at the boxes' nodes.

The structure (:class:`BoxCoarse`) is built once from the decomposition and
A's sparsity pattern, which every operator of the family shares; an
operator's values (:meth:`BoxCoarse.values`) are A's and Phi_q1's entries in
that structure. A is symmetric (its rows are its columns).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["BoxCoarse"]


def _padded_rows(M, pad_col):
    """CSR rows as (rows + 1, K) column and data-position arrays; padding: column ``pad_col``, position
    len(data) (a zero appended to the data); the extra last row is all padding."""
    M = M.tocsr()
    counts = np.diff(M.indptr)
    K = max(int(counts.max()), 1)
    cols = np.full((M.shape[0] + 1, K), pad_col, dtype=np.int64)
    pos = np.full((M.shape[0] + 1, K), len(M.data), dtype=np.int64)
    row = np.repeat(np.arange(M.shape[0]), counts)
    slot = np.arange(len(M.indices)) - M.indptr[row]
    cols[row, slot], pos[row, slot] = M.indices, np.arange(len(M.indices))
    return cols, pos


class BoxCoarse:
    """The enlarged coarse term's structure on boxes ``index`` (N, L; -1 past a box's nodes) for operators
    with the sparsity of ``A`` (scipy, symmetric), and its products (module docstring)."""

    def __init__(self, index, A):
        index = np.asarray(index)
        n = A.shape[0]
        N, L = index.shape
        self.n, self.N, self.L = n, N, L
        self.a_cols, self.a_pos = _padded_rows(A, n)  # row n (the padding's row) is all padding
        nodes = np.where(index >= 0, index, n)
        reach = self.a_cols[nodes]                    # (N, L, K): the nodes A couples to each box node
        ext = [np.unique(r[r < n]) for r in reach.reshape(N, -1)]
        self.E = E = max(len(e) for e in ext)
        self.ext = np.full((N, E), n, dtype=np.int64)
        where = np.full((N, n + 1), E, dtype=np.int64)  # a node's place in box j's extended nodes (E: none)
        for j, e in enumerate(ext):
            self.ext[j, :len(e)], where[j, e] = e, np.arange(len(e))
        self.ext_pos = torch.as_tensor(np.take_along_axis(where[:, None, :], reach.reshape(N, 1, -1), axis=2)
                                       .reshape(N, L * reach.shape[2]))
        self._pairs(nodes, where)
        self.nodes = torch.as_tensor(nodes)                  # padding: row n of A's rows, all zero
        self.gather = torch.as_tensor(np.maximum(index, 0))  # padding: node 0, where W is zero

    def _pairs(self, nodes, where):
        """The box pairs (i, j) where box i's nodes meet box j's extended nodes, and where: i's local slots
        (L: none) against j's extended slots (E: none), padded to the largest meeting."""
        pi, pj, li, ej = [], [], [], []
        for j in range(self.N):
            at = where[j][nodes]                      # (N, L): each box's nodes' places in ext(j)
            for i in np.flatnonzero((at < self.E).any(axis=1)):
                slots = np.flatnonzero(at[i] < self.E)
                pi.append(i), pj.append(j), li.append(slots), ej.append(at[i, slots])
        S = max(len(s) for s in li)
        pad = lambda rows, value: np.array([np.pad(r, (0, S - len(r)), constant_values=value)  # noqa: E731
                                            for r in rows])
        self.pi, self.pj = torch.as_tensor(np.array(pi)), torch.as_tensor(np.array(pj))
        # flat row numbers: one index_select is much faster than indexing by two tensors (same values)
        self.li_flat = (self.pi[:, None] * (self.L + 1) + torch.as_tensor(pad(li, self.L))).reshape(-1)
        self.ej_flat = (self.pj[:, None] * (self.E + 1) + torch.as_tensor(pad(ej, self.E))).reshape(-1)
        self.pair_flat = self.pi * self.N + self.pj

    def values(self, A, phi, top, dtype):
        """An operator's values in the structure: (A's rows, Phi_q1's rows at the extended nodes, and
        Phi_q1^T A Phi_q1 dense); ``A``, ``phi`` scipy with the structure's patterns, ``top`` A_0 of Q1."""
        a = np.append(A.tocsr().data, 0.0)[self.a_pos]
        p_cols, p_pos = _padded_rows(phi, phi.shape[1])
        p_vals = np.append(phi.tocsr().data, 0.0)[p_pos]
        return (torch.as_tensor(a, dtype=dtype), torch.as_tensor(p_cols[self.ext]),
                torch.as_tensor(p_vals[self.ext], dtype=dtype), torch.as_tensor(top.toarray(), dtype=dtype))

    def coarse_operator(self, W, values):
        """A_0 = Phi^T A Phi for Phi = [Phi_q1, G], G from W (N, L, c) = D_j^1/2 Z_j (zero at padding)."""
        a, p_cols, p_vals, top = values
        N, L, c = W.shape
        n0 = top.shape[0]
        rows = a.index_select(0, self.nodes.reshape(-1)).reshape(N, L, -1)
        contrib = rows[..., None] * W[:, :, None, :]                  # (N, L, K, c): A[p, q] W_j[q]
        AG = torch.zeros(N, self.E + 1, c, dtype=W.dtype)
        AG = AG.scatter_add(1, self.ext_pos[..., None].expand(N, -1, c), contrib.reshape(N, -1, c))
        AG = torch.cat([AG[:, :self.E], torch.zeros(N, 1, c, dtype=W.dtype)], dim=1)  # slot E: nothing
        Wp = torch.cat([W, torch.zeros(N, 1, c, dtype=W.dtype)], dim=1)              # slot L: nothing
        P = len(self.pi)
        blocks = torch.einsum("psk,psq->pkq", Wp.reshape(-1, c).index_select(0, self.li_flat).reshape(P, -1, c),
                              AG.reshape(-1, c).index_select(0, self.ej_flat).reshape(P, -1, c))
        GAG = torch.zeros(N * N, c, c, dtype=W.dtype).index_copy(0, self.pair_flat, blocks)
        GAG = GAG.reshape(N, N, c, c).permute(0, 2, 1, 3).reshape(N * c, N * c)
        # Phi_q1^T A G: each extended node's Q1 functions (padding: function n0, dropped) times A G there
        src = p_vals[..., None] * AG[:, :self.E, None, :]             # (N, E, R, c)
        column = torch.arange(N)[:, None, None, None] * c + torch.arange(c)
        target = (p_cols[..., None] * (N * c) + column).reshape(-1)
        B = torch.zeros((n0 + 1) * N * c, dtype=W.dtype).index_add(0, target, src.reshape(-1))
        B = B.reshape(n0 + 1, N * c)[:n0]
        return torch.cat([torch.cat([top, B], dim=1), torch.cat([B.T, GAG], dim=1)])

    def restrict(self, W, x):
        """G^T x for x (n, B): (N c, B)."""
        N, L, c = W.shape
        return torch.einsum("nlc,nlb->ncb", W, x[self.gather]).reshape(N * c, x.shape[1])

    def prolong(self, W, y):
        """G y for y (N c, B): (n, B)."""
        N, L, c = W.shape
        z = torch.einsum("nlc,ncb->nlb", W, y.reshape(N, c, -1)).reshape(N * L, -1)
        return torch.zeros(self.n, z.shape[1], dtype=z.dtype).index_add(0, self.gather.reshape(-1), z)
