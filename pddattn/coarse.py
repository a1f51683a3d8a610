"""Coarse bases Phi (sparse n x n_0) for a decomposition.

    hat        1D intervals: n_0 = N - 1 hats at the first nodes of cores 2..N, linear
               in between, 0 at the Dirichlet boundary. Equal to ``harmonic`` for laplace1d.
    q1         2D boxes: bilinear, Phi = Phi_y (x) Phi_x of the per-axis hats (node j nx + i).
    harmonic   algebraic, GDSW-type (Dohrmann, Klawonn, Widlund): the interface Gamma is the
               set of nodes coupled through A to a core of lower index than their own; its
               nodes are grouped by their own core and the lower-index cores their
               A-neighbourhood touches (and split into connected pieces): 1D single nodes,
               2D boxes edges and vertices. Phi is the
               indicator of each group on Gamma, extended A-harmonically into the core
               interiors, Phi_I = -A_II^-1 A_I,Gamma Phi_Gamma (one local solve per core).
               In 1D this is the discrete harmonic extension for any coefficient, so
               A^-1 = Phi (Phi^T A Phi)^-1 Phi^T + sum_j A_{I_j}^-1 exactly.
    nicolaides any decomposition: n_0 = N, column i is R_i^T D_i 1, the partition of unity's
               share of the constant on subdomain i (Nicolaides 1987). A fixed number of
               functions per subdomain: the coarse levels of the multilevel hierarchy
               use it so that they shrink by the subdomain size at every level.
    none       n_0 = 0 (one-level).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .exact import sparse_factor
from .patterns import Gather, Pattern, canonical
from .problems.families import block_diagonal, principal_block

__all__ = ["coarse_interface", "harmonic_anchors", "COARSE_SPACES", "hat_basis", "q1_basis", "interior_blocks",
           "HarmonicPlan"]

COARSE_SPACES = ("hat", "q1", "harmonic", "nicolaides", "none")


def hat_basis(n, bounds, nodes=None):
    """Hats at bounds[1:-1] on n nodes, 0 at the virtual nodes -1 and n; CSR (n, len(bounds) - 2).

    ``nodes``: only those rows, in that order (a rank's own rows), CSR (len(nodes), n_0).
    """
    points = np.concatenate([[-1], bounds[1:-1], [n]])
    n0 = len(points) - 2
    j = np.arange(n) if nodes is None else np.asarray(nodes, dtype=np.int64)
    seg = np.searchsorted(points, j, side="right") - 1  # points[seg] <= j < points[seg + 1]
    t = (j - points[seg]) / (points[seg + 1] - points[seg])
    cols = np.stack([seg - 1, seg], axis=1)              # coarse node c sits at points[c + 1]
    vals = np.stack([1.0 - t, t], axis=1)
    keep = (cols >= 0) & (cols < n0) & (vals != 0)
    rows = np.repeat(np.arange(len(j))[:, None], 2, axis=1)
    return sp.csr_matrix((vals[keep], (rows[keep], cols[keep])), shape=(len(j), n0))


def q1_basis(grid, box_bounds, nodes=None):
    """Bilinear Phi = Phi_y (x) Phi_x for an nx x ny grid with x fastest, CSR (n, n_0).

    ``nodes``: only those rows, in that order (a rank's own rows): the
    row-wise Kronecker product of the per-axis hats at each node's x and y.
    """
    (nx, ny), (bx, by) = grid, box_bounds
    if nodes is None:  # every row: the Kronecker product itself (the same products, faster)
        return sp.kron(hat_basis(ny, by), hat_basis(nx, bx), format="csr")
    j = np.asarray(nodes, dtype=np.int64)
    hx, hy = hat_basis(nx, bx, j % nx), hat_basis(ny, by, j // nx)
    nx0, per_x, per_y = len(bx) - 2, np.diff(hx.indptr), np.diff(hy.indptr)
    rows, cols, vals = [], [], []
    for a in range(int(per_y.max(initial=0))):
        for b in range(int(per_x.max(initial=0))):
            r = np.flatnonzero((per_y > a) & (per_x > b))
            ey, ex = hy.indptr[r] + a, hx.indptr[r] + b
            rows.append(r)
            cols.append(hy.indices[ey] * nx0 + hx.indices[ex])
            vals.append(hy.data[ey] * hx.data[ex])
    shape = (len(j), nx0 * (len(by) - 2))
    if not rows:
        return sp.csr_matrix(shape)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape)


def _connected_pieces(graph):
    """(count, label) of the connected components of a symmetric sparse graph, labels 0..count-1.

    Minimum-label propagation with pointer jumping, in numpy: the pieces are
    interface edges and faces, a few dozen nodes across, so a handful of
    sweeps settle them, and scipy.sparse.csgraph (65 ms to import, the PC's
    only use of it) is not loaded into every setUp.
    """
    graph = sp.csr_matrix(graph)
    m = graph.shape[0]
    label = np.arange(m)
    rows = np.flatnonzero(np.diff(graph.indptr))
    while True:
        new = label.copy()
        if len(rows):
            new[rows] = np.minimum(new[rows], np.minimum.reduceat(label[graph.indices], graph.indptr[rows]))
        new = new[new]                           # a node's label is a node with a label no larger
        if np.array_equal(new, label):
            break
        label = new
    roots, label = np.unique(label, return_inverse=True)
    return len(roots), label.ravel()


def _interface_groups(A, core_of):
    """Gamma's groups: (list of node arrays) by touched core set, split into connected pieces.

    A node's key is its own core and the lower-index cores its row of A touches;
    nodes with equal keys and coupled through A form one group. All at once: the
    keys as rows of a padded array (np.unique), the pieces as the connected
    components of A restricted to Gamma with only same-key edges kept.
    """
    A = sp.csr_matrix(A)
    n = A.shape[0]
    rows = np.repeat(np.arange(n), np.diff(A.indptr))
    neighbour_core = core_of[A.indices]
    lowest = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(lowest, rows, neighbour_core)
    gamma = np.flatnonzero(lowest < core_of)
    if not len(gamma):
        return gamma, []
    # Touched lower cores of each Gamma node, as a sparse pattern, plus its own core.
    lower = neighbour_core < core_of[rows]
    on_gamma = np.zeros(n, dtype=bool)
    on_gamma[gamma] = True
    pick = lower & on_gamma[rows]
    position = np.full(n, -1)
    position[gamma] = np.arange(len(gamma))
    touched = sp.csr_matrix((np.ones(int(pick.sum()) + len(gamma)),
                             (np.concatenate([position[rows[pick]], np.arange(len(gamma))]),
                              np.concatenate([neighbour_core[pick], core_of[gamma]]))),
                            shape=(len(gamma), int(core_of.max()) + 1))
    touched.sum_duplicates()
    touched.sort_indices()
    width = int(np.diff(touched.indptr).max())
    keys = np.full((len(gamma), width), -1, dtype=np.int64)
    slot = np.arange(touched.nnz) - np.repeat(touched.indptr[:-1], np.diff(touched.indptr))
    keys[np.repeat(np.arange(len(gamma)), np.diff(touched.indptr)), slot] = touched.indices
    _, key = np.unique(keys, axis=0, return_inverse=True)
    key = key.ravel()
    block = principal_block(A[gamma], gamma).tocoo()
    same = key[block.row] == key[block.col]
    graph = sp.csr_matrix((np.ones(int(same.sum())), (block.row[same], block.col[same])), shape=(len(gamma),) * 2)
    count, label = _connected_pieces(graph)
    order = np.argsort(label, kind="stable")
    groups = np.split(gamma[order], np.cumsum(np.bincount(label, minlength=count))[:-1])
    groups.sort(key=lambda g: g[0])
    return gamma, groups


class HarmonicPlan:
    """The harmonic basis of one pattern of A and one set of cores: structure once, Phi for any values.

    ``group_of`` (each node's interface group, -1 off Gamma) and ``n0`` are
    given where the groups are numbered across ranks (parallel/setup.py);
    else they come from A's pattern and the cores.

    Structure (from A's pattern alone): Gamma and its groups, the core
    interiors that Gamma couples to, the right-hand side's layout and Phi's
    pattern. Values: Phi_I = -A_II^-1 A_I,Gamma Phi_Gamma, all cores in one
    sparse factorization of diag(A_II) (:meth:`phi`). Core c's coarse columns
    go to slots 0..k_c - 1 of one dense right-hand side of max_c k_c columns,
    so one solve serves every core (the blocks do not couple); Phi's pattern
    is every slot of every interior row of its core that the slot's right-hand
    side reaches through the interiors' graph.
    """

    def __init__(self, A, cores, group_of=None, n0=None):
        A = canonical(A)
        self.A_pattern = Pattern.of(A)
        if group_of is None:
            group_of, n0 = self._groups(A, cores)
        self.n0, self.gamma = int(n0), np.flatnonzero(group_of >= 0)
        self._gamma_cols = group_of[self.gamma]
        self._interiors(A, cores, group_of)

    @staticmethod
    def _groups(A, cores):
        """(group of every node, -1 off Gamma; the number of groups) from A's pattern and the cores."""
        n = A.shape[0]
        core_of = np.empty(n, dtype=np.int64)
        for c, nodes in enumerate(cores):
            core_of[nodes] = c
        _, groups = _interface_groups(A, core_of)
        group_of = np.full(n, -1)
        for g, nodes in enumerate(groups):
            group_of[nodes] = g
        return group_of, len(groups)

    def _interiors(self, A, cores, group_of):
        """The right-hand side's entries (A's entries (p, c), p interior, c on Gamma), slots and Phi's pattern."""
        n, n0 = A.shape[0], max(self.n0, 1)
        label = np.repeat(np.arange(len(cores)), [len(c) for c in cores]) if len(cores) else np.zeros(0, np.int64)
        nodes = np.concatenate(cores) if len(cores) else np.zeros(0, np.int64)
        inside = group_of[nodes] < 0
        nodes, label = nodes[inside], label[inside]
        row_of = np.full(n, -1)
        row_of[nodes] = np.arange(len(nodes))
        rows_A = np.repeat(np.arange(n), np.diff(A.indptr))
        entry = np.flatnonzero((group_of[A.indices] >= 0) & (row_of[rows_A] >= 0))
        coupled = np.zeros(len(cores), dtype=bool)
        coupled[label[row_of[rows_A[entry]]]] = True  # cores whose interior sees Gamma
        keep = coupled[label]
        nodes, label = nodes[keep], label[keep]
        row_of[:] = -1
        row_of[nodes] = np.arange(len(nodes))
        row, col = row_of[rows_A[entry]], group_of[A.indices[entry]]
        pairs, pair_of = np.unique(label[row] * n0 + col, return_inverse=True)
        pair_core = pairs // n0
        slot = np.arange(len(pairs)) - np.searchsorted(pair_core, pair_core)  # rank of the column within its core
        self.width = int(slot.max()) + 1 if len(slot) else 0
        self._entry, self._target = entry, row * self.width + slot[pair_of.ravel()]
        sizes = np.bincount(label, minlength=len(cores))
        starts = np.concatenate([[0], np.cumsum(sizes)])
        interiors = [nodes[starts[c]:starts[c + 1]] for c in np.flatnonzero(sizes)]
        self.block = Gather.of(lambda M: block_diagonal(lambda rows: M[rows], interiors), A)
        # Slot s of a row of core c holds coarse column pairs[first_c + s] % n0, for s < k_c.
        first = np.searchsorted(pair_core, np.arange(len(cores)))
        count = np.bincount(pair_core, minlength=len(cores))
        r = np.repeat(np.arange(len(nodes)), count[label])
        s = np.arange(len(r)) - np.repeat(np.cumsum(count[label]) - count[label], count[label])
        r, s = self._reached(r, s, row, slot[pair_of.ravel()])
        self._slots = r * self.width + s
        rows = np.concatenate([self.gamma, nodes[r]])
        cols = np.concatenate([self._gamma_cols, pairs[first[label[r]] + s] % n0])
        order = sp.csr_matrix((np.arange(1, len(rows) + 1, dtype=np.float64), (rows, cols)), shape=(n, self.n0))
        self.pattern = Pattern.of(order)
        self._order = canonical(order).data.astype(np.int64) - 1
        self.rows = len(nodes)

    def _reached(self, r, s, row, slot):
        """The slots (r, s) a right-hand side entry reaches: those in a connected piece of the interiors'
        graph that holds an entry of slot s (elsewhere the harmonic extension is zero for every A)."""
        if not len(r):
            return r, s
        _, piece = _connected_pieces(self.block.pattern.matrix(np.ones(self.block.pattern.nnz)))
        reached = np.unique(piece[row] * self.width + slot)
        keep = np.isin(piece[r] * self.width + s, reached)
        return r[keep], s[keep]

    def phi(self, A, factor=None):
        """Phi (CSR) for A, of the pattern the plan was made for; ``factor``: diag(A_II)'s, when made."""
        return self.pattern.matrix(self.entries(self.A_pattern.entries(A), factor))

    def entries(self, data, factor=None):
        """Phi's entries (nnz,) for A's entries ``data``; a (B, nnz_A) array gives (B, nnz), one solve each."""
        data = np.asarray(data, dtype=np.float64)
        if data.ndim == 2:
            return np.stack([self.entries(row) for row in data]) if len(data) else np.zeros((0, self.pattern.nnz))
        values = np.ones(len(self.gamma) + len(self._slots))
        if self.rows:
            rhs = -np.bincount(self._target, weights=data[self._entry], minlength=self.rows * self.width)
            factor = factor or sparse_factor(self.block.matrix(data))
            X = factor.solve(rhs.reshape(self.rows, self.width))
            values[len(self.gamma):] = X.ravel()[self._slots]
        return values[self._order]


def harmonic_anchors(phi, gamma):
    """First node of each GDSW function: Phi is the indicator of its piece on Gamma (coarse.py)."""
    rows = phi[gamma].tocsr()
    first = np.full(phi.shape[1], np.iinfo(np.int64).max)
    np.minimum.at(first, rows.indices, np.repeat(np.asarray(gamma, dtype=np.int64), np.diff(rows.indptr)))
    return first


def coarse_interface(d):
    """Gamma of a whole decomposition's coarse basis: where its functions are indicators (hat: the
    cores' first nodes; q1: the boxes' corners; harmonic: the plan's interface; else none)."""
    kind = d.spec.get("coarse")
    if kind == "hat":
        return np.asarray(d.core_bounds[1:-1])
    if kind == "q1":
        (bx, by), nx = d.box_bounds, d.grid[0]
        return (by[1:-1][:, None] * nx + bx[1:-1][None, :]).ravel()
    if kind == "harmonic":
        return d.coarse_plan.gamma
    return np.zeros(0, dtype=np.int64)


def interior_blocks(decomposition):
    """Node sets of the core interiors (cores minus the interface Gamma of the coarse space).

    For 1D intervals with hat or harmonic Phi: the open intervals between coarse
    nodes, for which A^-1 = Phi (Phi^T A Phi)^-1 Phi^T + sum_j A_{I_j}^-1.
    """
    on_gamma = np.zeros(decomposition.n, dtype=bool)
    on_gamma[decomposition.interface] = True
    blocks = [nodes[~on_gamma[nodes]] for nodes in decomposition.cores]
    return [b for b in blocks if len(b)]
