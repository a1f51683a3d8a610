"""Overlapping domain decomposition of the n-node grid: R_i, D_i and Phi.

N non-overlapping *cores* of near-equal size (sizes differ by at most one;
the first n mod N cores get the extra node, as PETSc's default layout
does), each extended by delta nodes on both sides and clipped at the
boundary: subdomain Omega_i = [start_i, stop_i), n_i nodes. R_i restricts to
Omega_i; the partition of unity D_i satisfies sum_i R_i^T D_i R_i = I.

Coarse space: n_0 = N - 1 coarse nodes, the first node of cores 2..N. Column
j of Phi is the hat that is 1 at coarse node j and falls linearly to 0 at the
neighbouring coarse nodes or at the Dirichlet boundary (virtual nodes -1 and
n). Every row of Phi has at most two nonzeros; we store exactly those, as
(index, weight) pairs, and never form Phi densely except for tests.

Pure numpy, no MPI: every rank builds the same object from the same four
numbers, which is also what checkpoints store.
"""
from __future__ import annotations

import numpy as np

from .problem import check_size

__all__ = ["Decomposition", "POU_KINDS"]

POU_KINDS = ("count", "smooth")


def _check_int(name, value, minimum, allowed):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    return int(value)


class Decomposition:
    """N overlapping subdomains of an n-node grid with overlap delta.

    Parameters
    ----------
    n : int
        Number of interior grid nodes, n >= 1.
    N : int
        Number of subdomains, 1 <= N <= n.
    delta : int
        Overlap: nodes added on each side of every core, 0 <= delta and, for
        N >= 2, small enough that no subdomain covers the whole domain.
    pou : {'count', 'smooth'}
        Partition of unity: 1 / multiplicity, or linear ramps across the
        overlaps (normalised so that they sum to one).

    Examples
    --------
    >>> d = Decomposition(10, 3, 1)
    >>> d.core_bounds.tolist(), d.starts.tolist(), d.stops.tolist()
    ([0, 4, 7, 10], [0, 3, 6], [5, 8, 10])
    """

    def __init__(self, n, N, delta, pou="count"):
        self.n = check_size(n)
        self.N = _check_int("N (number of subdomains)", N, 1, f"in 1..n={self.n}")
        if self.N > self.n:
            raise ValueError(f"N={self.N} subdomains is more than the n={self.n} nodes; "
                             f"N must be in 1..{self.n}")
        self.delta = _check_int("delta (overlap)", delta, 0, ">= 0")
        if pou not in POU_KINDS:
            raise ValueError(f"unknown partition of unity {pou!r}; choose one of {POU_KINDS}")
        self.pou = pou
        sizes = np.full(self.N, self.n // self.N, dtype=np.int64)
        sizes[: self.n % self.N] += 1
        self.core_bounds = np.concatenate([[0], np.cumsum(sizes)])
        limit = self.n - int(max(sizes[0], sizes[-1])) - 1
        if self.N > 1 and self.delta > limit:
            raise ValueError(
                f"overlap delta={self.delta} is too large for n={self.n}, N={self.N}: a "
                f"subdomain would cover the whole domain; use 0 <= delta <= {limit}")
        self.starts = np.maximum(self.core_bounds[:-1] - self.delta, 0)
        self.stops = np.minimum(self.core_bounds[1:] + self.delta, self.n)

    # ---------------------------------------------------------------- sizes
    @property
    def core_sizes(self):
        return np.diff(self.core_bounds)

    @property
    def sizes(self):
        """n_i, the number of nodes of each subdomain."""
        return self.stops - self.starts

    @property
    def max_size(self):
        """L, the common padded subdomain length."""
        return int(self.sizes.max())

    @property
    def coarse_size(self):
        """n_0 = N - 1."""
        return self.N - 1

    @property
    def coarse_nodes(self):
        """Grid indices of the coarse nodes: the first node of cores 2..N."""
        return self.core_bounds[1:-1]

    def to_dict(self):
        return {"n": self.n, "N": self.N, "delta": self.delta, "pou": self.pou}

    @classmethod
    def from_dict(cls, d):
        return cls(d["n"], d["N"], d["delta"], d["pou"])

    def __eq__(self, other):
        return isinstance(other, Decomposition) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return "Decomposition(n={n}, N={N}, delta={delta}, pou={pou!r})".format(**self.to_dict())

    # ------------------------------------------------------------ R_i and D_i
    def restriction(self, i):
        """Grid indices of subdomain i (the rows of R_i pick these nodes)."""
        return np.arange(self.starts[i], self.stops[i])

    def padded_indices(self, first=0, last=None, offset=0, pad=None):
        """R_i index sets of subdomains first..last-1 as an (N', L) array.

        Indices are shifted by -offset; padding entries hold ``pad`` (default:
        one past the largest index, a zero slot the kernels append).
        """
        last = self.N if last is None else last
        pad = self.stops[last - 1] - offset if pad is None else pad
        cols = np.arange(self.max_size)
        idx = self.starts[first:last, None] + cols[None, :]
        return np.where(cols[None, :] < self.sizes[first:last, None], idx - offset, pad)

    def _ramps(self):
        """Unnormalised smooth weights: 1 on the core, linear down across each overlap."""
        w = np.zeros((self.N, self.max_size))
        width = 2.0 * self.delta + 1.0
        for i in range(self.N):
            m = np.arange(self.sizes[i], dtype=np.float64)
            up = (m + 1) / width if self.starts[i] > 0 else np.inf
            down = (self.sizes[i] - m) / width if self.stops[i] < self.n else np.inf
            w[i, : self.sizes[i]] = np.minimum(1.0, np.minimum(up, down))
        return w

    def pou_weights(self):
        """D_i diagonals as an (N, L) array, zero at padding; sum_i R_i^T D_i R_i = I."""
        valid = np.arange(self.max_size)[None, :] < self.sizes[:, None]
        w = self._ramps() if self.pou == "smooth" else valid.astype(np.float64)
        idx = self.padded_indices(pad=self.n)
        total = np.zeros(self.n + 1)
        np.add.at(total, idx.ravel(), w.ravel())
        total[self.n] = 1.0  # the padding slot
        return np.where(valid, w / total[idx], 0.0)

    # ------------------------------------------------------------------- Phi
    def coarse_basis(self):
        """The two nonzeros of every row of Phi.

        Returns
        -------
        index : ndarray of int, shape (n, 2)
            Coarse indices of the left and right hat touching each node;
            n_0 (a zero slot) where there is none.
        weight : ndarray, shape (n, 2)
            Phi[j, index[j, c]] = weight[j, c].
        """
        # Breakpoints: the boundary (virtual nodes -1 and n) and the coarse nodes.
        points = np.concatenate([[-1], self.coarse_nodes, [self.n]])
        j = np.arange(self.n)
        seg = np.searchsorted(points, j, side="right") - 1  # points[seg] <= j < points[seg+1]
        left, right = points[seg], points[seg + 1]
        t = (j - left) / (right - left)
        index = np.stack([seg - 1, seg], axis=1)  # coarse node seg is points[seg + 1]
        weight = np.stack([1.0 - t, t], axis=1)
        missing = (index < 0) | (index >= self.coarse_size)
        return np.where(missing, self.coarse_size, index), np.where(missing, 0.0, weight)

    def coarse_basis_dense(self):
        """Phi as a dense (n, n_0) array (tests and small diagnostics only)."""
        index, weight = self.coarse_basis()
        phi = np.zeros((self.n, self.coarse_size + 1))
        np.add.at(phi, (np.arange(self.n)[:, None], index), weight)
        return phi[:, : self.coarse_size]

    def interior_blocks(self):
        """[start, stop) of the open intervals between consecutive coarse nodes.

        In 1D, A^-1 = Phi (Phi^T A Phi)^-1 Phi^T + sum_j A_j^-1 over these
        blocks, because Phi is the discrete harmonic extension.
        """
        points = np.concatenate([[-1], self.coarse_nodes, [self.n]])
        return [(int(a) + 1, int(b)) for a, b in zip(points[:-1], points[1:]) if b > a + 1]
