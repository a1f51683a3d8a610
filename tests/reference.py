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


# ----------------------------------------------------------------- v2: any A
def diffusion1d(n, k):
    """Dense -(k u')' from the definition, node by node (k a function of x)."""
    h = 1.0 / (n + 1)
    A = np.zeros((n, n))
    for j in range(n):
        x = (j + 1) * h
        left, right = k(x - h / 2), k(x + h / 2)
        A[j, j] = (left + right) / h**2
        if j > 0:
            A[j, j - 1] = -left / h**2
        if j < n - 1:
            A[j, j + 1] = -right / h**2
    return A


def diffusion2d(nx, ny, k):
    """Dense -div(k grad u), 5-point, k at edge midpoints, node (i, j) -> j nx + i."""
    hx, hy = 1.0 / (nx + 1), 1.0 / (ny + 1)
    A = np.zeros((nx * ny, nx * ny))
    for j in range(ny):
        for i in range(nx):
            p, x, y = j * nx + i, (i + 1) * hx, (j + 1) * hy
            for (di, dj, h, xm, ym) in ((-1, 0, hx, x - hx / 2, y), (1, 0, hx, x + hx / 2, y),
                                        (0, -1, hy, x, y - hy / 2), (0, 1, hy, x, y + hy / 2)):
                ke = k(xm, ym) / h**2
                A[p, p] += ke
                ii, jj = i + di, j + dj
                if 0 <= ii < nx and 0 <= jj < ny:
                    A[p, jj * nx + ii] -= ke
    return A


def truncated_inverse(B, r):
    """Best rank-r part of B^-1 for SPD B (dense)."""
    mu, V = np.linalg.eigh(B)
    k = min(r, len(mu))
    return (V[:, :k] / mu[:k]) @ V[:, :k].T


def two_level_schwarz(A, subdomains, weights, Phi, r=None, r0=None):
    """sum_i R_i^T D_i^1/2 [A_i^-1]_r D_i^1/2 R_i + Phi [(Phi^T A Phi)^-1]_r0 Phi^T, densely.

    ``weights`` are the D_i diagonals (one array per subdomain); r, r0 None: full.
    """
    n = A.shape[0]
    M = np.zeros((n, n))
    for s, w in zip(subdomains, weights):
        R = np.zeros((len(s), n))
        R[np.arange(len(s)), s] = 1.0
        Ai = R @ A @ R.T
        inv = truncated_inverse(Ai, r or len(s))
        Dh = np.diag(np.sqrt(w))
        M += R.T @ Dh @ inv @ Dh @ R
    if Phi.shape[1]:
        A0 = Phi.T @ A @ Phi
        M += Phi @ truncated_inverse(A0, r0 or A0.shape[0]) @ Phi.T
    return M


def set_exact_blocks(model, A):
    """Put D_i^-1/2 A_{I_j}^-1 D_i^-1/2 (interior block j inside subdomain j) into DD attention's factors.

    With a harmonic (or, for laplace1d, hat) coarse space this makes the model equal A^-1 in 1D.
    """
    import torch
    d = model.decomposition
    D = d.pou_weights()
    with torch.no_grad():
        model.Q.zero_(), model.K.zero_()
        for i, nodes in enumerate(d.interior_blocks()):
            pos = np.searchsorted(d.subdomains[i], nodes)
            block = np.zeros((d.max_size, d.max_size))
            w = 1 / np.sqrt(D[i, pos])
            block[np.ix_(pos, pos)] = w[:, None] * np.linalg.inv(A[np.ix_(nodes, nodes)]) * w[None, :]
            model.Q[i, :, : d.max_size] = torch.as_tensor(block)  # rank r >= L: the extra columns stay 0
            model.K[i, :, : d.max_size] = torch.eye(d.max_size)
