"""Sparsity patterns built once; values taken from A's entries for every new A of that pattern.

A level of the hierarchy reads A through matrices whose *pattern* depends
only on A's pattern (its subdomain blocks diag(R_i A R_i^T), the core
interiors' blocks, A Phi_Gamma) and whose *values* are A's entries picked or
summed. :class:`Pattern` is A's pattern; :class:`Gather` records, once, which
entry of A each entry of a derived matrix is, so a new A gives the derived
matrix by one ``take`` (batched: B operators' entries as rows of a (B, nnz)
array, one ``take`` for all). :func:`onto` puts a product whose pattern is
fixed (Phi^T A Phi) on the stored pattern.

    >>> import scipy.sparse as sp
    >>> A = sp.csr_matrix(np.array([[2., -1, 0], [-1, 2, -1], [0, -1, 2]]))
    >>> top_left = Gather.of(lambda M: M[:2][:, :2], A)
    >>> top_left.matrix(3 * A.data).toarray().tolist()
    [[6.0, -3.0], [-3.0, 6.0]]
"""
from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

__all__ = ["Pattern", "Gather", "canonical", "onto"]


def canonical(A):
    """A as CSR with sorted column indices and no duplicates (a copy when A is not already so)."""
    A = sp.csr_matrix(A)
    if not A.has_canonical_format:
        A = A.copy()
        A.sum_duplicates()  # sorts the indices too
    return A


@dataclasses.dataclass(frozen=True, eq=False)
class Pattern:
    """The pattern of a sparse matrix: shape, CSR row pointers and sorted column indices."""

    shape: tuple
    indptr: np.ndarray
    indices: np.ndarray

    @classmethod
    def of(cls, A):
        A = canonical(A)
        return cls(tuple(A.shape), A.indptr.copy(), A.indices.copy())

    @property
    def nnz(self):
        return len(self.indices)

    def same(self, A):
        """Whether A (canonical) has exactly this pattern: the one "same structure?" test of a level."""
        return (tuple(A.shape) == self.shape and np.array_equal(A.indptr, self.indptr)
                and np.array_equal(A.indices, self.indices))

    def matrix(self, data):
        """The CSR matrix of this pattern with entries ``data`` (nnz,)."""
        return sp.csr_matrix((np.asarray(data, dtype=np.float64), self.indices, self.indptr), shape=self.shape)

    def entries(self, A, name="the operator"):
        """A's entries in this pattern's order (nnz,); ValueError when A has another pattern."""
        A = canonical(A)
        if not self.same(A):
            raise ValueError(f"{name} has another sparsity pattern than the one the hierarchy was built on "
                             f"({A.shape[0]} rows, {A.nnz} entries against {self.shape[0]} and {self.nnz}); "
                             "build a new hierarchy for it")
        return A.data


class Gather:
    """A matrix whose entries are entries of A: its pattern and, for each entry, which of A's it is.

    Built by running the builder once on A with its entries replaced by their
    positions (1-based, as floats: exact to 2^53), so any builder that only
    selects, reorders or copies A's entries is recorded without rewriting it.
    """

    def __init__(self, pattern, positions):
        self.pattern, self.positions = pattern, positions

    @classmethod
    def of(cls, builder, A):
        A = canonical(A)
        coded = sp.csr_matrix((np.arange(1, A.nnz + 1, dtype=np.float64), A.indices, A.indptr), shape=A.shape)
        S = canonical(builder(coded))
        if S.nnz and (S.data < 1).any():
            raise ValueError("the builder made entries that are not A's (sums or scalings): use onto")
        return cls(Pattern.of(S), S.data.astype(np.int64) - 1)

    def matrix(self, data):
        """The derived matrix from A's entries ``data`` (nnz_A,) in canonical order."""
        return self.pattern.matrix(np.asarray(data)[self.positions])

    def entries(self, data):
        """The derived matrix's entries from A's: (nnz_A,) -> (nnz,), or (B, nnz_A) -> (B, nnz)."""
        return np.asarray(data)[..., self.positions]


def onto(S, pattern, name="a Galerkin product"):
    """S's entries on ``pattern`` (nnz,), zero where S has none; ValueError when S has an entry outside it."""
    S = canonical(S)
    if pattern.same(S):
        return S.data
    rows = np.repeat(np.arange(S.shape[0]), np.diff(S.indptr))
    width = max(pattern.shape[1], 1)
    mine = np.repeat(np.arange(pattern.shape[0]), np.diff(pattern.indptr)) * width + pattern.indices
    keys = rows * width + S.indices
    where = np.minimum(np.searchsorted(mine, keys), max(len(mine) - 1, 0))
    if len(keys) and (not len(mine) or (mine[where] != keys).any()):
        raise ValueError(f"{name} has entries outside the pattern the hierarchy was built with")
    out = np.zeros(pattern.nnz)
    out[where] = S.data
    return out
