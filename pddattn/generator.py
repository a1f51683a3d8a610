"""The generator of local factors: features of the operator on each box's grid, and the network.

For a box i of a 5-point stencil operator A on an nx x ny grid, X_i(A) holds
each node's stencil entries times h^2 (so that they do not depend on h),
divided by the box's mean centre entry s_i, with a mask channel and the
node's place in its box; G_theta is one small convolutional network shared
by all boxes, and the factors are

    Q_i(A) = h G_theta(X_i(A)) / sqrt(s_i),

so that M(cA)^-1 = M(A)^-1 / c. Used by the family model (family.py) on the
whole operator, and by the PC on the rows a rank holds (petsc/family_source.py).

The generated coarse block (``--coarse-block generated``) is the same idea one
level down: A_0 = Phi^T A Phi of the Q1 space is a 9-point stencil on the
grid of box corners, and a second network maps its entries, divided by A_0's
mean diagonal s_0, to Q_0 = G_0(X_0) / sqrt(s_0), so that
Phi Q_0 Q_0^T Phi^T stands for Phi A_0^-1 Phi^T with no factorization.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["StencilFeatures", "BoxGrids", "Generator", "generated_factors", "CoarseStencilFeatures",
           "generated_coarse_block", "LOCAL_FORMS", "GENERATOR_DTYPES", "factor_scale", "sines", "stencil_product", "ritz_factors"]


class StencilFeatures:
    """Each node's 5-point stencil entries (S, W, centre, E, N) x h^2 from A's entries, zero off the grid.

    Structure (built once from the pattern of A's rows ``nodes``, all of them
    by default): the feature slot of each stored entry, by its column offset.
    Values: one scatter of the entries.
    """

    OFFSETS = 5

    def __init__(self, pattern, grid, nodes=None):
        nx, ny = (int(g) for g in grid)
        nodes = np.arange(pattern.shape[0]) if nodes is None else np.asarray(nodes, dtype=np.int64)
        rows = np.repeat(nodes, np.diff(pattern.indptr))
        offset = pattern.indices - rows
        same_row = (rows // nx) == (pattern.indices // nx)
        channel = np.select([offset == -nx, (offset == -1) & same_row, offset == 0, (offset == 1) & same_row,
                             offset == nx], [0, 1, 2, 3, 4], default=-1)
        x, y = nodes % nx, nodes // nx  # every node's stencil, none across the grid's edges:
        five_point = int((1 + (x > 0) + (x < nx - 1) + (y > 0) + (y < ny - 1)).sum())
        if (channel < 0).any() or pattern.nnz != five_point or pattern.shape[1] != nx * ny:
            raise ValueError(f"this model generates factors from a 5-point stencil on a {nx}x{ny} grid (a "
                             f"diffusion2d family); the operator's pattern is not one ({pattern.nnz} entries, "
                             f"{five_point} expected)")
        self.n = len(nodes)
        self.slot = np.repeat(np.arange(self.n), np.diff(pattern.indptr)) * self.OFFSETS + channel
        self.scale = (1.0 / (nx + 1)) * (1.0 / (ny + 1))  # h^2: the stencil's 1 / h^2 taken out

    def __call__(self, data):
        """(len(nodes), 5) features of the rows' entries ``data`` (in the pattern's order)."""
        out = np.zeros(self.n * self.OFFSETS)
        out[self.slot] = np.asarray(data) * self.scale
        return out.reshape(self.n, self.OFFSETS)


class BoxGrids:
    """Some box subdomains' nodes on a common (H, W) grid, and back to their padded index slots.

    ``boxes``: which boxes of the (Nx, Ny) layout with bounds ``bounds``
    (bx, by) and overlap ``delta``; ``nodes`` (len(boxes), H, W): the node at
    each grid point, -1 outside the box; ``slots`` (len(boxes), L): the grid
    point (flattened) of each of the subdomain's sorted nodes, for the
    (N, L, r) factors the kernel takes (L = ``max_size``).
    """

    CHANNELS = StencilFeatures.OFFSETS + 1 + 4  # stencil, mask, position

    def __init__(self, grid, bounds, delta, max_size, boxes):
        (nx, ny), (bx, by) = grid, bounds
        Nx = len(bx) - 1
        x0, x1 = np.maximum(bx[:-1] - delta, 0), np.minimum(bx[1:] + delta, nx)
        y0, y1 = np.maximum(by[:-1] - delta, 0), np.minimum(by[1:] + delta, ny)
        self.H, self.W = int((y1 - y0).max()), int((x1 - x0).max())
        self.boxes = np.asarray(boxes, dtype=np.int64)
        self.nodes = np.full((len(self.boxes), self.H, self.W), -1, dtype=np.int64)
        self.slots = np.zeros((len(self.boxes), max_size), dtype=np.int64)
        for k, i in enumerate(self.boxes):
            I, J = i % Nx, i // Nx
            h, w = y1[J] - y0[J], x1[I] - x0[I]
            self.nodes[k, :h, :w] = np.arange(y0[J], y1[J])[:, None] * nx + np.arange(x0[I], x1[I])[None, :]
            self.slots[k, : h * w] = (np.arange(h)[:, None] * self.W + np.arange(w)[None, :]).ravel()
        self.mask = self.nodes >= 0
        self.position = self._position(self.mask)
        self.rows = np.where(self.mask, self.nodes, 0)  # where each grid point's features are read

    @classmethod
    def of(cls, decomposition, boxes=None):
        """The grids of a whole boxes decomposition's ``boxes`` (default all)."""
        d = decomposition
        if d.spec.get("kind") != "boxes":
            raise ValueError("generated factors need a boxes decomposition (a 2D grid)")
        return cls(d.grid, d.box_bounds, d.delta, d.max_size, np.arange(d.N) if boxes is None else boxes)

    def localize(self, nodes):
        """Read features from an array over the sorted ``nodes`` (a rank's rows) instead of all n."""
        self.rows = np.where(self.mask, np.searchsorted(nodes, np.maximum(self.nodes, 0)), 0)
        return self

    @staticmethod
    def _position(mask):
        """(N, H, W, 4): each node's place in its box, x and y in (0, 1) and sin(pi x), sin(pi y).

        A convolution sees a few nodes around it; these channels tell it where the box's edges (the
        local problem's Dirichlet boundary) are, which A_i^-1's leading modes depend on."""
        extent_y, extent_x = mask.any(axis=2).sum(axis=1), mask.any(axis=1).sum(axis=1)
        H, W = mask.shape[1:]
        y = (np.arange(H)[None, :, None] + 1.0) / (extent_y[:, None, None] + 1.0)
        x = (np.arange(W)[None, None, :] + 1.0) / (extent_x[:, None, None] + 1.0)
        y, x = np.broadcast_to(y, mask.shape), np.broadcast_to(x, mask.shape)
        out = np.stack([x, y, np.sin(np.pi * x), np.sin(np.pi * y)], axis=-1)
        return np.where(mask[..., None], out, 0.0)

    def layout(self, features, centre=2):
        """(N, C + 1, H, W) features on each box's grid with a mask channel, and each box's scale (N,).

        The scale s_i is the mean of the box's centre entries; the features are divided by it, so that
        they do not change when A is multiplied by a constant (the factors take it back, ``factors``).
        """
        mask, position = self.mask, self.position
        grid = np.where(mask[..., None], features[self.rows], 0.0)
        scale = grid[..., centre].sum(axis=(1, 2)) / mask.sum(axis=(1, 2))
        grid = grid / scale[:, None, None, None]
        return np.concatenate([grid, mask[..., None], position], axis=-1).transpose(0, 3, 1, 2), scale


