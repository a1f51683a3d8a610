"""What every attention operator of pddattn shares: rows, parameter layouts, dense(), batch handling.

The global baseline, DD attention's levels (level.py, operators.py) and the
FNO beside them are :class:`Attention` modules: they take and return
batch-major tensors (..., n) like torch layers, and apply M^-1 to node-major
columns in ``matvec``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .problems import make_problem

__all__ = ["Attention", "check_rank", "default_problem"]


def default_problem(problem, n):
    """The seed's operator, the 1D Laplacian on n nodes, when no problem is given."""
    if problem is None:
        return make_problem("laplace1d", (n,))
    if problem.n != n:
        raise ValueError(f"the problem has n={problem.n} nodes, the operator {n}")
    return problem


def check_rank(name, r):
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1:
        raise ValueError(f"{name} must be a positive integer, got {r!r}")
    return int(r)


class Attention(nn.Module):
    """What every operator shares: its rows, layouts of its parameters, dense(), batch handling."""

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
        held = next(iter((*self.parameters(), *self.buffers())), None)  # an exact operator has buffers only
        device = held.device if held is not None else None
        with torch.no_grad():
            return self(torch.eye(self.n, dtype=self.compute_dtype, device=device)).T

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
