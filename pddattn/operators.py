"""Softmax-free attention operators: the global baseline and DD attention.

Global (the seed's QK^T):   y = Q K^T f,                Q, K in R^{n x r}.
DD attention:               y = Phi Q_0 K_0^T Phi^T f
                                + sum_i R_i^T D_i^1/2 Q_i K_i^T D_i^1/2 R_i f.

The two DD terms are written once, as functions of node-major tensors
(nodes x batch), in kernels.py, and reused unchanged by the serial module
below, by the MPI operator in :mod:`pddattn.parallel` (which only adds
communication around them) and by the PETSc preconditioner. What a level's
blocks are (free, Schwarz-started or exact factors) is its factor
parametrization (factors.py); the operator applies every level alike.

Modules take and return batch-major tensors (..., n), like torch layers.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .decomposition import Decomposition, same_structure
from .factors import natural_scales as _level_scales, parametrization
from .hierarchy import TOP_SIZE, coarse_levels as _coarse_levels
from .kernels import coarse_interpolate, coarse_restrict, sparse_pair, subdomain_attention
from .parallel.share import DecompositionShare
from .problems import make_problem
from .schwarz import global_top_inverse_eigenvalue, natural_scale

__all__ = ["GlobalAttention", "DDAttention", "subdomain_attention", "coarse_restrict",
           "coarse_interpolate", "INITS"]

INITS = ("random", "schwarz")
LOADED = "none"  # zero factors of the right shapes, to be filled from a checkpoint: needs neither A nor data
PREFIX = "coarse_model."  # a level's parameter names carry one per level above it


def _normal(shape, scale, generator, dtype, device):
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * scale).to(dtype=dtype, device=device)


def _default_problem(problem, n):
    """The seed's operator, the 1D Laplacian on n nodes, when no problem is given."""
    if problem is None:
        return make_problem("laplace1d", (n,))
    if problem.n != n:
        raise ValueError(f"the problem has n={problem.n} nodes, the operator {n}")
    return problem


def _check_rank(name, r):
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1:
        raise ValueError(f"{name} must be a positive integer, got {r!r}")
    return int(r)


# ---------------------------------------------------------------------- modules
class _Attention(nn.Module):
    """What both operators share: dense(), num_parameters(), batch handling."""

    @property
    def input_size(self):
        """Rows of the input this module takes (n; a rank's own rows when distributed)."""
        return self.n

    @property
    def own_rows(self):
        """The global nodes of this module's input and output rows (all n serially)."""
        return np.arange(self.n)

    def to_global(self, name, tensor):
        """A parameter-shaped tensor in the global layout (serial: already global)."""
        return tensor

    def from_global(self, name, tensor):
        """This module's part of a global parameter-shaped tensor (serial: all of it)."""
        return tensor

    def local_part(self, name):
        """The subdomains whose rows of ``name`` this rank holds in a sharded layout; None: held whole."""
        return None

    def replicated_parameters(self):
        """Parameters every rank of a domain group holds whole."""
        return tuple(name for name, _ in self.named_parameters())

    def dense(self):
        """The n x n matrix M^-1 (tests and diagnostics; O(n^2) memory)."""
        p = next(self.parameters())
        with torch.no_grad():
            return self(torch.eye(self.n, dtype=p.dtype, device=p.device)).T

    @property
    def compute_dtype(self):
        """The real dtype the operator computes in (its parameters', else its buffers')."""
        for t in (*self.parameters(), *self.buffers()):
            if t.is_floating_point() or t.is_complex():
                return t.real.dtype if t.is_complex() else t.dtype
        return torch.get_default_dtype()

    def forward(self, f, transpose=False):
        """Apply M^-1 (or its transpose) to f of shape (n,) or (batch, n).

        f of another floating dtype than the model's (a float32 tensor on a
        loaded float64 model) is cast in, and the result cast back to f's dtype.
        """
        single = f.dim() == 1
        x = f.reshape(1, -1) if single else f
        if x.shape[-1] != self.input_size:
            raise ValueError(f"expected inputs with {self.input_size} nodes in the last axis, got {tuple(f.shape)}")
        dtype = self.compute_dtype
        y = self.matvec(x.T.to(dtype).contiguous(), transpose).T
        y = y.to(f.dtype) if f.is_floating_point() else y
        return y.reshape(-1) if single else y