class Generator(nn.Module):
    """G_theta: a small convolutional network on a box's grid, shared by all subdomains.

    ``depth`` 3x3 convolutions of ``width`` channels with GELU between them,
    then a 1x1 convolution to the rank r: its receptive field covers
    2 depth + 1 nodes across, which is the box's width and overlap here.
    It computes in its weights' ``dtype`` and answers in its input's: a
    float32 generator (GENERATOR_DTYPES) serves a float64 operator, whose
    factors it only has to point at.
    """

    def __init__(self, channels, r, width=32, depth=4, dtype=torch.float64):
        super().__init__()
        layers, c = [], channels
        for _ in range(depth):  # made in ``dtype`` (not the ambient default): the same weights from a seed
            layers += [nn.Conv2d(c, width, 3, padding=1, dtype=dtype), nn.GELU()]
            c = width
        layers.append(nn.Conv2d(c, r, 1, dtype=dtype))
        with torch.no_grad():  # start near Q = 0: M(A)^-1 then begins as the coarse term and omega D^-1,
            layers[-1].weight.mul_(0.01)  # a convergent iteration, which unrolled training can take from there
            layers[-1].bias.zero_()
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        # the float32 convolutions run about 4x faster than float64 on a CPU (2 threads, 8 x 8 boxes)
        return self.net(x.to(self.net[0].weight.dtype)).to(x.dtype)


