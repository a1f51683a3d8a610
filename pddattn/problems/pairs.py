"""The user's own data: pairs (f, u) from a file, with no matrix needed.

    pairs.npz      arrays ``f`` and ``u``, shape (samples, n) or (samples, ny, nx)
                   in the grid's natural order (x fastest); optional ``f_test``
                   and ``u_test``, else a held-out split (``test_fraction``,
                   fixed by the seed)
    folder/        ``f.npy`` and ``u.npy`` (optional ``f_test.npy``, ``u_test.npy``),
                   read memory-mapped: a rank reads only its own nodes' columns

    >>> pairs = load_pairs("pairs.npz", test_fraction=0.1, seed=0)
    >>> pairs.grid, pairs.train_count, pairs.test_count
    ((63, 63), 900, 100)

:class:`PairsSampler` serves them to training as the built-in samplers do
(``coefficients`` are sample indices, ``evaluate_rows`` reads the rank's
nodes), so batches are a function of (seed, step) alone, as for made data.
Every bad input is a one-line ValueError before anything is trained.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..regression import data_gram, map_norm
from .families import file_sha256
from .samplers import DATA_KINDS

__all__ = ["PairsData", "PairsSampler", "load_pairs", "is_data_file"]

_CHUNK_VALUES = 1 << 22  # values read at a time when checking a memory-mapped file


def is_data_file(value):
    """True when a --data value names a file or folder rather than a built-in data kind."""
    return bool(value) and value not in DATA_KINDS


def _read_arrays(path):
    """{name: array} of a .npz (loaded) or a folder of .npy files (memory-mapped)."""
    path = Path(path)
    if path.is_dir():
        names = [p.stem for p in sorted(path.glob("*.npy")) if p.stem in ("f", "u", "f_test", "u_test")]
        try:
            return {k: np.load(path / f"{k}.npy", mmap_mode="r", allow_pickle=False) for k in names}
        except (ValueError, OSError) as exc:
            raise ValueError(f"cannot read the .npy files in {path}: {exc}") from None
    if not path.is_file():
        raise ValueError(f"--data {path}: no such file or folder (give a data kind: fourier, probe, solve, or a "
                         f"pairs .npz / a folder with f.npy and u.npy)")
    if not zipfile.is_zipfile(path):  # np.load would call it "pickled data"
        raise ValueError(f"cannot read {path}: it is not a .npz archive (numpy.savez) of arrays f and u, nor "
                         "a folder of f.npy and u.npy")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # numpy raises several kinds for a file that is not an .npz
        raise ValueError(f"cannot read {path} as a .npz of arrays f and u: {exc}") from None


def _flat(name, a, source):
    """(samples, n) view and the grid of an array (samples, n) or (samples, ny, nx)."""
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{source}: {name} has dtype {a.dtype}; f and u must be real numbers")
    if a.ndim == 2:
        return a, (a.shape[1],)
    if a.ndim == 3:
        return a.reshape(a.shape[0], -1), (a.shape[2], a.shape[1])
    raise ValueError(f"{source}: {name} has shape {a.shape}; expected (samples, n) or (samples, ny, nx)")


def _sha256(path):
    """SHA-256 of a file, or of a folder's .npy files in name order (streamed)."""
    path = Path(path)
    return file_sha256(*(sorted(path.glob("*.npy")) if path.is_dir() else [path]))


