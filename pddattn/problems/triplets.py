"""A user's own family: coefficient fields with right-hand sides and solutions, ``--data triplets.npz``.

The file holds arrays ``a`` (B, s, s), ``f`` (B, s, s) and, optionally,
``u`` (B, s, s): the FNO data's convention (Li et al. 2021). Every array lives
on the *full* s x s grid of the unit square, the boundary ring included
(h = 1 / (s - 1)); u is 0 on the ring and the unknowns are the (s - 2)^2
interior nodes, numbered row by row (node (i, j), row i = y, column j = x,
is unknown (i - 1) (s - 2) + (j - 1)). The stencil reads a at the nodes:
the coefficient of the edge between two neighbouring nodes is the mean of
their two values, and

    (A u)_p = sum over p's 4 edges e = (p, q) of a_e (u_p - u_q) / h^2,

u_q = 0 on the ring (its edge still counts on the diagonal). f may also be
given as (B,) constants or left out (f = 1, as in the Darcy benchmark).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import scipy.sparse as sp

__all__ = ["Triplets", "read_triplets", "read_arrays", "operator_of_field"]


@dataclasses.dataclass
class Triplets:
    """Fields ``a`` (B, s, s), right-hand sides ``f`` (B, n) and solutions ``u`` (B, n) or None, interior only."""

    a: np.ndarray
    f: np.ndarray
    u: np.ndarray | None

    @property
    def side(self):
        return self.a.shape[1]

    @property
    def grid(self):
        return (self.side - 2, self.side - 2)

    def operators(self):
        """A of every field (scipy CSR), by :func:`operator_of_field`."""
        return [operator_of_field(a) for a in self.a]


def _interior(x, s, name, path):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[1:] != (s, s):
        raise ValueError(f"{path}: {name} has shape {x.shape}; it must be (samples, {s}, {s}) like a")
    return x[:, 1:-1, 1:-1].reshape(len(x), -1)


def read_arrays(path, split):
    """{name: array} of one split: an .npz's a, f, u (``test``: a_test, f_test, u_test), or an HDF5 file's
    group (``pddattn data darcy``), read with h5py."""
    if path.suffix in (".h5", ".hdf5"):
        import h5py
        with h5py.File(path, "r") as h5:
            if split not in h5:
                raise ValueError(f"{path} has no group {split!r} (it holds {sorted(h5)})")
            return {k: h5[split][k][()] for k in h5[split]}
    with np.load(path) as z:
        suffix = "" if split == "train" else f"_{split}"
        arrays = {k[: len(k) - len(suffix)] if suffix else k: z[k] for k in z.files if k.endswith(suffix)}
        arrays = {k: v for k, v in arrays.items() if k in ("a", "f", "u")}
    if split != "train" and not arrays:
        raise ValueError(f"{path} has no {split} split (arrays a_{split}, f_{split} and u_{split})")
    return arrays


def read_triplets(path, split="train"):
    """The triplets in ``path`` (.npz or .h5), checked: one line for a missing or misshapen array, NaN,
    a <= 0. ``split``: 'train' (an .npz's a, f, u) or 'test' (its a_test, f_test, u_test)."""
    path = Path(path)
    if path.suffix not in (".npz", ".h5", ".hdf5") or not path.is_file():
        raise ValueError(f"--data {path}: not a triplet file (an .npz or .h5 with arrays a, f and u)")
    arrays = read_arrays(path, split)
    if "a" not in arrays:
        raise ValueError(f"{path} has no array 'a' (the coefficient fields); it holds {sorted(arrays)}")
    a = np.asarray(arrays["a"], dtype=np.float64)
    if a.ndim != 3 or a.shape[1] != a.shape[2] or a.shape[1] < 3:
        raise ValueError(f"{path}: a has shape {a.shape}; it must be (samples, s, s) on the full s x s grid, s >= 3")
    s = a.shape[1]
    f = arrays.get("f")
    if f is None:
        f = np.ones((len(a), (s - 2) ** 2))
    elif np.ndim(f) == 1:
        f = np.repeat(np.asarray(f, dtype=np.float64)[:, None], (s - 2) ** 2, axis=1)
    else:
        f = _interior(f, s, "f", path)
    u = _interior(arrays["u"], s, "u", path) if "u" in arrays else None
    for name, x in (("a", a), ("f", f), ("u", u)):
        if x is not None and len(x) != len(a):
            raise ValueError(f"{path}: {name} has {len(x)} samples, a has {len(a)}")
        if x is not None and not np.isfinite(x).all():
            raise ValueError(f"{path}: {name} holds NaN or infinite values")
    if (a <= 0).any():
        raise ValueError(f"{path}: a must be positive everywhere (the diffusion coefficient); its minimum is "
                         f"{a.min():.3g}")
    return Triplets(a, f, u)


def operator_of_field(a):
    """The 5-point diffusion matrix (CSR, (s-2)^2 rows) of a field ``a`` (s, s) on the full grid."""
    a = np.asarray(a, dtype=np.float64)
    s = a.shape[0]
    m, h2 = s - 2, 1.0 / (s - 1) ** 2
    index = np.arange(m * m).reshape(m, m)
    centre = a[1:-1, 1:-1]
    diagonal = np.zeros((m, m))
    rows, cols, vals = [], [], []
    for di, dj in ((0, 1), (1, 0)):  # the east and north edges of every node with a grid point there
        edge = 0.5 * (a[1:-1, 1:-1] + a[1 + di:s - 1 + di, 1 + dj:s - 1 + dj]) / h2
        back = 0.5 * (centre + a[1 - di:s - 1 - di, 1 - dj:s - 1 - dj]) / h2
        diagonal += edge + back
        inner = edge[: m - di, : m - dj]
        p, q = index[: m - di, : m - dj].ravel(), index[di:, dj:].ravel()
        rows += [p, q]
        cols += [q, p]
        vals += [-inner.ravel(), -inner.ravel()]
    rows.append(index.ravel())
    cols.append(index.ravel())
    vals.append(diagonal.ravel())
    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m * m, m * m))
    A.sort_indices()
    return A
