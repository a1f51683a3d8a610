"""Softmax-free attention operators: the global baseline and DD attention.

Global (the seed's QK^T):   y = Q K^T f,                Q, K in R^{n x r}.
DD attention:               y = Phi Q_0 K_0^T Phi^T f
                                + sum_i R_i^T D_i^1/2 Q_i K_i^T D_i^1/2 R_i f.

The two DD terms are written once, as functions of node-major tensors
(nodes x batch), in kernels.py, and reused unchanged by one level
(level.py), by the MPI level in :mod:`pddattn.parallel` (which only adds
communication around them) and by the PETSc preconditioner. What a level's
blocks are (free, Schwarz-started or exact factors) is its factor
parametrization (factors.py). :class:`DDAttention` is the first level and
holds the levels below it as one flat list (pyamg's shape), built here by
one loop; it answers for the whole operator (counts, scales, refactoring,
its configuration).

Modules take and return batch-major tensors (..., n), like torch layers.
"""
from __future__ import annotations

import torch
from torch import nn

from .attention import Attention, check_rank, default_problem
from .decomposition import same_structure
from .hierarchy import TOP_SIZE, coarse_levels as _coarse_levels
from .kernels import coarse_interpolate, coarse_restrict, subdomain_attention
from .level import DDLevel, check_decomposition
from .schwarz import global_top_inverse_eigenvalue, natural_scale

__all__ = ["GlobalAttention", "DDAttention", "DDLevel", "subdomain_attention", "coarse_restrict",
           "coarse_interpolate", "INITS", "parameter_name", "level_of", "renamed"]

INITS = ("random", "schwarz")
LOADED = "none"  # zero factors of the right shapes, to be filled from a checkpoint: needs neither A nor data
LEVELS = "coarse_levels"  # level l >= 1's parameters are named coarse_levels.{l-1}.<name>
OLD_PREFIX = "coarse_model."  # the recursive chain's names (releases up to 2): one per level above


def parameter_name(level, name):
    """The operator's name of level ``level``'s parameter ``name`` (Q, K, Q0, K0)."""
    return name if level == 0 else f"{LEVELS}.{level - 1}.{name}"


def level_of(name):
    """(level, name on that level) of one of the operator's parameter names."""
    if not name.startswith(LEVELS + "."):
        return 0, name
    index, _, own = name[len(LEVELS) + 1:].partition(".")
    return int(index) + 1, own


def renamed(state):
    """A state dict of the recursive chain (``coarse_model.`` prefixes, releases up to 2) in today's names."""
    out = {}
    for name, value in state.items():
        depth = 0
        while name.startswith(OLD_PREFIX):
            name, depth = name[len(OLD_PREFIX):], depth + 1
        out[parameter_name(depth, name)] = value
    return out


def _normal(shape, scale, generator, dtype, device):
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * scale).to(dtype=dtype, device=device)


# ---------------------------------------------------------------------- modules
class GlobalAttention(Attention):
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
        self.n, self.r, self.symmetric = check_rank("n", n), check_rank("rank r", r), bool(symmetric)
        self.problem = default_problem(problem, self.n)
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
        return self.architecture(self.problem, self.r, self.symmetric)

    @staticmethod
    def architecture(problem, rank, symmetric):
        """The architecture dict checkpoints store, written here only (models.architecture asks this)."""
        return {"model": "global", "n": problem.n, "problem": problem.spec(), "rank": rank,
                "symmetric": bool(symmetric)}


