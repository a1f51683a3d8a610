"""Independent dense constructions from the definitions in DESIGN.md section 1.

Deliberately naive (loops, dense matrices): they share no code with
pddattn.decomposition or pddattn.operators, so agreement means something.
"""
import numpy as np


def cores(n, N):
    sizes = [n // N + (1 if i < n % N else 0) for i in range(N)]
    return [sum(sizes[:i]) for i in range(N + 1)]


def restrictions(n, N, delta):
    """Dense R_i, shape (n_i, n)."""
    c = cores(n, N)
    out = []
    for i in range(N):
        lo, hi = max(c[i] - delta, 0), min(c[i + 1] + delta, n)
        R = np.zeros((hi - lo, n))
        R[np.arange(hi - lo), np.arange(lo, hi)] = 1.0
        out.append(R)
    return out


def pou(n, N, delta, kind):
    """Dense diagonal D_i from the definition: 1 / multiplicity, or normalised ramps."""
    Rs = restrictions(n, N, delta)
    c = cores(n, N)
    raw = []
    for i, R in enumerate(Rs):
        nodes = R.argmax(axis=1)
        w = np.ones(len(nodes))
        if kind == "smooth":
            for m, j in enumerate(nodes):
                if nodes[0] > 0:  # ramp up from the left subdomain edge
                    w[m] = min(w[m], (j - nodes[0] + 1) / (2 * delta + 1))
                if nodes[-1] < n - 1:  # ramp down to the right edge
                    w[m] = min(w[m], (nodes[-1] - j + 1) / (2 * delta + 1))
        raw.append(w)
    total = sum(R.T @ w for R, w in zip(Rs, raw))
    return [np.diag(w / (R @ total)) for R, w in zip(Rs, raw)]


def coarse_basis(n, N):
    """Dense Phi (n, N-1): hats at the first node of cores 2..N, zero at x=0, x=1."""
    c = cores(n, N)
    points = [-1] + c[1:N] + [n]
    Phi = np.zeros((n, N - 1))
    for j in range(1, N):
        a, p, b = points[j - 1], points[j], points[j + 1]
        for node in range(n):
            if a < node <= p:
                Phi[node, j - 1] = (node - a) / (p - a)
            elif p < node < b:
                Phi[node, j - 1] = (b - node) / (b - p)
    return Phi


def laplacian(n):
    return (n + 1) ** 2 * (2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1))


def dd_matrix(n, N, delta, kind, Qs, Ks, Q0=None, K0=None):
    """Phi Q0 K0^T Phi^T + sum_i R_i^T D_i^1/2 Q_i K_i^T D_i^1/2 R_i."""
    M = np.zeros((n, n))
    for R, D, Q, K in zip(restrictions(n, N, delta), pou(n, N, delta, kind), Qs, Ks):
        S = np.sqrt(D)
        M += R.T @ S @ Q @ K.T @ S @ R
    if Q0 is not None and N > 1:
        Phi = coarse_basis(n, N)
        M += Phi @ Q0 @ K0.T @ Phi.T
    return M


def schwarz_matrix(n, N, delta, kind):
    """Two-level additive Schwarz with PoU weights, from dense inverses."""
    A = laplacian(n)
    M = np.zeros((n, n))
    for R, D in zip(restrictions(n, N, delta), pou(n, N, delta, kind)):
        S = np.sqrt(D)
        M += R.T @ S @ np.linalg.inv(R @ A @ R.T) @ S @ R
    if N > 1:
        Phi = coarse_basis(n, N)
        M += Phi @ np.linalg.inv(Phi.T @ A @ Phi) @ Phi.T
    return M
