"""The whole-decomposition builders as they were before the share builder made them: the oracle.

pddattn's intervals, boxes and algebraic are the share builder's one-rank
case (parallel/setup.one_rank). These are the former whole builders, kept
verbatim (a node mask grown by graph products, distances by graph products
over the whole graph, weights normalised over all subdomains at once, the
coarse basis attached to the whole A), so that tests/test_one_builder.py
checks the one builder against an independent construction of the same
definitions. The coarse bases are attached here too (attach_coarse, the
Nicolaides basis from the whole weights). Shared: the container
(Decomposition), the hat, q1 and harmonic formulas (coarse.py) and the
ramps' formula (geometry.py).
"""
import numpy as np
import scipy.sparse as sp

from pddattn.coarse import COARSE_SPACES, HarmonicPlan, coarse_interface, hat_basis, q1_basis
from pddattn.decomposition import Decomposition, _check_int, _graph, _graph_parts
from pddattn.geometry import CoreMap, TileMap, box_ramp, interval_ramp, ramp as _ramp, split_sizes

PARTITIONS = ("blocks", "graph", "tiles")


def intervals(n, N, delta, pou="count", coarse="hat", A=None):
    """N intervals of near-equal size extended by delta nodes on each side (1D).

    Coarse ``hat``: n_0 = N - 1 hats at the first nodes of cores 2..N.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer (number of nodes), got {n!r}")
    N = _check_int("N (number of subdomains)", N, 1, f"in 1..n={n}")
    if N > n:
        raise ValueError(f"N={N} subdomains is more than the n={n} nodes; N must be in 1..{n}")
    delta = _check_int("delta (overlap)", delta, 0, ">= 0")
    sizes = split_sizes(n, N)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    limit = n - int(max(sizes[0], sizes[-1])) - 1
    if N > 1 and delta > limit:
        raise ValueError(f"overlap delta={delta} is too large for n={n}, N={N}: a subdomain would cover the "
                         f"whole domain; use 0 <= delta <= {limit}")
    starts, stops = np.maximum(bounds[:-1] - delta, 0), np.minimum(bounds[1:] + delta, n)
    ramps = [interval_ramp(a, b, n, delta) for a, b in zip(starts, stops)]
    spec = {"kind": "intervals", "N": N, "delta": delta, "pou": pou, "coarse": coarse}
    subs = [np.arange(a, b) for a, b in zip(starts, stops)]
    d = Decomposition(n, spec, CoreMap("intervals", n, (n,), (N,), 1),
                      [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:])], subs,
                      _normalised(n, subs, ramps, pou), sp.csr_matrix((n, 0)),
                      starts=starts, stops=stops)
    return attach_coarse(d, coarse, A)


def boxes(grid, layout, delta, pou="count", coarse="q1", A=None):
    """Nx x Ny rectangles of a nx x ny grid (node j nx + i), each grown by delta layers."""
    (nx, ny), (Nx, Ny) = grid, layout
    delta = _check_int("delta (overlap)", delta, 0, ">= 0")
    if Nx > nx or Ny > ny:
        raise ValueError(f"{Nx}x{Ny} subdomains do not fit the {nx}x{ny} grid")
    bx = np.concatenate([[0], np.cumsum(split_sizes(nx, Nx))])
    by = np.concatenate([[0], np.cumsum(split_sizes(ny, Ny))])
    if (Nx > 1 and delta >= nx - max(np.diff(bx))) or (Ny > 1 and delta >= ny - max(np.diff(by))):
        raise ValueError(f"overlap delta={delta} is too large for a {nx}x{ny} grid in {Nx}x{Ny} boxes")
    cores, subs, ramps = [], [], []
    for J in range(Ny):
        for I in range(Nx):
            cores.append((np.arange(by[J], by[J + 1])[:, None] * nx + np.arange(bx[I], bx[I + 1])[None, :]).ravel())
            x0, x1 = max(bx[I] - delta, 0), min(bx[I + 1] + delta, nx)
            y0, y1 = max(by[J] - delta, 0), min(by[J + 1] + delta, ny)
            subs.append((np.arange(y0, y1)[:, None] * nx + np.arange(x0, x1)[None, :]).ravel())
            ramps.append(box_ramp((x0, x1), (y0, y1), (nx, ny), delta))
    spec = {"kind": "boxes", "N": [Nx, Ny], "delta": delta, "pou": pou, "coarse": coarse}
    d = Decomposition(nx * ny, spec, CoreMap("boxes", nx * ny, (nx, ny), (Nx, Ny), 1), cores, subs,
                      _normalised(nx * ny, subs, ramps, pou), sp.csr_matrix((nx * ny, 0)))
    return attach_coarse(d, coarse, A)


def algebraic(A, N, delta, pou="count", coarse="harmonic", partition="blocks", cores=None):
    """N cores of A's rows, each grown delta times through the graph of A (PCASM-style).

    ``partition``: ``blocks``, contiguous row blocks (PETSc's ownership, what
    a matrix's row order gives); ``graph``, N balanced compact parts of A's
    graph whatever the numbering (recursive bisection), what the coarse
    levels built whole use, whose rows are numbered by interface piece, not
    by place; ``tiles``, the given ``cores`` (tiling.py: what the coarse
    levels use, built per rank or whole alike).
    """
    n = A.shape[0]
    if cores is not None:
        N = len(cores)
    N = _check_int("N (number of subdomains)", N, 1, f"in 1..n={n}")
    if N > n:
        raise ValueError(f"N={N} subdomains is more than the n={n} rows")
    delta = _check_int("delta (overlap)", delta, 0, ">= 0")
    if partition not in PARTITIONS:
        raise ValueError(f"partition must be one of {PARTITIONS}, got {partition!r}")
    if (partition == "tiles") != (cores is not None):
        raise ValueError("the tiles partition takes its cores (and only it does)")
    G = _graph(A)
    if cores is None:
        cores = _graph_parts(G, N) if partition == "graph" and N > 1 else _block_parts(n, N)
    subs, ramps = [], []
    for core in cores:
        mask = np.zeros(n, dtype=bool)
        mask[core] = True
        for _ in range(delta):
            mask |= (G @ mask.astype(np.float64)) > 0
        subs.append(np.flatnonzero(mask))
        ramps.append(_ramp(_distance_to_outside(G, mask, 2 * delta + 1), delta))
    if N > 1 and max(len(s) for s in subs) == n:
        raise ValueError(f"overlap delta={delta} makes a subdomain cover all {n} rows; use a smaller --overlap")
    spec = {"kind": "algebraic", "N": N, "delta": delta, "pou": pou, "coarse": coarse}
    if partition != "blocks":
        spec["partition"] = partition
    d = Decomposition(n, spec, TileMap.of_cores(cores, n), cores, subs, _normalised(n, subs, ramps, pou),
                      sp.csr_matrix((n, 0)))
    return attach_coarse(d, coarse, A)


def _block_parts(n, N):
    bounds = np.concatenate([[0], np.cumsum(split_sizes(n, N))])
    return [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def _distance_to_outside(G, mask, cap):
    """Graph distance (capped) from each node of ``mask`` to the nearest node outside it."""
    dist = np.full(mask.sum(), np.inf)
    reached = ~mask
    local = np.flatnonzero(mask)
    for k in range(1, cap + 1):
        reached = reached | ((G @ reached.astype(np.float64)) > 0)
        new = reached[local] & np.isinf(dist)
        dist[new] = k
        if not np.isinf(dist).any():
            break
    return dist


def _normalised(n, subdomains, ramps, pou):
    """D_i: the ramps (smooth) or ones (count) divided by their sum over all subdomains at each node."""
    if pou not in ("count", "smooth"):
        raise ValueError(f"unknown partition of unity {pou!r}")
    raw = ramps if pou == "smooth" else [np.ones(len(s)) for s in subdomains]
    L = max(len(s) for s in subdomains)
    idx = np.full((len(subdomains), L), n, dtype=np.int64)
    w = np.zeros((len(subdomains), L))
    for i, (s, r) in enumerate(zip(subdomains, raw)):
        idx[i, : len(s)], w[i, : len(s)] = s, r
    total = np.zeros(n + 1)
    np.add.at(total, idx.ravel(), w.ravel())
    return [r / total[s] for s, r in zip(subdomains, raw)]


def nicolaides_basis(decomposition):
    """Phi[:, i] = R_i^T D_i 1 (CSR n x N): the columns sum to one at every node."""
    d = decomposition
    weights, index = d.pou_weights(), d.padded_indices(pad=-1)
    keep = index >= 0
    cols = np.broadcast_to(np.arange(d.N)[:, None], index.shape)
    return sp.csr_matrix((weights[keep], (index[keep], cols[keep])), shape=(d.n, d.N))


def attach_coarse(d, kind, A=None):
    """Set d.phi to the coarse basis ``kind`` and return d; ValueError when it does not apply."""
    if kind not in COARSE_SPACES:
        raise ValueError(f"unknown coarse space {kind!r}; choose one of {COARSE_SPACES}")
    kinds = d.spec.get("kind")
    if kind == "hat":
        if kinds != "intervals":
            raise ValueError("the hat coarse space needs an intervals decomposition (1D); use harmonic")
        d.phi = hat_basis(d.n, d.core_bounds)
    elif kind == "q1":
        if kinds != "boxes":
            raise ValueError("the q1 coarse space needs a boxes decomposition (2D); use harmonic")
        d.phi = q1_basis(d.grid, d.box_bounds)
    elif kind == "harmonic":
        if A is None:
            raise ValueError("the harmonic coarse space is computed from A; pass the matrix")
        d.coarse_plan = HarmonicPlan(A, d.cores)
        d.phi = d.coarse_plan.phi(A)
    elif kind == "nicolaides":
        d.phi = nicolaides_basis(d)
    else:
        d.phi = sp.csr_matrix((d.n, 0))
    d.coarse = d.spec["coarse"] = kind
    d.interface = coarse_interface(d)
    return d