class DDAttention(DDLevel):
    """Domain-decomposition attention: the first level, holding the levels below it in one list.

    Parameters
    ----------
    decomposition : Decomposition
        Cores, overlap, partition of unity and coarse space.
    r, r0, symmetric, init, init_scale, seed, subdomains, rows, problem, comm
        As for :class:`~pddattn.level.DDLevel`; every level gets the same
        ranks, symmetry and parametrization, level l the seed seed + l.
    levels : int
        2: the dense coarse block Q_0 K_0^T (today's operator, bit for bit);
        L > 2: the coarse block is itself DD attention on A_1 = Phi^T A Phi
        with L - 1 levels (see hierarchy.py). The levels' operators are
        :attr:`level_operators`, this one first; levels 1 .. L-2 are the list
        ``coarse_levels``, built coarsest first by one loop.
    top_size : int
        The target size of the dense top level when levels > 2.
    coarse_levels : list of hierarchy.Level, optional
        The levels below this one, when already built (``Hierarchy.below``);
        built here otherwise.
    level_kinds : callable, optional
        hierarchy levels -> [(class, extra arguments)] of their operators
        (default: every level a serial DDLevel; the distributed operator
        spreads them while each has a subdomain per rank).

    Notes
    -----
    ``num_parameters`` counts only the real entries, sum_i 2 n_i r + 2 n_0 r0
    (halved when symmetric). Level l >= 1's parameters are named
    ``coarse_levels.{l-1}.Q`` (and K, and Q0, K0 on the last). The recursive
    names of releases up to 2 (``coarse_model.`` once per level above) are
    mapped to these when a checkpoint loads (:func:`renamed`).
    """

    def __init__(self, decomposition, r, r0=None, symmetric=False, init="random", init_scale=0.1, seed=0,
                 dtype=None, device=None, subdomains=None, problem=None, rows=None, levels=2, top_size=TOP_SIZE,
                 coarse_levels=None, comm=None, level_kinds=None):
        check_decomposition(decomposition)
        problem = default_problem(problem, decomposition.n)
        below = []
        if decomposition.coarse_size and levels > 2:
            hierarchy_below = coarse_levels if coarse_levels is not None else \
                _coarse_levels(decomposition, problem, levels, top_size)
            kinds = (level_kinds or _serial_kinds)(hierarchy_below)
            below = _build_levels(hierarchy_below, kinds, r=r, r0=r0, symmetric=symmetric, init=init,
                                  init_scale=init_scale, seed=seed, dtype=dtype, device=device)
        super().__init__(decomposition, r, r0, symmetric, init, init_scale, seed, dtype, device, subdomains,
                         problem, rows, levels, below[0] if below else None, comm)
        self.top_size = int(top_size)
        if below:
            self.coarse_levels = nn.ModuleList(below)

    def natural_scales(self):
        """Natural magnitude of the entries of each factor of every level, by parameter name.

        Local: from max_i of the top eigenvalue of A_i^-1; coarse: from the
        top eigenvalue of (Phi^T A Phi)^-1.
        """
        return {parameter_name(depth, k): v for depth, m in enumerate(self.level_operators)
                for k, v in m._own_scales().items()}

    def replicated_parameters(self):
        """Parameters every rank holds whole (their gradients are summed over ranks).

        The dense top, and every parameter of a level whose subdomains are not
        spread over the ranks (serially: all coarse levels).
        """
        names = ["Q0", "K0"]
        for depth, m in enumerate(self.level_operators[1:], 1):
            names += [parameter_name(depth, k) for k, _ in m.named_parameters() if not m.spread or k in ("Q0", "K0")]
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

    def free(self):
        """Release what the operator's levels hold outside Python (the distributed ones: communicators)."""
        for m in self.level_operators:
            m._release()

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
        below = self.next_level.decomposition if self.levels > 2 else None
        return self.architecture(self.problem, self.decomposition, self.r, self.r0, self.symmetric, self.levels,
                                 self.top_size, below)

    @staticmethod
    def architecture(problem, decomposition, rank, coarse_rank, symmetric, levels=2, top_size=None, below=None):
        """The architecture dict checkpoints store, written here only (models.architecture asks this).

        ``below``: level 1's decomposition when levels > 2 (how the coarse levels were built, so that
        they are rebuilt alike); two-level architectures stay as release 1 wrote them.
        """
        out = {"model": "dd", "n": decomposition.n, "problem": problem.spec(),
               "decomposition": decomposition.to_dict(), "rank": rank, "coarse_rank": coarse_rank,
               "symmetric": bool(symmetric), "coarse": decomposition.coarse_size > 0}
        if levels > 2:
            out.update(levels=levels, top_size=top_size, level_coarse=below.spec["coarse"],
                       level_partition=below.spec.get("partition", "blocks"))
        return out


def _serial_kinds(below):
    """Every level below a serial operator: a DDLevel holding all its subdomains."""
    return [(DDLevel, {})] * len(below)


def _build_levels(below, kinds, seed, **kwargs):
    """The operators of the levels ``below`` (hierarchy.Level list), level 1 first, built coarsest first.

    One loop: each level's operator is built on its Level and handed the one
    below it; level l draws its random factors from seed + l.
    """
    built = []
    for depth, (kind, extra) in reversed(list(enumerate(kinds))):
        built.append(kind(below[depth].decomposition, problem=below[depth].problem, seed=seed + 1 + depth,
                          levels=len(below) + 1 - depth, next_level=built[-1] if built else None, **extra, **kwargs))
    return built[::-1]