class PairsData:
    """Training and test pairs (f, u) on a grid, read by node.

    Attributes
    ----------
    path : str
    sha256 : str
    grid : tuple of int
        (n,) or (nx, ny).
    train, test : ndarray of int
        Sample indices of the training pairs (in ``f``) and the test pairs
        (in ``f_test`` when given, else in ``f``).
    """

    def __init__(self, path, grid=None, test_fraction=0.1, seed=0):
        self.path, source = str(path), str(path)
        arrays = _read_arrays(path)
        missing = [k for k in ("f", "u") if k not in arrays]
        if missing:
            raise ValueError(f"{source} has no array {' or '.join(missing)} (it holds {sorted(arrays) or 'none'}); "
                             f"pairs need f and u")
        if ("f_test" in arrays) != ("u_test" in arrays):
            raise ValueError(f"{source} has only one of f_test and u_test; give both or neither")
        shaped = {k: _flat(k, a, source) for k, a in arrays.items()}
        flat, self.grid = {k: v[0] for k, v in shaped.items()}, shaped["f"][1]
        self._check_shapes(arrays, source)
        self.grid = self._grid(grid, source)
        self.arrays = flat
        self.sha256 = _sha256(path)
        self._split(test_fraction, seed, source)

    @staticmethod
    def _check_shapes(arrays, source):
        for a, b in (("f", "u"), ("f_test", "u_test"), ("f", "f_test")):
            if a not in arrays or b not in arrays:
                continue
            same = arrays[a].shape == arrays[b].shape if a[0] != b[0] else arrays[a].shape[1:] == arrays[b].shape[1:]
            if not same:
                raise ValueError(f"{source}: {a} has shape {arrays[a].shape} but {b} {arrays[b].shape}; "
                                 f"they must agree")

    def _grid(self, grid, source):
        n = int(np.prod(self.grid))
        if grid is None:
            return self.grid
        grid = tuple(int(g) for g in grid)
        if int(np.prod(grid)) != n:
            raise ValueError(f"--grid {'x'.join(map(str, grid))} has {int(np.prod(grid))} nodes, but the pairs in "
                             f"{source} have {n}")
        if len(self.grid) == 2 and grid != self.grid:
            raise ValueError(f"--grid {'x'.join(map(str, grid))} does not match the pairs' grid "
                             f"{'x'.join(map(str, self.grid))} in {source} (arrays are (samples, ny, nx))")
        return grid

    def _split(self, fraction, seed, source):
        count = self.arrays["f"].shape[0]
        if "f_test" in self.arrays:
            if count < 1 or self.arrays["f_test"].shape[0] < 1:
                raise ValueError(f"{source} needs at least one training pair and one test pair")
            self.train, self.test = np.arange(count), np.arange(self.arrays["f_test"].shape[0])
            return
        if not 0 < fraction < 1:
            raise ValueError(f"--test-fraction must be in (0, 1), got {fraction}")
        held = int(round(fraction * count))
        if held < 1 or count - held < 1:
            raise ValueError(f"{source} has {count} pairs: too few for a test fraction of {fraction} (it needs "
                             f"at least one test and one training pair); add pairs or give f_test and u_test")
        order = np.random.default_rng([int(seed), 0x5A17]).permutation(count)
        self.train, self.test = np.sort(order[held:]), np.sort(order[:held])

    @property
    def n(self):
        return int(np.prod(self.grid))

    @property
    def train_count(self):
        return len(self.train)

    @property
    def test_count(self):
        return len(self.test)

    def read(self, which, samples, rows):
        """(f, u) float64 of shape (len(samples), len(rows)): pairs ``samples`` of ``which`` at nodes ``rows``."""
        f, u = ("f", "u") if which == "train" or "f_test" not in self.arrays else ("f_test", "u_test")
        index = (self.train if which == "train" else self.test)[np.asarray(samples, dtype=np.int64)]
        order = np.argsort(index, kind="stable")  # increasing offsets: sequential reads of a memory map
        out = []
        for k in (f, u):
            block = np.empty((len(index), len(rows)))
            # One fancy index on both axes: a memory map is touched only at these samples' ``rows``
            # (indexing the samples first would read every node of them).
            block[order] = self.arrays[k][np.ix_(index[order], np.asarray(rows))] if len(rows) else 0.0
            out.append(block)
        return tuple(out)

    def first_bad(self, rows):
        """(array, sample) of the first NaN or inf at nodes ``rows``, or None (chunked reads)."""
        for k, a in self.arrays.items():
            step = max(1, _CHUNK_VALUES // max(len(rows), 1))
            for lo in range(0, a.shape[0], step):
                ok = np.isfinite(a[lo:lo + step][:, rows]).all(axis=1)
                if not ok.all():
                    return k, lo + int(np.argmin(ok))
        return None

    def squared_norms(self, rows):
        """{name: sum over ``rows`` of u^2, per sample} of u (and u_test): summed over ranks, zero marks a u = 0."""
        out = {}
        for k in ("u", "u_test"):
            if k in self.arrays:
                a = self.arrays[k]
                step = max(1, _CHUNK_VALUES // max(len(rows), 1))
                out[k] = np.concatenate([np.square(np.asarray(a[lo:lo + step][:, rows], dtype=np.float64)).sum(1)
                                         for lo in range(0, a.shape[0], step)])
        return out

    def gain(self, count=256):
        """An estimate of ||A^-1||_2 from the data: the largest singular value of U F^+ on ``count`` pairs.

        The map the pairs define on their span; the scale of the factors and of
        their learning rates when there is no matrix. Every rank computes the
        same value from the same pairs.
        """
        if not hasattr(self, "_gain"):
            take = np.arange(min(count, self.train_count))
            F, U = self.read("train", take, np.arange(self.n))
            for name, block in (("f", F), ("u", U)):  # before their spectrum: one line, not LAPACK's
                finite = np.isfinite(block).all(axis=1)
                if not finite.all():
                    raise ValueError(f"--data {self.path}: {name} holds a NaN or inf (sample "
                                     f"{self.train[take[np.argmin(finite)]]}); the pairs must be finite")
            self._gain = map_norm(data_gram(F.T, U.T))
            if not self._gain > 0:
                raise ValueError(f"--data {self.path}: u is zero on the first {len(take)} training pairs; "
                                 "relative errors need u != 0")
        return self._gain

    def describe(self):
        return {"path": self.path, "sha256": self.sha256, "grid": list(self.grid), "train": self.train_count,
                "test": self.test_count, "split": "given" if "f_test" in self.arrays else "held out"}


def load_pairs(path, grid=None, test_fraction=0.1, seed=0):
    """A :class:`PairsData` (cached per file, grid, split): every bad input is a one-line ValueError."""
    key = (str(Path(path).resolve()), tuple(grid) if grid else None, float(test_fraction), int(seed))
    if key not in _CACHE:
        _CACHE.clear()  # one data set per run is the common case: keep memory bounded
        _CACHE[key] = PairsData(path, grid, test_fraction, seed)
    return _CACHE[key]


_CACHE = {}


class PairsSampler:
    """Batches of the user's training pairs and the test pairs, as the built-in samplers serve them.

    ``coefficients(count, stream, index)`` are sample indices: stream 0 (training)
    draws ``count`` training pairs for step ``index`` (without replacement
    where the set is large enough), a function of (seed, step) alone; stream 1
    (test) is the whole test set.
    """

    def __init__(self, pairs, seed=0):
        self.pairs, self.seed, self.n = pairs, int(seed), pairs.n

    def coefficients(self, count, stream=0, index=0):
        if stream == 1:
            return Samples("test", np.arange(self.pairs.test_count))
        rng = np.random.default_rng([self.seed, stream, index, 0x5A17])
        total = self.pairs.train_count
        return Samples("train", rng.choice(total, size=count, replace=count > total))

    def evaluate_rows(self, coef, rows, comm=None):
        return self.pairs.read(coef.which, coef.index, rows)

    def evaluate(self, coef, lo=0, hi=None):
        return self.evaluate_rows(coef, np.arange(lo, self.n if hi is None else hi))


class Samples:
    """Which pairs a batch holds: the set (train or test) and indices into it; slices as an array."""

    def __init__(self, which, index):
        self.which, self.index = which, np.asarray(index, dtype=np.int64)

    def __len__(self):
        return len(self.index)

    def __getitem__(self, part):
        return Samples(self.which, self.index[part])
