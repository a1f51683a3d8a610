"""The two-level corrections of DDAttentionPC, written once on PETSc Vecs.

With P0 = Phi M_0^-1 Phi^T (the coarse term) and M1 = sum_i R_i^T D_i^1/2
Q_i K_i^T D_i^1/2 R_i (the local term; A_i^-1 when exact):

    additive        M = M1 + P0                                 (the paper's M^-1)
    balanced        M = P0 + (I - P0 A) M1 (I - A P0)           (deflated, PCHPDDM's default)
    multiplicative  I - M A = (I - S A)(I - P0 A)(I - S A)      (a two-grid V-cycle)

where S = p(M1 A) M1 is k steps of Chebyshev on M1 A over [0.1, 1.1] x
lambda_max, the interval PETSc's multigrid smooths on (KSPChebyshev's
estimate in PCMG and GAMG), lambda_max estimated by 10 steps of CG on
M1 A (Lanczos). With an exact P0 every form is SPD; the multiplicative one
is refused otherwise. Per application: additive 1 local and 1 coarse term;
balanced 1 local, 2 coarse, 2 products with A; multiplicative 2k local, 1
coarse and 2k products with A. On the channels at 255^2 and 511^2 (16 x 16
boxes, overlap 2) it takes 17 and 19 CG iterations where balanced takes 41
and 42 and GAMG 21 (k = 2; k = 1: 23 at 255^2).
"""
from __future__ import annotations

import numpy as np

__all__ = ["CORRECTIONS", "Parts", "balanced", "Multiplicative", "CHEBYSHEV_INTERVAL", "EIGEN_STEPS"]

CORRECTIONS = ("additive", "balanced", "multiplicative")
# Times lambda_max(M1 A): PETSc's KSPChebyshevEstEigSet default in multigrid. The 1.1 margin matters: with
# 0.05 as the lower end the channels at 511^2 took 13 iterations instead of 19, but the true residual stalled
# at 1e-2, the 10-step estimate being low enough that the V-cycle was no longer positive definite.
CHEBYSHEV_INTERVAL = (0.1, 1.1)
EIGEN_STEPS = 10  # CG (Lanczos) steps of the lambda_max estimate, as KSPChebyshev's


class Parts:
    """The pieces a correction is made of, each y = part(x) on PETSc Vecs.

    Parameters
    ----------
    local, coarse : callable (x, y)
        y = M1 x and y = P0 x.
    mult : callable (x, y)
        y = A x (the transpose for a transposed application).
    """

    def __init__(self, local, coarse, mult):
        self.local, self.coarse, self.mult = local, coarse, mult


def balanced(parts, work, x, y):
    """y = P0 x + (I - P0 A) M1 (I - A P0) x, with three work Vecs."""
    z0, r, w = work
    parts.coarse(x, z0)          # z0 = P0 x
    parts.mult(z0, r)
    r.aypx(-1.0, x)              # r = x - A z0
    parts.local(r, y)            # y = M1 r
    parts.mult(y, w)
    parts.coarse(w, r)           # r = P0 A M1 r
    y.axpy(1.0, z0)
    y.axpy(-1.0, r)


class Multiplicative:
    """The two-grid V-cycle with Chebyshev-accelerated Schwarz smoothing.

    Parameters
    ----------
    degree : int
        Chebyshev steps k of each smoothing (k >= 1; k = 1 is Richardson
        with weight 1 / theta).
    lambda_max : float
        The estimate of the largest eigenvalue of M1 A (:func:`estimate_lambda_max`).
    """

    def __init__(self, degree, lambda_max):
        if isinstance(degree, bool) or not isinstance(degree, int) or degree < 1:
            raise ValueError(f"the Chebyshev degree must be an integer >= 1, got {degree!r}")
        self.degree, self.lambda_max = degree, float(lambda_max)
        low, high = (c * self.lambda_max for c in CHEBYSHEV_INTERVAL)
        self.theta, self.delta = (high + low) / 2, (high - low) / 2

    def smooth(self, parts, work, b, x):
        """x = p(M1 A) M1 b: k Chebyshev steps on A x = b from x = 0 (Saad, Algorithm 12.1)."""
        r, d, z = work
        sigma = self.theta / self.delta
        rho = 1.0 / sigma
        parts.local(b, d)
        d.scale(1.0 / self.theta)
        d.copy(x)
        for _ in range(self.degree - 1):
            parts.mult(x, r)
            r.aypx(-1.0, b)                      # r = b - A x
            parts.local(r, z)
            rho_next = 1.0 / (2.0 * sigma - rho)
            d.scale(rho_next * rho)
            d.axpy(2.0 * rho_next / self.delta, z)
            x.axpy(1.0, d)
            rho = rho_next

    def apply(self, parts, work, x, y):
        """y = M x: pre-smooth, coarse correction, post-smooth (six work Vecs)."""
        r, t = work[:2]
        smoothing = work[2:5]
        self.smooth(parts, smoothing, x, y)      # y = S x
        parts.mult(y, r)
        r.aypx(-1.0, x)
        parts.coarse(r, t)
        y.axpy(1.0, t)                           # y += P0 (x - A y)
        parts.mult(y, r)
        r.aypx(-1.0, x)
        self.smooth(parts, smoothing, r, t)
        y.axpy(1.0, t)                           # y += S (x - A y)

    def counts(self):
        """Applications of (local term, coarse term, A) per application of M."""
        return 2 * self.degree, 1, 2 * self.degree


def estimate_lambda_max(P, local, b, steps=EIGEN_STEPS):
    """The largest eigenvalue of M1 A from ``steps`` CG steps (Lanczos), PETSc's own estimator.

    ``b``: the start vector (the caller makes it independent of the layout,
    so the estimate is the same on any number of ranks up to rounding).
    """
    from petsc4py import PETSc
    ksp = PETSc.KSP().create(comm=P.getComm())
    try:
        ksp.setOperators(P)
        ksp.setType("cg")
        pc = ksp.getPC()
        pc.setType("python")
        pc.setPythonContext(_Shell(local))
        ksp.setComputeSingularValues(True)
        ksp.setTolerances(rtol=1e-300, atol=0.0, max_it=steps)
        x = b.duplicate()
        ksp.solve(b, x)
        x.destroy()
        top, _ = ksp.computeExtremeSingularValues()
    finally:
        ksp.destroy()
    if not np.isfinite(top) or top <= 0:
        raise ValueError(f"the estimate of lambda_max(M1 A) is {top}: M1 is not positive definite")
    return float(top)


class _Shell:
    """A Python PC applying M1 (for the estimate)."""

    def __init__(self, local):
        self.local = local

    def apply(self, pc, x, y):
        self.local(x, y)
