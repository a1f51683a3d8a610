"""Pairs (f, u) made elsewhere: an independent scipy solver, no pddattn, as a user's simulator would.

    python examples/make_pairs.py pairs.npz                 # 31 x 31 grid, 1,000 pairs
    python examples/make_pairs.py pairs.npz --grid 63x63 --samples 4000 --contrast 1e4

-div(k grad u) = f on the unit square, Dirichlet boundary, 5-point finite
differences on the interior nodes, k = contrast in a vertical channel and 1
elsewhere (harmonic means on the edges); f white noise. Writes arrays f and
u of shape (samples, ny, nx), x fastest, for `pddattn compare --data`.
"""
import argparse

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla


def channel_operator(nx, ny, contrast):
    """The 5-point matrix of -div(k grad u) with a channel of conductivity ``contrast`` at 0.4 < x < 0.6."""
    hx, hy = 1.0 / (nx + 1), 1.0 / (ny + 1)
    X, Y = np.meshgrid((np.arange(nx + 2)) * hx, (np.arange(ny + 2)) * hy)  # nodes with the boundary
    k = np.where((X > 0.4) & (X < 0.6), contrast, 1.0)
    kx = 2 * k[1:-1, :-1] * k[1:-1, 1:] / (k[1:-1, :-1] + k[1:-1, 1:])      # edges (i-1/2, j) per row
    ky = 2 * k[:-1, 1:-1] * k[1:, 1:-1] / (k[:-1, 1:-1] + k[1:, 1:-1])      # edges (i, j-1/2)
    idx = np.arange(nx * ny).reshape(ny, nx)
    diag = (kx[:, :-1] + kx[:, 1:]) / hx ** 2 + (ky[:-1, :] + ky[1:, :]) / hy ** 2
    rows, cols, vals = [idx.ravel()], [idx.ravel()], [diag.ravel()]
    west = -kx[:, 1:-1] / hx ** 2                                          # between (i-1, j) and (i, j)
    rows += [idx[:, 1:].ravel(), idx[:, :-1].ravel()]
    cols += [idx[:, :-1].ravel(), idx[:, 1:].ravel()]
    vals += [west.ravel(), west.ravel()]
    south = -ky[1:-1, :] / hy ** 2
    rows += [idx[1:, :].ravel(), idx[:-1, :].ravel()]
    cols += [idx[:-1, :].ravel(), idx[1:, :].ravel()]
    vals += [south.ravel(), south.ravel()]
    return sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(nx * ny, nx * ny))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--grid", default="31x31")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--contrast", type=float, default=100.0)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    nx, ny = (int(v) for v in args.grid.lower().split("x"))
    A = channel_operator(nx, ny, args.contrast)
    f = np.random.default_rng(args.seed).standard_normal((args.samples, nx * ny))
    u = sla.splu(A).solve(f.T).T
    np.savez(args.out, f=f.reshape(-1, ny, nx), u=u.reshape(-1, ny, nx))
    print(f"wrote {args.out}: {args.samples} pairs on a {nx}x{ny} grid, backward error "
          f"{np.abs(A @ u.T - f.T).max() / np.abs(f).max():.1e}")


if __name__ == "__main__":
    main()
