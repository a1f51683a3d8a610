"""One level of DD attention: its subdomains' blocks and its transfer to the next level.

Level l applies, on its own rows,

    local:     sum_i R_i^T D_i^1/2 Q_i K_i^T D_i^1/2 R_i x     (the kernel of kernels.py)
    restrict:  Phi_{l+1}^T x,     interpolate:  Phi_{l+1} z,     top (last level): Q_0 K_0^T c

What its blocks are (free, Schwarz-started or exact factors) is its factor
parametrization (factors.py); the operator over the levels (operators.py)
walks them, and the distributed level (parallel/operator.py) adds
communication around the same terms.
"""
from __future__ import annotations

import numpy as np
import torch

from .attention import Attention, check_rank, default_problem
from .decomposition import DecompositionLike
from .factors import natural_scales as _level_scales, parametrization
from .kernels import coarse_interpolate, coarse_restrict, sparse_pair
from .parallel.comm import max_over

__all__ = ["DDLevel", "check_decomposition", "walk_levels"]


def check_decomposition(decomposition):
    """A clear error for what is not a decomposition (checked against the interface, not a type)."""
    if not isinstance(decomposition, DecompositionLike):
        raise TypeError("decomposition must be a pddattn.Decomposition (or a rank's DecompositionShare), "
                        f"got {type(decomposition).__name__}")


def walk_levels(levels, x_own, transpose=False):
    """Phi_1 M_1^-1 Phi_1^T x over ``levels`` (the first one's rows): one descent, one ascent.

    x_{k+1} = Phi_{k+1}^T x_k down to the top, then M_k^-1 x_k = local_k(x_k)
    + Phi_{k+1} (M_{k+1}^-1 x_{k+1}) back up, the top's being its dense
    block (or factored A_top).
    """
    xs = [x_own]
    for m in levels:
        if not m.has_coarse:
            break
        xs.append(m.restrict(xs[-1]))
    deepest = len(xs) - 1
    z = levels[-1].top_term(xs[-1], transpose) if deepest == len(levels) else \
        levels[deepest].local_matvec(xs[-1], transpose)
    for depth in range(deepest - 1, 0, -1):
        z = levels[depth].local_matvec(xs[depth], transpose) + levels[depth].interpolate(z)
    return levels[0].interpolate(z)