LOCAL_FORMS = ("direct", "ritz")
GENERATOR_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def generated_factors(generator, features, scale, slots, r, h, local="direct", ritz_rank=None):
    """Q (N, L, r) on each box, gathered from its grid to its sorted nodes.

    ``local`` 'direct': Q_i = h G(X_i) / sqrt(s_i). 'ritz': the first ``ritz_rank`` (default r) columns
    span a subspace V_i = S + G(X_i) (S: the box's lowest sine products, :func:`sines`) on which A_i^-1
    is approximated by Rayleigh-Ritz, Q_i Q_i^T = V_i (V_i^T A_i V_i)^-1 V_i^T: the best approximation
    of A_i^-1 from that subspace in A_i's energy, which the network only has to point at (truncated
    Schwarz is the case V_i = A_i^-1's leading eigenvectors). Columns past ``ritz_rank`` stay direct.
    Either way A -> c A gives M^-1 -> M^-1 / c.
    """
    G = generator(features)                                            # (N, r, H, W)
    if local == "ritz":
        k = r if ritz_rank is None else ritz_rank
        mask = features[:, StencilFeatures.OFFSETS:StencilFeatures.OFFSETS + 1]
        V = (G[:, :k] + sines(features, k)) * mask
        G = torch.cat([ritz_factors(V, features[:, :StencilFeatures.OFFSETS]), G[:, k:]], dim=1)
    elif local != "direct":
        raise ValueError(f"unknown local form {local!r}; use one of {LOCAL_FORMS}")
    Q = G.flatten(2).transpose(1, 2)                                   # (N, H W, r)
    Q = torch.gather(Q, 1, slots[..., None].expand(-1, -1, r))         # (N, L, r)
    return Q * (h / scale.sqrt())[:, None, None]


def factor_scale(local, grid):
    """The h that :func:`generated_factors` takes on ``grid``: 1 / (max(nx, ny) + 1) for the direct form
    (the stored models' convention), sqrt(h_x h_y) for Rayleigh-Ritz (exactly A_i's scale: the features
    hold A's entries times h_x h_y)."""
    nx, ny = (int(g) for g in grid)
    return 1.0 / (max(nx, ny) + 1) if local == "direct" else 1.0 / np.sqrt((nx + 1.0) * (ny + 1.0))


def sines(features, k):
    """(N, k, H, W): the k products sin(a pi x) sin(b pi y) of lowest (a / w)^2 + (b / h)^2 on each w x h
    box (x, y in (0, 1) across the box: the position channels), the eigenvectors of a box's 5-point
    Laplacian with Dirichlet edges that belong to its k smallest eigenvalues."""
    x = features[:, StencilFeatures.OFFSETS + 1:StencilFeatures.OFFSETS + 2]
    y = features[:, StencilFeatures.OFFSETS + 2:StencilFeatures.OFFSETS + 3]
    mask = features[:, StencilFeatures.OFFSETS:StencilFeatures.OFFSETS + 1]
    w, h = mask.amax(dim=2).sum(dim=(1, 2)), mask.amax(dim=3).sum(dim=(1, 2))     # (N,) box extents
    pairs = torch.tensor([(a, b) for a in range(1, k + 1) for b in range(1, k + 1)], dtype=x.dtype)
    lowest = ((pairs[None, :, 0] / w[:, None]) ** 2 + (pairs[None, :, 1] / h[:, None]) ** 2)
    # ties (a square box's (1, 2) and (2, 1)) broken alike on every box and rank: by the pair's order
    lowest = lowest + torch.arange(len(pairs), dtype=x.dtype) * 1e-9 * lowest.amin(dim=1, keepdim=True)
    chosen = pairs[torch.argsort(lowest, dim=1)[:, :k]]                               # (N, k, 2)
    a, b = chosen[..., 0, None, None], chosen[..., 1, None, None]
    return torch.sin(a * np.pi * x) * torch.sin(b * np.pi * y)


