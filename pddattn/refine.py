"""Refinement: conjugate gradients preconditioned by a model's M(A)^-1, from the model's answer.

A neural operator stops at its approximation error; a model that approximates
A^-1 can be refined, because A is known: K steps of preconditioned CG from
u_0 = M(A)^-1 f drive the error to any tolerance. Every step's *true*
residual ||f - A u_k|| / ||f|| is computed from A (not CG's recurrence).
"""
from __future__ import annotations

import numpy as np

__all__ = ["refine", "relative_residuals"]


def relative_residuals(A, F, U):
    """||f - A u|| / ||f|| per column of F, U (n, B)."""
    return np.linalg.norm(F - A @ U, axis=0) / np.maximum(np.linalg.norm(F, axis=0), np.finfo(float).tiny)


def refine(A, F, U0, apply, steps, rtol=0.0, callback=None):
    """PCG on A U = F from U0, columns at once, for at most ``steps`` steps or until every column's true
    relative residual is below ``rtol``.

    Parameters
    ----------
    A : scipy sparse (n, n), SPD
    F, U0 : ndarray (n, B)
    apply : callable
        R (n, B) -> M^-1 R (n, B), an SPD preconditioner.
    steps : int
    rtol : float
    callback : callable, optional
        Called as callback(k, U) after step k (for timings and errors along the way).

    Returns
    -------
    U : ndarray (n, B)
    history : list of ndarray
        The true relative residuals per column, at U0 and after each step.
    """
    U = np.array(U0, dtype=np.float64)
    R = F - A @ U
    history = [relative_residuals(A, F, U)]
    if steps <= 0 or history[-1].max() <= rtol:
        return U, history
    Z = apply(R)
    P = Z.copy()
    rz = np.einsum("ij,ij->j", R, Z)
    for _ in range(steps):
        AP = A @ P
        pap = np.einsum("ij,ij->j", P, AP)
        active = pap > 0  # a column already solved to rounding has P = 0: leave it
        alpha = np.where(active, rz / np.where(active, pap, 1.0), 0.0)
        U += alpha * P
        R -= alpha * AP
        history.append(relative_residuals(A, F, U))
        if callback is not None:
            callback(len(history) - 1, U)
        if history[-1].max() <= rtol:
            break
        Z = apply(R)
        rz_new = np.einsum("ij,ij->j", R, Z)
        beta = np.where(rz != 0, rz_new / np.where(rz != 0, rz, 1.0), 0.0)
        P = Z + beta * P
        rz = rz_new
    return U, history