class GlobalAttention(_Attention):
    """The global low-rank baseline y = Q K^T f.

    Parameters
    ----------
    n, r : int
        Number of nodes and rank; 2 n r parameters (n r if symmetric).
    symmetric : bool
        Tie K = Q (symmetric positive semi-definite operator).
    init_scale : float
        Standard deviation of the random factors, in units of their natural
        scale (see :meth:`natural_scales`).
    seed : int
        Seed of the initial factors.
    problem : Problem, optional
        The operator whose inverse is learned (default: the 1D Laplacian on n
        nodes); it sets the natural scale.
    """

    def __init__(self, n, r, symmetric=False, init_scale=0.1, seed=0, dtype=None, device=None, problem=None,
                 init="random"):
        super().__init__()
        self.n, self.r, self.symmetric = _check_rank("n", n), _check_rank("rank r", r), bool(symmetric)
        self.problem = _default_problem(problem, self.n)
        dtype = dtype or torch.get_default_dtype()
        g = torch.Generator().manual_seed(seed)
        std = 0.0 if init == LOADED else init_scale * self.natural_scales()["Q"]
        self.Q = nn.Parameter(_normal((self.n, self.r), std, g, dtype, device))
        self.K = None if symmetric else nn.Parameter(_normal((self.n, self.r), std, g, dtype, device))

    def natural_scales(self):
        """Natural magnitude of each factor's entries: from the top eigenvalue of A^-1."""
        if not hasattr(self, "_scales"):
            self._scales = natural_scale(global_top_inverse_eigenvalue(self.problem), self.n)
        s = self._scales
        return {"Q": s, "K": s}

    def matvec(self, x, transpose=False):
        """M^-1 (or its transpose) applied to the columns of x, shape (n, B)."""
        Q, K = self.Q, self.Q if self.K is None else self.K
        if transpose:
            Q, K = K, Q
        return Q @ (K.T @ x)

    def num_parameters(self):
        return sum(p.numel() for p in self.parameters())

    def config(self):
        return {"model": "global", "n": self.n, "problem": self.problem.spec(), "rank": self.r,
                "symmetric": self.symmetric}