def stencil_product(stencil, V):
    """A_i V on each box's grid: (N, 5, H, W) stencil entries (S, W, centre, E, N; zero outside the box
    and the grid) times V (N, k, H, W), zero outside the box; neighbours outside the box are dropped,
    which is R_i A R_i^T."""
    P = torch.nn.functional.pad(V, (1, 1, 1, 1))
    S, W, C, E, N = (stencil[:, j:j + 1] for j in range(5))
    return (C * V + S * P[..., :-2, 1:-1] + N * P[..., 2:, 1:-1] + W * P[..., 1:-1, :-2] + E * P[..., 1:-1, 2:])


def ritz_factors(V, stencil):
    """F = V L^-T with L L^T = V^T A_i V (per box): F F^T = V (V^T A_i V)^-1 V^T. A shift of eps times
    the trace (the rounding of G itself) keeps the Cholesky defined where V has dependent columns (their
    span adds nothing: V c = 0 there); it changes F F^T by at most about k eps kappa(G)."""
    N, k = V.shape[:2]
    flat = V.flatten(2)                                                # (N, k, H W)
    G = flat @ stencil_product(stencil, V).flatten(2).transpose(1, 2)  # (N, k, k)
    G = 0.5 * (G + G.transpose(1, 2))
    shift = torch.finfo(G.dtype).eps * G.diagonal(dim1=1, dim2=2).sum(-1).abs().clamp_min(1e-300)
    L = torch.linalg.cholesky(G + shift[:, None, None] * torch.eye(k, dtype=G.dtype))
    return torch.linalg.solve_triangular(L, flat, upper=False).reshape(V.shape)


class CoarseStencilFeatures:
    """A_0's 9-point stencil on the (nx0, ny0) grid of box corners (the Q1 space), as a network's input.

    Structure (from A_0's pattern, once): the channel of each stored entry by its offset; a pattern with an
    entry farther than one corner away is refused. Values: (1, 9 + 4, ny0, nx0) features, the entries
    divided by A_0's mean diagonal s_0 (so that they do not change with a constant times A), with each
    corner's place on the grid (x, y in (0, 1), sin(pi x), sin(pi y)), and s_0.
    """

    CHANNELS = 9 + 4

    def __init__(self, pattern, grid):
        nx, ny = (int(g) for g in grid)
        rows = np.repeat(np.arange(pattern.shape[0]), np.diff(pattern.indptr))
        dx, dy = pattern.indices % nx - rows % nx, pattern.indices // nx - rows // nx
        if tuple(pattern.shape) != (nx * ny, nx * ny) or (np.abs(dx) > 1).any() or (np.abs(dy) > 1).any():
            raise ValueError(f"a generated coarse block needs A_0 as a 9-point stencil on the {nx}x{ny} grid of "
                             "box corners (the q1 coarse space)")
        self.grid, self.slot = (nx, ny), rows * 9 + (dy + 1) * 3 + (dx + 1)
        x, y = (np.arange(nx) + 1.0) / (nx + 1), (np.arange(ny) + 1.0) / (ny + 1)
        X, Y = np.meshgrid(x, y)
        self.position = np.stack([X, Y, np.sin(np.pi * X), np.sin(np.pi * Y)])

    def __call__(self, data):
        """(features (1, 13, ny0, nx0), s_0) of A_0's entries ``data`` (in the pattern's order)."""
        nx, ny = self.grid
        out = np.zeros(nx * ny * 9)
        out[self.slot] = np.asarray(data)
        out = out.reshape(ny, nx, 9).transpose(2, 0, 1)
        scale = float(out[4].mean())
        return np.concatenate([out / scale, self.position])[None], scale


def generated_coarse_block(generator, features, scale):
    """Q_0 (n_0, r_0) = G_0(X_0) / sqrt(s_0), corners in A_0's order (row-major on the corner grid)."""
    return generator(features)[0].flatten(1).T / np.sqrt(scale)
