"""Tolerances derived from what a test compares: its conditioning x machine epsilon x a stated factor.

A result computed two ways (serial and distributed, dense and sparse, one
kernel and another) differs by rounding: each floating-point operation is
exact to a relative eps, and the difference that reaches the compared
quantity is eps times how much that quantity amplifies a relative change of
its inputs (its condition number), times a modest factor for the number of
operations that round (stated at each use). A bound written as a bare
number holds on the machine where it was tried; one written so holds on any
x86-64 CPU and BLAS kernel, since kernels change the order of the sums, not
the size of their rounding.
"""
import numpy as np

EPS = float(np.finfo(np.float64).eps)    # 2.2e-16
EPS32 = float(np.finfo(np.float32).eps)  # 1.2e-7


def rounding(kappa=1.0, factor=1.0, eps=EPS):
    """factor * kappa * eps: the largest relative difference rounding can make in the compared quantity."""
    return float(factor) * float(kappa) * eps


def cond(A):
    """The 2-norm condition number of a small matrix (dense or scipy sparse)."""
    A = A.toarray() if hasattr(A, "toarray") else np.asarray(A)
    return float(np.linalg.cond(A))


def applied(kappa=10.0, terms=500):
    """One application of a DD or Schwarz operator (or its gradient) with the sums in another order (serial
    and distributed, gathered and exchanged, dense and batched): each output entry sums ``terms`` products
    (L r + n_0 r_0 <= 500 in these tests), and the result's relative size |M| |x| / |M x| is at most
    kappa(M): about 10 for random factors, kappa(A) for a Schwarz start (it approximates A^-1)."""
    return rounding(kappa, factor=terms)


APPLY = applied()
# The same numbers up to a few reordered sums (a checkpoint reloaded, rows gathered or scattered): 50 eps.
REORDERED = rounding(factor=50)


def adam_steps(k, per_step=APPLY, growth=1000):
    """Parameters after k Adam steps run two ways: a step moves each entry by lr m / sqrt(v), so a relative
    gradient difference d becomes a move of lr d, and up to ``growth`` d where an entry's gradient is that far
    below its running scale; k steps add up."""
    return k * growth * per_step
