"""One DD-attention model for a family of operators: local factors generated from the operator.

For every operator A of a stencil family (one grid, one decomposition, any
coefficient field),

    M(A)^-1 = Phi(A) A_0(A)^-1 Phi(A)^T + sum_i R_i^T D_i^1/2 Q_i(A) Q_i(A)^T D_i^1/2 R_i,
    Q_i(A) = h G_theta(X_i(A)),

X_i(A) being the stencil entries of A's rows on Omega_i, scaled by h^2 (so
that they do not depend on h) and laid out on the box's grid, and G_theta
one small convolutional network shared by all subdomains: its parameters do
not depend on n or N. Phi(A) is the coarse basis of the decomposition (Q1 by
default) and A_0(A) = Phi^T A Phi is factored exactly: both are the
Hierarchy's values for A (hierarchy.values, batched over operators), so an
operator's set-up is a values update on a structure built once. Options:
coarse functions generated per box and appended to Phi, or the coarse block
A_0^-1 itself generated, Q_0(A_0) Q_0(A_0)^T (:meth:`FamilyDDAttention.parts`). The local term is the kernel every
DD operator uses (kernels.subdomain_attention); the coarse term the sparse
products and factorizations of every exact one (exact.py). Symmetric: M(A)^-1
is SPSD.

The first version serves 2D boxes with two levels (the Darcy benchmark's
shape); the model is trained by :func:`fit` on a set of operators and
measured by :func:`relative_errors` on others (held-out seeds).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from .errors import ConfigurationError
from .coarse_functions import BoxCoarse
from .exact import SparseSolve
from .generator import (LOCAL_FORMS, BoxGrids, CoarseStencilFeatures, Generator, StencilFeatures, factor_scale,
                        generated_coarse_block, generated_factors)
from .kernels import sparse_pair, subdomain_attention
from .spectrum import condition_loss

__all__ = ["StencilFeatures", "BoxGrids", "Generator", "FamilyDDAttention", "OperatorValues", "fit",
           "relative_errors", "iterate"]


@dataclasses.dataclass
class OperatorValues:
    """What the model needs of one operator: its box features, Phi, A_0's factorization and A.

    ``A`` is a kernels.SparseMatrix (products with autograd, for unrolled
    training); ``blocks`` diag(R_i A R_i^T), factored on first use by the
    classical Schwarz references (:func:`schwarz`).
    """

    features: torch.Tensor
    scale: torch.Tensor
    phi: tuple
    top: SparseSolve
    A: object
    blocks: object = None
    inverse_diagonal: torch.Tensor = None
    factors: tuple = None  # (weights' key, the generated parts), kept for inference (FamilyDDAttention.apply_of)
    coarse_values: tuple = None  # A's and Phi_q1's entries in BoxCoarse's structure (generated coarse functions)
    coarse_features: tuple = None  # (X_0, s_0) of A_0, for a generated coarse block
    _local: SparseSolve = None

    def local_solve(self):
        if self._local is None:
            self._local = SparseSolve(self.blocks)
        return self._local

    def free(self):
        for solve in (self.top, self._local):
            if solve is not None:
                solve.free()


class FamilyDDAttention(nn.Module):
    """DD attention whose local factors are generated from the operator (module docstring).

    Parameters
    ----------
    hierarchy : Hierarchy
        Two levels on a boxes decomposition with a coarse space, built on any
        member of the family (its structure serves them all).
    r : int
        Rank of every generated local block.
    width, depth : int
        The generator's convolutions.
    seed : int
        Seed of the generator's initial weights.
    comm : mpi4py communicator, optional
        The ranks that share the boxes (each generates its own boxes' factors).
    coarse_functions : int
        Coarse functions generated per box and appended to the coarse space.
    coarse_block : {'exact', 'generated'}
        A_0^-1 by a factorization, or Q_0 Q_0^T generated from A_0 (rank ``coarse_rank``).
    local : {'direct', 'ritz'}
        Q_i = h G(X_i) / sqrt(s_i), or Rayleigh-Ritz on the generated subspace
        (generator.generated_factors).
    generator_dtype : torch.dtype, optional
        The generators' weights and arithmetic (default ``dtype``); the operator's
        arithmetic stays in ``dtype`` either way.
    """

    def __init__(self, hierarchy, r, width=32, depth=4, seed=0, dtype=torch.float64, comm=None,
                 coarse_functions=0, coarse_block="exact", coarse_rank=16, local="direct", generator_dtype=None):
        super().__init__()
        if len(hierarchy.levels) != 1 or hierarchy.top is None:
            raise ValueError("generated factors need two levels with a coarse space")
        self.c = int(coarse_functions)
        if self.c and comm is not None and comm.Get_size() > 1:
            raise ConfigurationError("generated coarse functions (--coarse-functions) run on one process for now")
        _check_coarse_block(coarse_block, self.c, hierarchy.decomposition)
        self.coarse_block, self.r0 = coarse_block, int(coarse_rank)
        if local not in LOCAL_FORMS:
            raise ConfigurationError(f"--local-factors {local}: use one of {LOCAL_FORMS}")
        self.local = local
        d = self.decomposition = hierarchy.decomposition
        self.hierarchy, self.n, self.r, self.width, self.depth = hierarchy, d.n, int(r), int(width), int(depth)
        self.comm = comm if comm is not None and comm.Get_size() > 1 else None
        own = self.own = _own_boxes(d.N, self.comm)
        self.grids = BoxGrids.of(d, own)
        self.stencil = StencilFeatures(hierarchy.levels[0].plan.pattern, d.grid)
        self.h = factor_scale(local, d.grid)
        index = d.held_indices(own, pad=-1)
        self.register_buffer("weight", torch.as_tensor(np.sqrt(d.held_pou_weights(own))[..., None],
                                                       dtype=dtype), persistent=False)
        self.register_buffer("index", torch.as_tensor(np.maximum(index, 0)), persistent=False)
        self.register_buffer("slots", torch.as_tensor(self.grids.slots[:, :index.shape[1]]), persistent=False)
        with torch.random.fork_rng():  # the weights from ``seed``, the caller's random state untouched
            torch.manual_seed(seed)
            g_dtype = dtype if generator_dtype is None else generator_dtype
            self.generator = Generator(BoxGrids.CHANNELS, self.r + self.c, width, depth, g_dtype)
            self.coarse_generator = Generator(CoarseStencilFeatures.CHANNELS, self.r0, width, depth, g_dtype) \
                if coarse_block == "generated" else None  # made after G: G's weights from a seed are unchanged
        self.coarse_stencil = CoarseStencilFeatures(hierarchy.levels[0].plan.coarse, _corner_grid(d)) \
            if coarse_block == "generated" else None
        # omega D^-1 added: the SPD shift that makes M(A)^-1 invertible where the rank-r blocks are not.
        # Direct factors start near Q = 0, and omega = softplus(-2) = 0.13 keeps that start a convergent
        # iteration; Rayleigh-Ritz factors start as truncated Schwarz on the sine modes, whose best damped
        # Jacobi companion is heavier (measured at 63^2: 58 CG iterations at omega 0.13, 24 at 1):
        # softplus(0) = 0.69
        self.jacobi = nn.Parameter(torch.tensor(-2.0 if local == "direct" else 0.0, dtype=dtype))
        self.box_coarse = None  # generated coarse functions' structure, from the first operator's pattern

    def values(self, matrices):
        """The OperatorValues of each operator (one batched hierarchy values() for all: Phi, A_0)."""
        h = self.hierarchy
        batch = h.values(matrices)
        out = []
        plan, dtype = h.levels[0].plan, self.weight.dtype
        for b in range(len(matrices)):
            data = batch.A[0][b]
            phi = plan.phi.pattern.matrix(batch.phi[0][b]) if batch.phi[0] is not None else self.decomposition.phi
            features, scale = self.grids.layout(self.stencil(data))
            features, scale = torch.as_tensor(features, dtype=dtype), torch.as_tensor(scale, dtype=dtype)
            A = plan.pattern.matrix(data)
            if self.c and self.box_coarse is None:
                self.box_coarse = BoxCoarse(self.decomposition.held_indices(self.own, pad=-1), A)
            out.append(OperatorValues(features, scale, _pair(phi, dtype), SparseSolve(plan.coarse.matrix(batch.top[b])),
                                      _pair(A, dtype)[0], plan.blocks.matrix(data),
                                      torch.as_tensor(1.0 / A.diagonal(), dtype=dtype)[:, None],
                                      coarse_values=self.box_coarse.values(A, phi, plan.coarse.matrix(batch.top[b]),
                                                                           dtype) if self.c else None,
                                      coarse_features=self._coarse_features(batch.top[b])))
        return out

    def _coarse_features(self, top):
        """(X_0, s_0) of A_0's entries ``top`` for the generated coarse block; None for an exact one."""
        if self.coarse_stencil is None:
            return None
        X0, s0 = self.coarse_stencil(top)
        return torch.as_tensor(X0, dtype=self.weight.dtype), s0

    def factors(self, op):
        """Q (N_own, L, r + c) of ``op``'s boxes (zero at padding): generator.generated_factors; the last c
        columns are the generated coarse functions."""
        return generated_factors(self.generator, op.features, op.scale, self.slots, self.r + self.c, self.h,
                                 self.local, self.r)

    def parts(self, op):
        """(Q, coarse): the local factors and the coarse term as x -> Phi B Phi^T x (node-major x):

        - exact (default): Phi_q1 A_0^-1 Phi_q1^T through the factorization of A_0 made in :meth:`values`;
        - with c generated coarse functions: Phi = [Phi_q1, D_i^1/2 Z_i] and A_0 = Phi^T A Phi = L L^T
          (dense), Z_i the last c columns the generator gives each box;
        - a generated coarse block: B = Q_0 Q_0^T, Q_0 = G_0(X_0(A_0)) (no factorization).
        """
        Q = self.factors(op)
        if self.c:
            return Q[..., :self.r], self._enlarged_coarse(op, Q[..., self.r:])
        phi, phi_t = op.phi
        if self.coarse_generator is not None:
            Q0 = generated_coarse_block(self.coarse_generator, *op.coarse_features)
            return Q, lambda x: phi @ (Q0 @ (Q0.T @ (phi_t @ x)))
        return Q, lambda x: phi @ op.top(phi_t @ x)

    def _enlarged_coarse(self, op, Z):
        """x -> Phi A_0^-1 Phi^T x on the coarse space enlarged by the generated functions D_i^1/2 Z_i, in the
        boxes' sparsity (coarse_functions.BoxCoarse)."""
        W, box = self.weight * Z, self.box_coarse               # (N, L, c): D_i^1/2 Z_i on box i's nodes
        A0 = box.coarse_operator(W, op.coarse_values)
        # generated functions may nearly repeat the Q1 ones: a shift of 1e-12 of A_0's mean diagonal keeps
        # the factorization defined (far below the rounding of the products above)
        A0 = 0.5 * (A0 + A0.T) + 1e-12 * A0.diagonal().mean() * torch.eye(A0.shape[0], dtype=A0.dtype)
        L0 = torch.linalg.cholesky(A0)
        phi, phi_t = op.phi
        n0 = op.coarse_values[3].shape[0]

        def apply(x):
            z = torch.cholesky_solve(torch.cat([phi_t @ x, box.restrict(W, x)]), L0)
            return phi @ z[:n0] + box.prolong(W, z[n0:])
        return apply

    def matvec(self, x, op, parts=None):
        """M(A)^-1 x for node-major x (n, B); ``parts`` (:meth:`parts`) of ``op`` where they are at hand."""
        Q, coarse = self.parts(op) if parts is None else parts
        y = subdomain_attention(x, self.index, self.weight, Q, Q)
        if self.comm is not None:  # each rank's boxes: their terms summed, everything else replicated
            y = _SumOverRanks.apply(y, self.comm)
        return y + coarse(x) + nn.functional.softplus(self.jacobi) * op.inverse_diagonal * x

    def forward(self, f, op):
        """M(A)^-1 f for f of shape (B, n)."""
        return self.matvec(f.T.contiguous(), op).T

    def apply_of(self, op):
        """f (B, n) -> M(A)^-1 f with the factors generated once (for the steps of an iteration, a PC's
        applications): with autograd where it is on, else computed once and kept on ``op``."""
        if torch.is_grad_enabled():
            parts = self.parts(op)
        else:  # kept until the weights change (an optimizer step bumps their versions) or another model asks
            key = (id(self),) + tuple(p._version for p in self.parameters())
            if op.factors is None or op.factors[0] != key:
                op.factors = (key, self.parts(op))
            parts = op.factors[1]
        return lambda f: self.matvec(f.T.contiguous(), op, parts).T

    def num_parameters(self):
        return sum(p.numel() for p in self.parameters())

    def reduce_gradients(self):
        """Sum the generator's gradients over the ranks (each saw its own boxes); omega's is replicated."""
        if self.comm is None:
            return
        from mpi4py import MPI
        for p in self.generator.parameters():  # the coarse block's generator, like omega, is replicated
            if p.grad is not None:
                buf = np.ascontiguousarray(p.grad.detach().numpy()).copy()
                self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
                p.grad = torch.from_numpy(buf)


COARSE_BLOCKS = ("exact", "generated")


def _check_coarse_block(kind, c, decomposition):
    if kind not in COARSE_BLOCKS:
        raise ConfigurationError(f"--coarse-block {kind}: use exact (A_0^-1 factored) or generated (Q_0 Q_0^T)")
    if kind == "generated" and (c or decomposition.coarse != "q1"):
        raise ConfigurationError("a generated coarse block needs the q1 coarse space without generated coarse "
                                 "functions (its A_0 is then a stencil on the grid of box corners)")


def _corner_grid(d):
    """(nx0, ny0): the interior box corners per axis, the grid of the q1 coarse space."""
    bx, by = d.box_bounds
    return len(bx) - 2, len(by) - 2


def _own_boxes(N, comm):
    """The boxes of this rank: contiguous ranges of the N boxes, all of them serially."""
    if comm is None:
        return np.arange(N)
    if N < comm.Get_size():
        raise ConfigurationError(f"{N} boxes cannot be shared by {comm.Get_size()} ranks; use fewer ranks or "
                                 "more (smaller) boxes")
    return np.array_split(np.arange(N), comm.Get_size())[comm.Get_rank()]


class _SumOverRanks(torch.autograd.Function):
    """y = sum over ranks of y_r, for a y that every rank then uses alike (a replicated loss): the adjoint
    is the identity, not the Allreduce that parallel/comm.allreduce_sum applies for distributed users."""

    @staticmethod
    def forward(ctx, y, comm):
        from mpi4py import MPI
        buf = np.ascontiguousarray(y.detach().numpy()).copy()
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        return torch.from_numpy(buf)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _pair(S, dtype):
    coo = S.tocoo()
    return sparse_pair(coo.row, coo.col, coo.data, coo.shape, dtype, None)


def schwarz(model, op, restricted=False):
    """Classical two-level Schwarz on the model's structure with exact local solves, as f (B, n) -> M^-1 f:
    additive, sum R_i^T D_i^1/2 A_i^-1 D_i^1/2 R_i (the paper's weights), or restricted (RAS),
    sum R_i^T D_i A_i^-1 R_i; plus the same exact coarse term Phi A_0^-1 Phi^T."""
    d = model.decomposition  # every box, on every rank (a reference, not distributed)
    rows = np.concatenate(d.subdomains)
    weight = np.sqrt(np.concatenate([w[:len(s)] for w, s in zip(d.pou_weights(), d.subdomains)]))
    stacked = np.arange(len(rows))
    R = sp.csr_matrix((np.ones(len(rows)), (stacked, rows)), shape=(len(rows), model.n))
    W_in = R if restricted else sp.csr_matrix((weight, (stacked, rows)), shape=R.shape)
    W_out = sp.csr_matrix(((weight ** 2) if restricted else weight, (stacked, rows)), shape=R.shape)
    solve = op.local_solve()
    phi, phi_t = op.phi

    def apply(f):
        x = f.T.contiguous()
        local = torch.as_tensor(np.asarray(W_out.T @ solve.solve(np.asarray(W_in @ x.numpy()))), dtype=f.dtype)
        return (local + phi @ op.top(phi_t @ x)).T
    return apply


def _relative(y, u):
    return ((y - u).norm(dim=1) / u.norm(dim=1))


def iterate(apply, A, f, steps):
    """u_k after ``steps`` of u_(k+1) = u_k + M^-1 (f - A u_k) from u_0 = 0 (so u_1 = M^-1 f).

    ``apply``: f (B, n) -> M^-1 f; A: the operator (scipy sparse), for the residuals.
    """
    u = apply(f)
    for _ in range(steps - 1):
        u = u + apply(f - (A @ u.T.contiguous()).T)
    return u


def relative_errors(model, ops, data, steps=1, apply_of=None):
    """Mean relative L2 error of ``steps`` iterations over operators ``ops`` with data [(f, u)] each.

    ``apply_of``: op -> (f -> M^-1 f), another method on the same operators (default: the model).
    """
    apply_of = apply_of or model.apply_of
    with torch.no_grad():
        errors = [_relative(iterate(apply_of(op), op.A, f, steps), u) for op, (f, u) in zip(ops, data)]
    return float(torch.cat(errors).mean())


def local_targets(model, op, count, seed):
    """(X, Y) of shape (N_own, L, count): white vectors on each of the model's boxes (zero at padding) and
    Y = A_i^-1 X by the exact local solves, for :func:`fit_local`."""
    d = model.decomposition
    L = max(d.sizes)
    valid = np.arange(L)[None, :] < d.sizes[:, None]
    x = np.random.default_rng(seed).standard_normal((int(valid.sum()), count))
    y = op.local_solve().solve(x)
    X, Y = np.zeros((d.N, L, count)), np.zeros((d.N, L, count))
    X[valid], Y[valid] = x, y
    own, width = model.own, model.index.shape[1]
    dtype = model.weight.dtype
    return (torch.as_tensor(X[own, :width], dtype=dtype), torch.as_tensor(Y[own, :width], dtype=dtype))


def fit_local(model, ops, steps, lr=1e-3, count=32, seed=0, log=None):
    """Adam on sum_i ||Q_i Q_i^T X_i - A_i^-1 X_i||^2 / ||A_i^-1 X_i||^2 over boxes, X_i white: the
    generator learns each A_i^-1's best rank-r part (Eckart-Young: the truncated Schwarz factors
    [A_i^-1]_r) from the operator's features, a start for the global training (:func:`fit`)."""
    optimizer = torch.optim.Adam(model.generator.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    N = model.decomposition.N
    targets = [local_targets(model, op, count, seed + k) for k, op in enumerate(ops)]
    for step in range(steps):
        k = step % len(ops)
        X, Y = targets[k]
        Q = model.factors(ops[k])[..., :model.r]
        loss = ((torch.bmm(Q, torch.bmm(Q.transpose(1, 2), X)) - Y).square().sum(dim=(1, 2))
                / Y.square().sum(dim=(1, 2))).sum() / N
        optimizer.zero_grad()
        loss.backward()
        model.reduce_gradients()
        optimizer.step()
        schedule.step()
        if log is not None:
            log(step, float(loss.detach()) * N / max(len(model.own), 1))
    return model


def fit(model, ops, data, steps, lr=1e-3, batch=8, seed=0, unroll=1, log=None, per_step=1, replicas=None,
        loss="error"):
    """Adam on the mean relative squared error over ``per_step`` training operators per step (in turn).

    ``data`` [(f, u)] per operator, f and u (count, n); each step takes ``batch`` of its pairs at random.
    ``unroll`` K: the error after K steps u_(k+1) = u_k + M(A)^-1 (f - A u_k), with shared weights
    (K = 1: one application). ``loss`` 'condition': instead, the estimate of log kappa(M(A) A) of
    spectrum.condition_loss on each operator (what CG's iterations depend on; no data).
    ``replicas`` (replica, R, data_comm): R data replicas split each step's operators (operator j to
    replica j mod R) and sum their gradients, which equals the serial step.
    """
    replica, size, data_comm = replicas or (0, 1, None)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    rng = np.random.default_rng(seed)
    for step in range(steps):
        optimizer.zero_grad()
        total = 0.0
        for j in range(per_step):
            k = (step * per_step + j) % len(ops)
            f, u = data[k]
            pick = torch.as_tensor(rng.choice(len(f), size=min(batch, len(f)), replace=False))  # drawn by all
            if j % size != replica:
                continue
            op = ops[k]
            if loss == "condition":
                value = condition_loss(Preconditioned(model, op), seed=step * per_step + j)[0] / per_step
            else:
                value = (_relative(iterate(model.apply_of(op), op.A, f[pick], unroll), u[pick]) ** 2).mean() / per_step
            value.backward()
            total += float(value.detach())
        model.reduce_gradients()
        if data_comm is not None:
            total = _sum_gradients(model, data_comm, total)
        optimizer.step()
        schedule.step()
        if log is not None:
            log(step, total)
    return model


class Preconditioned:
    """M(A) of a family model on one operator as spectrum.py reads a model: ``matvec``, A, its rows.

    Lanczos runs without autograd on factors generated once for the weights in hand
    (:meth:`FamilyDDAttention.apply_of`); the loss's last products with autograd generate them once more.
    """

    layout = None

    def __init__(self, model, op):
        self.model, self.op, self.n = model, op, model.n
        self.own_rows = np.arange(model.n)
        like = next(model.parameters())
        self._a_csr = ((like.dtype, like.device), op.A)  # spectrum.operator_apply's cache: A as it is
        self._parts = None

    def parameters(self):
        return self.model.parameters()

    def matvec(self, x):
        if not torch.is_grad_enabled():
            return self.model.apply_of(self.op)(x.T).T
        if self._parts is None:
            self._parts = self.model.parts(self.op)
        return self.model.matvec(x, self.op, self._parts)


def _sum_gradients(model, comm, loss):
    """Sum every parameter's gradient and the loss over the data replicas (each had its share of the
    operators); one Allreduce."""
    from mpi4py import MPI
    params = [p for p in model.parameters() if p.grad is not None]
    buf = np.concatenate([p.grad.detach().numpy().ravel() for p in params] + [np.array([loss])])
    comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
    offset = 0
    for p in params:
        p.grad = torch.from_numpy(buf[offset:offset + p.numel()].reshape(p.shape).copy())
        offset += p.numel()
    return float(buf[-1])