class DDLevel(Attention):
    """One level of DD attention, batched over the subdomains it holds.

    Parameters
    ----------
    decomposition : Decomposition
        Cores, overlap, partition of unity and coarse space (``coarse`` "none"
        is the one-level ablation).
    r : int
        Rank of every local block.
    r0 : int, optional
        Rank of the coarse block (default: n_0, full); on a level with a
        level below, that level's.
    symmetric : bool
        Tie K_i = Q_i and K_0 = Q_0, so M^-1 is symmetric positive semi-definite.
    init : {'random', 'schwarz', 'exact', 'none'}
        The factor parametrization (factors.py).
    init_scale : float
        Standard deviation of the random factors in units of their natural
        scale (:func:`factors.natural_scales`).
    seed : int
        Seed of the random factors; the same on every rank.
    subdomains : int array, optional
        The subdomains to hold (default all): a rank's share when distributed.
    rows : object, optional
        Where a rank's rows live: ``rows.own`` (the output rows, sorted global
        nodes) and ``rows.positions(nodes)`` (rows of the local input holding
        those nodes); the MPI level passes its ghost-exchange plan. Default:
        all n nodes, in order.
    problem : Problem, optional
        The level's operator A_l (default: the 1D Laplacian on n nodes).
    levels : int
        The levels from this one down, the dense top counted (2: this level
        holds the top block).
    next_level : DDLevel, optional
        The level below, already built; None on the last level (which holds
        the dense top block Q_0 K_0^T when it has a coarse space).
    comm : mpi4py communicator, optional
        The ranks holding this level's subdomains (maxima of natural scales).

    Notes
    -----
    Parameters are stored padded, Q of shape (N, L, r) with zero rows past
    n_i; those rows receive zero gradient (D^1/2 is zero there) and so stay
    zero. ``parametrization.count`` counts only the real entries.
    """

    spread = False  # whether this level's subdomains are spread over ranks (the distributed level's are)

    def __init__(self, decomposition, r, r0=None, symmetric=False, init="random", init_scale=0.1, seed=0,
                 dtype=None, device=None, subdomains=None, problem=None, rows=None, levels=2, next_level=None,
                 comm=None):
        super().__init__()
        check_decomposition(decomposition)
        self.comm = comm
        self.problem = default_problem(problem, decomposition.n)
        self.parametrization = parametrization(init)
        d = self.decomposition = decomposition
        self.n, self.r = d.n, check_rank("local rank r", r)
        self.r0 = d.coarse_size if r0 is None else check_rank("coarse rank r0", r0)
        self.symmetric, self.init = bool(symmetric), init
        self.held = np.arange(d.N) if subdomains is None else np.asarray(subdomains, dtype=np.int64)
        self.rows, self.levels = rows, int(levels)
        # a plain reference, not a child module: the first level names every level's parameters
        object.__setattr__(self, "next_level", next_level)
        if next_level is not None:
            self.r0 = next_level.r0
        self._set_buffers(dtype or torch.get_default_dtype(), device)
        self.parametrization.make(self, init_scale, seed, dtype or torch.get_default_dtype(), device)

    @property
    def exact(self):
        """True when the parts are applied by sparse factorizations (init='exact')."""
        return self.parametrization.exact

    @property
    def level_operators(self):
        """This level and those below it, in order."""
        out = [self]
        while out[-1].next_level is not None:
            out.append(out[-1].next_level)
        return out

    @property
    def last(self):
        """Whether this is the last level (the one with the dense top block, when it has a coarse space)."""
        return self.next_level is None

    @property
    def distributes_below(self):
        """Whether the level below is spread over the ranks (never serially)."""
        return False

    @property
    def coarse(self):
        """Whether the level has a coarse term: its decomposition has a coarse space."""
        return self.decomposition.coarse_size > 0

    has_coarse = coarse
    @property
    def own_rows(self):
        """The global nodes of this module's output rows (all n serially), sorted."""
        return np.arange(self.n) if self.rows is None else self.rows.own

    @property
    def ext_nodes(self):
        """The global nodes of the rows of x_ext, the input of :meth:`local_term` (all n serially)."""
        return np.arange(self.n)

    @property
    def whole(self):
        """True when this module holds every subdomain on all n rows (the serial operator)."""
        return self.rows is None and len(self.held) == self.decomposition.N

    def _set_buffers(self, dtype, device):
        d = self.decomposition
        index = d.held_indices(self.held, pad=-1)
        valid = index >= 0
        if self.rows is not None:
            index[valid] = self.rows.positions(index[valid])
        index[~valid] = 0  # padding reads and writes row 0 with weight D^1/2 = 0
        weight = np.sqrt(d.held_pou_weights(self.held))[..., None]
        self.register_buffer("index", torch.as_tensor(index, dtype=torch.long, device=device), persistent=False)
        self.register_buffer("weight", torch.as_tensor(weight, dtype=dtype, device=device), persistent=False)
        self._phi = None

    def coarse_basis(self):
        """(Phi, Phi^T) on the owned rows as sparse tensors, built once per dtype and device."""
        key = (self.weight.dtype, self.weight.device)
        if self._phi is None or self._phi[0] != key:
            own = self.decomposition.phi_rows(self.own_rows).tocoo()
            self._phi = (key, sparse_pair(own.row, own.col, own.data, own.shape, *key))
        return self._phi[1]

    def _own_scales(self):
        """This level's natural scales (computed once per set of values of A)."""
        if not hasattr(self, "_scales"):
            self._scales = _level_scales(self)
        return self._scales

    def _max_over_ranks(self, value):
        """The maximum over the ranks holding this level's subdomains (serially: the value)."""
        return max_over(value, self.comm)

    def _take_values(self, decomposition, problem):
        """New values of A_l on the same structure: the new decomposition and A, the factors anew."""
        self.decomposition, self.problem, self._phi = decomposition, problem, None
        self.__dict__.pop("_scales", None)
        self.__dict__.pop("_a_csr", None)  # A's products (spectrum.py) follow the new values
        self.parametrization.follow(self)

    def _release(self):
        """What this level holds outside Python: serially its factorizations (init='exact')."""
        self.parametrization.release()

    def factors(self, transpose=False):
        """(Q, K, Q0, K0) with the symmetric ties resolved, swapped for the transpose."""
        Q, Q0 = self.Q, self.Q0
        K = Q if self.K is None else self.K
        K0 = Q0 if self.K0 is None else self.K0
        return (K, Q, K0, Q0) if transpose else (Q, K, Q0, K0)

    def local_term(self, x_ext, transpose=False):
        """sum over held subdomains of R_i^T D_i^1/2 Q_i K_i^T D_i^1/2 R_i, node-major."""
        return self.parametrization.local(self, x_ext, transpose)

    def local_matvec(self, x, transpose=False):
        """sum_i R_i^T D_i^1/2 Q_i K_i^T D_i^1/2 R_i x on this module's rows (the one-level part M_1)."""
        if not self.whole:
            raise RuntimeError("this module holds only some subdomains; use DistributedDDAttention")
        return self.local_term(x, transpose)

    def restrict(self, x_own):
        """Phi_{l+1}^T x: this level's rows to the next level's (the distributed one sums over ranks)."""
        return coarse_restrict(x_own, *self.coarse_basis())

    def interpolate(self, z):
        """Phi_{l+1} z: the next level's rows back to this level's."""
        return coarse_interpolate(z, *self.coarse_basis())

    def top_term(self, c, transpose=False):
        """The top block on the coarse vector c: Q_0 K_0^T c, or A_top^-1 c when exact."""
        return self.parametrization.top(self, c, transpose)

    def coarse_term(self, x_own, transpose=False):
        """Phi_{l+1} M_{l+1}^-1 Phi_{l+1}^T x on the owned rows (:func:`walk_levels`)."""
        return walk_levels(self.level_operators, x_own, transpose)

    def matvec(self, x, transpose=False):
        """M_l^-1 (or its transpose) applied to the columns of x, shape (n, B): local part plus coarse part,
        the levels below walked once (never recursively)."""
        y = self.local_matvec(x, transpose)
        if self.has_coarse:
            y = y + self.coarse_term(x, transpose)
        return y