class DDAttention(_Attention):
    """Domain-decomposition attention, batched over subdomains.

    Parameters
    ----------
    decomposition : Decomposition
        Cores, overlap, partition of unity and coarse space.
    r : int
        Rank of every local block.
    r0 : int, optional
        Rank of the coarse block (default: n_0, full).
    symmetric : bool
        Tie K_i = Q_i and K_0 = Q_0, so M^-1 is symmetric positive semi-definite.
    coarse : bool
        Include the coarse term (False gives the one-level ablation).
    init : {'random', 'schwarz'}
        Random factors, or two-level additive Schwarz truncated to the ranks.
    init_scale : float
        Standard deviation of the random factors in units of their natural
        scale (see :meth:`natural_scales`).
    seed : int
        Seed of the random factors; the same on every rank.
    subdomains : int array, optional
        The subdomains to hold (default all). The MPI operator uses this for a
        rank's share; the serial ``forward`` needs all of them.
    levels : int
        2: the dense coarse block Q_0 K_0^T (today's operator, bit for bit);
        L > 2: the coarse block is itself DD attention on A_1 = Phi^T A Phi
        with L - 1 levels (see hierarchy.py). The levels' operators are
        :attr:`level_operators`, this one first, built coarsest first by one
        loop; every method iterates that list.
    top_size : int
        The target size of the dense top level when levels > 2.
    coarse_levels : list of hierarchy.Level, optional
        The levels below this one, when already built (``Hierarchy.below``);
        built here otherwise.
    rows : object, optional
        Where a rank's rows live: ``rows.own`` (the output rows, sorted global
        nodes) and ``rows.positions(nodes)`` (rows of the local input holding
        those nodes); the MPI operator passes its ghost-exchange plan. Default:
        all n nodes, in order.
    problem : Problem, optional
        The operator A (default: the 1D Laplacian on n nodes); Schwarz
        factors and natural scales are computed from it.
    coarse_model : DDAttention, optional
        The operator of the levels below, already built (what the loop of
        :meth:`_coarse_operators` hands each level); built here otherwise.

    Notes
    -----
    Parameters are stored padded, Q of shape (N, L, r) with zero rows past
    n_i; those rows receive zero gradient (D^1/2 is zero there) and so stay
    zero. ``num_parameters`` counts only the real entries,
    sum_i 2 n_i r + 2 n_0 r0 (halved when symmetric).

    Level l's parameters are named with l prefixes ``coarse_model.`` (the
    level below is this module's child ``coarse_model``), the names every
    checkpoint since multilevel DD attention carries.
    """

    def __init__(self, decomposition, r, r0=None, symmetric=False, init="random",
                 init_scale=0.1, seed=0, dtype=None, device=None, subdomains=None, problem=None, rows=None,
                 levels=2, top_size=TOP_SIZE, coarse_levels=None, coarse_model=None):
        super().__init__()
        if not isinstance(decomposition, (Decomposition, DecompositionShare)):
            raise TypeError("decomposition must be a pddattn.Decomposition (or a rank's DecompositionShare)")
        self.problem = _default_problem(problem, decomposition.n)
        self.parametrization = parametrization(init)
        d = self.decomposition = decomposition
        self.n, self.r = d.n, _check_rank("local rank r", r)
        self.r0 = d.coarse_size if r0 is None else _check_rank("coarse rank r0", r0)
        self.symmetric, self.init = bool(symmetric), init
        self.held = np.arange(d.N) if subdomains is None else np.asarray(subdomains, dtype=np.int64)
        self.rows = rows
        self.levels, self.top_size = int(levels), int(top_size)
        self.coarse_model = None
        if self.coarse and d.coarse_size and self.levels > 2:
            if coarse_model is None:
                below = coarse_levels if coarse_levels is not None else \
                    _coarse_levels(d, self.problem, self.levels, top_size)
                coarse_model = self._coarse_operators(below, r=self.r, r0=r0, symmetric=symmetric, init=init,
                                                      init_scale=init_scale, seed=seed, dtype=dtype,
                                                      device=device, top_size=top_size)
            self.coarse_model, self.r0 = coarse_model, coarse_model.r0
        self.level_operators = [self] + (coarse_model.level_operators if self.coarse_model is not None else [])
        self._set_buffers(dtype or torch.get_default_dtype(), device)
        self.parametrization.make(self, init_scale, seed, dtype or torch.get_default_dtype(), device)

    @property
    def exact(self):
        """True when the parts are applied by sparse factorizations (init='exact')."""
        return self.parametrization.exact

    def _coarse_operators(self, below, seed, **kwargs):
        """Level 1's operator for the levels ``below`` (hierarchy.Level list), built coarsest first.

        One loop: each level's operator is built on its Level and handed the
        one below it; level l draws its random factors from seed + l.
        """
        model = None
        for depth, (kind, extra) in reversed(list(enumerate(self._level_kinds(below)))):
            model = kind(below[depth].decomposition, problem=below[depth].problem, seed=seed + 1 + depth,
                         levels=len(below) + 1 - depth, coarse_model=model, **extra, **kwargs)
        return model

    def _level_kinds(self, below):
        """(class, extra arguments) of each level below: serially, replicated DDAttention."""
        return [(DDAttention, {})] * len(below)

    @property
    def distributes_below(self):
        """Whether the level below is spread over the ranks (never serially)."""
        return False

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

    def natural_scales(self):
        """Natural magnitude of the entries of each factor of every level, by parameter name.

        Local: from max_i of the top eigenvalue of A_i^-1; coarse: from the
        top eigenvalue of (Phi^T A Phi)^-1.
        """
        return {PREFIX * depth + k: v for depth, m in enumerate(self.level_operators)
                for k, v in m._own_scales().items()}

    def _own_scales(self):
        """This level's natural scales (computed once per set of values of A)."""
        if not hasattr(self, "_scales"):
            self._scales = _level_scales(self)
        return self._scales

    def _max_over_ranks(self, value):
        """The maximum over the ranks holding this operator's subdomains (serially: the value)."""
        return value

    def replicated_parameters(self):
        """Parameters every rank holds whole (their gradients are summed over ranks).

        The dense top, and every parameter of a level below one that does
        not spread its level below over the ranks (serially: all coarse levels).
        """
        names = ["Q0", "K0"]
        for depth, m in enumerate(self.level_operators[1:], 1):
            whole = not self.level_operators[depth - 1].distributes_below
            names += [PREFIX * depth + k for k, _ in m.named_parameters(recurse=False) if whole or k in ("Q0", "K0")]
        return tuple(names)

    def refactor(self, decomposition, problem, coarse_levels=()):
        """Take new values of A with the same structure: Phi, coarse operators and Schwarz factors anew.

        Index sets, partition of unity and (distributed) exchange plans are
        kept. Only Schwarz-initialised operators have factors that follow A.
        Returns False, changing nothing, when the structure differs (the
        pattern of A or of a Phi) or the factors were not made from A.

        Parameters
        ----------
        decomposition : Decomposition
            This level's, on the new values (``Hierarchy.update``).
        problem : Problem
        coarse_levels : list of hierarchy.Level
            The levels below, built on the new values.
        """
        new = [(decomposition, problem)] + [(level.decomposition, level.problem) for level in coarse_levels]
        pairs = list(zip(self.level_operators, new))
        if len(pairs) < len(self.level_operators) or any(
                not m.parametrization.follows_A or not same_structure(m.decomposition, e) for m, (e, _) in pairs):
            return False
        for m, (e, p) in reversed(pairs):  # the levels below first: a level's factors may read them
            m._take_values(e, p)
        return True

    def _take_values(self, decomposition, problem):
        """This level's part of :meth:`refactor`: the new decomposition and A, its factors anew."""
        self.decomposition, self.problem, self._phi = decomposition, problem, None
        self.__dict__.pop("_scales", None)
        self.__dict__.pop("_a_csr", None)  # A's products (spectrum.py) follow the new values
        self.parametrization.follow(self)

    def free(self):
        """Release what the operator's levels hold outside Python (the distributed ones: communicators)."""
        for m in self.level_operators:
            m._release()

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

    def coarse_term(self, x_own, transpose=False):
        """Phi_1 M_1^-1 Phi_1^T x on the owned rows: one descent through the levels, one ascent.

        x_{l+1} = Phi_{l+1}^T x_l down to the top, then M_l^-1 x_l = local_l(x_l)
        + Phi_{l+1} (M_{l+1}^-1 x_{l+1}) back up, the top's being its dense
        block (or factored A_top).
        """
        levels = self.level_operators
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
        return self.interpolate(z)

    def restrict(self, x_own):
        """Phi_{l+1}^T x: this level's rows to the next level's (the distributed one sums over ranks)."""
        return coarse_restrict(x_own, *self.coarse_basis())

    def interpolate(self, z):
        """Phi_{l+1} z: the next level's rows back to this level's."""
        return coarse_interpolate(z, *self.coarse_basis())

    def top_term(self, c, transpose=False):
        """The top block on the coarse vector c: Q_0 K_0^T c, or A_top^-1 c when exact."""
        return self.parametrization.top(self, c, transpose)

    def matvec(self, x, transpose=False):
        """M^-1 (or its transpose) applied to the columns of x, shape (n, B): local part plus coarse part."""
        y = self.local_matvec(x, transpose)
        if self.has_coarse:
            y = y + self.coarse_term(x, transpose)
        return y

    @property
    def coarse(self):
        """Whether the level has a coarse term: its decomposition has a coarse space (``coarse`` "none" is
        the one way to say it has none, the one-level ablation)."""
        return self.decomposition.coarse_size > 0

    @property
    def has_coarse(self):
        return self.coarse

    def local_matvec(self, x, transpose=False):
        """sum_i R_i^T D_i^1/2 Q_i K_i^T D_i^1/2 R_i x on this module's rows (the one-level part M_1)."""
        if not self.whole:
            raise RuntimeError("this module holds only some subdomains; use DistributedDDAttention")
        return self.local_term(x, transpose)

    def num_parameters(self):
        """sum_i 2 n_i r + 2 n_0 r0 (halved when symmetric) of the whole operator, padding excluded."""
        return sum(m.parametrization.count(m) for m in self.level_operators)

    def level_flops(self, batch):
        """Floating-point operations of one application to ``batch`` vectors, per level, on this module.

        Counts the dense products, which carry the work: level l's batched
        kernel is two products of N_l x L_l x r x B multiply-adds over the
        subdomains this module holds (padded length L_l, as executed), and the
        dense top block Q_0 (K_0^T c) is two of n_top x r0 x B. The sparse Phi
        products and the D^1/2 scalings add O(nnz(Phi) B) and O(N L B) and are
        left out. A replicated level is counted whole: every rank computes it.

        Returns
        -------
        list of (level, flops), then ("top", flops) when there is a dense top.
        """
        out = [(level, m.parametrization.flops(m, batch)) for level, m in enumerate(self.level_operators)]
        last = self.level_operators[-1]
        if last.has_coarse:
            top, r0 = last.Q0.shape
            out.append(("top", 4 * top * r0 * batch))
        return out

    def rank_bound(self):
        """An upper bound on the rank of M^-1: local ranks plus the coarse level's."""
        if self.exact:
            return self.n  # A_i^-1 and A_0^-1: SPD, so M^-1 is
        bound = None  # of the levels below the one in hand, coarsest first
        for m in reversed(self.level_operators):
            d = m.decomposition
            local = m.parametrization.rank(m)
            below = 0 if not m.has_coarse else bound if bound is not None else min(m.r0, d.coarse_size)
            bound = min(local + below, d.n)
        return bound

    def config(self):
        out = {"model": "dd", "n": self.n, "problem": self.problem.spec(), "decomposition": self.decomposition.to_dict(),
               "rank": self.r, "coarse_rank": self.r0, "symmetric": self.symmetric, "coarse": self.coarse}
        if self.levels > 2:  # two-level architectures stay as they were (old checkpoints match)
            below = self.coarse_model.decomposition.spec  # how the coarse levels were built: rebuilt alike
            out.update(levels=self.levels, top_size=self.top_size, level_coarse=below["coarse"],
                       level_partition=below.get("partition", "blocks"))
        return out
