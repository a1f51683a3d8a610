"""Problem families: the matrix A (scipy CSR) with its grid and the spec that rebuilds it.

Dirichlet boundary, interior nodes only, mesh width h = 1 / (n + 1) per axis.

    laplace1d     A = h^-2 tridiag(-1, 2, -1)
    diffusion1d   -(k u')' with k at cell midpoints:
                  A_jj = (k_{j-1/2} + k_{j+1/2}) / h^2,  A_{j,j+-1} = -k_{j+-1/2} / h^2
    poisson2d     5-point Laplacian on nx x ny nodes, node (i, j) has index j nx + i
    diffusion2d   -div(k grad u), 5-point, k at edge midpoints (the 1D rule per axis)
    matrix        a user's SPD matrix from a PETSc binary Mat file or a scipy .npz

    >>> p = make_problem("diffusion2d", grid=(63, 63), coefficient="jump:1e4")
    >>> p.A.shape, p.spec()["coefficient"]
    ((3969, 3969), 'jump:1e4')
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from .coefficients import coefficient_field, parse_coefficient
from .spectra import smallest_eigenpairs
from .stencils import stencil_rows

__all__ = ["FAMILIES", "Problem", "principal_block", "block_diagonal", "make_problem", "problem_from_spec", "parse_grid", "read_matrix",
           "write_petsc_binary", "check_spd", "matrix_header", "matrix_shape", "file_sha256",
           "unread_matrix_problem"]

FAMILIES = ("laplace1d", "diffusion1d", "poisson2d", "diffusion2d", "matrix", "data")
_PETSC_MAT_CLASSID = 1211216


def parse_grid(text):
    """'1023' -> (1023,), '127x127' -> (127, 127); ValueError otherwise."""
    if isinstance(text, (tuple, list)):
        parts = list(text)
    else:
        parts = str(text).lower().split("x")
    try:
        grid = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"grid must look like 1023 or 127x127, got {text!r}") from None
    if not 1 <= len(grid) <= 2 or min(grid) < 1:
        raise ValueError(f"grid must be 1 or 2 positive sizes (1023 or 127x127), got {text!r}")
    return grid


def read_matrix(path):
    """A sparse matrix from a scipy .npz or a PETSc binary Mat file (serial reader)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no matrix file at {path}")
    if path.suffix == ".npz":
        try:
            return sp.load_npz(path).tocsr()
        except Exception as exc:  # scipy raises several kinds for a bad file
            raise ValueError(f"cannot read {path} as a scipy sparse .npz: {exc}") from None
    raw = path.read_bytes()
    header = np.frombuffer(raw[:16], dtype=">i4") if len(raw) >= 16 else np.zeros(0)
    if len(header) < 4 or header[0] != _PETSC_MAT_CLASSID:
        raise ValueError(f"{path} is neither a scipy .npz nor a PETSc binary Mat file")
    m, n, nnz = (int(v) for v in header[1:])
    try:
        offset = 16
        lengths = np.frombuffer(raw, ">i4", m, offset)
        offset += 4 * m
        cols = np.frombuffer(raw, ">i4", nnz, offset)
        vals = np.frombuffer(raw, ">f8", nnz, offset + 4 * nnz)
    except ValueError:
        raise ValueError(f"{path} is a truncated PETSc binary Mat file") from None
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    return sp.csr_matrix((vals.astype(np.float64), cols.astype(np.int64), indptr), shape=(m, n))


def matrix_header(path):
    """(rows, columns, nonzeros) from a PETSc binary Mat file's 16-byte header; None for any other file."""
    with open(path, "rb") as fh:
        header = np.frombuffer(fh.read(16), dtype=">i4")
    if len(header) < 4 or header[0] != _PETSC_MAT_CLASSID:
        return None
    return tuple(int(v) for v in header[1:])


def matrix_shape(path):
    """(rows, columns) of a PETSc binary Mat file or a scipy .npz, read without the matrix; None otherwise.

    An .npz is a zip of arrays that numpy opens lazily: only its ``shape`` member is read.
    """
    header = matrix_header(path)
    if header is not None:
        return header[:2]
    if Path(path).suffix != ".npz":
        return None
    try:
        with np.load(path) as members:
            return tuple(int(v) for v in members["shape"])
    except Exception:  # not a zip, no shape member, ...: not a matrix this reads
        return None


def file_sha256(*paths, chunk=1 << 24):
    """SHA-256 of a file (or of several, one after the other), read in chunks (no copy in memory)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(chunk), b""):
                digest.update(block)
    return digest.hexdigest()


def unread_matrix_problem(path, grid=None, seed=0):
    """A Problem of a matrix file (PETSc binary or scipy .npz) of which only the shape is read.

    For callers that read their own rows (petsc.matrices.mat_read: PETSc's
    MatLoad, each rank its rows, or an .npz sent out from rank 0): nothing of
    A is in memory and its SPD check is the Krylov method's; ``problem.A``
    still reads the whole file on first use.
    """
    shape = matrix_shape(path)
    if shape is None:
        raise ValueError(f"{path} is neither a PETSc binary Mat file nor a scipy .npz")
    m, n = shape
    if m != n:
        raise ValueError(f"the matrix in {path} is {m} x {n}; an SPD operator is square")
    if grid is not None and int(np.prod(grid)) != n:
        raise ValueError(f"grid {grid} has {int(np.prod(grid))} nodes, the matrix {n} rows")
    return Problem("matrix", tuple(grid) if grid is not None else (n,), "const", int(seed), None, str(path),
                   file_sha256(path))


def write_petsc_binary(A, path):
    """Write a CSR matrix in PETSc's binary Mat format (readable by MatLoad)."""
    A = sp.csr_matrix(A)
    with open(path, "wb") as fh:
        fh.write(np.array([_PETSC_MAT_CLASSID, *A.shape, A.nnz], ">i4").tobytes())
        fh.write(np.diff(A.indptr).astype(">i4").tobytes())
        fh.write(A.indices.astype(">i4").tobytes())
        fh.write(A.data.astype(">f8").tobytes())


def check_spd(A, name="the matrix"):
    """Raise ValueError unless A is square, symmetric and positive definite; return its LU.

    Symmetric-mode LU without off-diagonal pivoting is an LDL^T, so A is SPD
    iff every pivot is positive. The factorization is kept for solves.
    """
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"{name} is not square: shape {A.shape}")
    asym = abs(A - A.T).max() if A.nnz else 0.0
    if asym > 1e-12 * abs(A).max():
        raise ValueError(f"{name} is not symmetric (max |A - A^T| = {asym:.3g})")
    try:
        lu = splu(sp.csc_matrix(A), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                  options={"SymmetricMode": True})
    except RuntimeError:
        raise ValueError(f"{name} is singular, not positive definite") from None
    if not (lu.U.diagonal() > 0).all() or (lu.perm_r != lu.perm_c).any():
        raise ValueError(f"{name} is not positive definite")
    return lu


def principal_block(rows, nodes):
    """The columns ``nodes`` (sorted) of ``rows`` = A[nodes]: R A R^T as CSR, by a sorted search.

    O(nnz of the rows); scipy's column slicing costs O(n) per call.
    """
    rows = sp.csr_matrix(rows).tocoo()
    if not len(nodes):
        return sp.csr_matrix((0, 0))
    where = np.minimum(np.searchsorted(nodes, rows.col), len(nodes) - 1)
    keep = nodes[where] == rows.col
    return sp.csr_matrix((rows.data[keep], (rows.row[keep], where[keep])), shape=(len(nodes), len(nodes)))


def block_diagonal(rows_of, subdomains):
    """diag(R_i A R_i^T) over sorted node sets, CSR (symmetric, so its CSC too), from one extraction of rows.

    ``rows_of(nodes)`` gives A's rows ``nodes`` (a Problem's ``rows``, or a
    matrix's row slice). Row k of the stacked copies (node v of subdomain s)
    keeps A's entries (v, c) with c in subdomain s, found by one sorted
    search of the keys s n + c among the stacked keys s n + v. The same
    matrix as ``sp.block_diag`` of the blocks, without a loop over them; the
    kept entries are already in row order with sorted columns, so the CSR
    arrays are written directly (no COO sort: 40 ms of 60 at 255^2).
    """
    sizes = np.array([len(s) for s in subdomains], dtype=np.int64)
    if not sizes.sum():
        return sp.csr_matrix((0, 0))
    nodes = np.concatenate(subdomains)
    owner = np.repeat(np.arange(len(subdomains)), sizes)
    unique, inverse = np.unique(nodes, return_inverse=True)
    rows = sp.csr_matrix(rows_of(unique))
    rows.sort_indices()
    rows = rows[inverse.ravel()]
    row = np.repeat(np.arange(len(nodes)), np.diff(rows.indptr))
    width = max(int(rows.shape[1]), int(unique[-1]) + 1)
    stacked = owner * width + nodes                   # sorted: subdomains in order, each sorted
    key = owner[row] * width + rows.indices
    where = np.minimum(np.searchsorted(stacked, key), len(stacked) - 1)
    keep = stacked[where] == key
    indptr = np.concatenate([[0], np.cumsum(np.bincount(row[keep], minlength=len(nodes)))])
    return sp.csr_matrix((rows.data[keep], where[keep], indptr), shape=(len(nodes), len(nodes)))


@dataclasses.dataclass
class Problem:
    """An SPD operator A with the spec that rebuilds it.

    Attributes
    ----------
    family : str
    grid : tuple of int
        (n,) or (nx, ny); for a matrix file the given shape, else (n,).
    coefficient : str
    seed : int
        Seed of random coefficient fields.
    A : scipy.sparse.csr_matrix
        The whole matrix, assembled on first use for a family (a rank that
        needs only some rows asks :meth:`rows`).
    matrix : str or None
        Path of the matrix file; ``checksum`` its SHA-256.
    stencil : callable, optional
        rows -> CSR rows of A, for the families (stencils.stencil_rows).
    """

    family: str
    grid: tuple
    coefficient: str
    seed: int
    _A: sp.csr_matrix | None
    matrix: str | None = None
    checksum: str | None = None
    _factor: object = dataclasses.field(default=None, repr=False)
    stencil: object = dataclasses.field(default=None, repr=False)

    pairs: object = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def A(self):
        if self._A is None:
            self._A = read_matrix(self.matrix) if self.matrix else self._stencil()(np.arange(self.n))
        return self._A

    @property
    def has_operator(self):
        """False for family 'data': a grid and the user's pairs, no matrix."""
        return self.family != "data"

    def _stencil(self):
        if self.stencil is None:
            raise ValueError("this needs the matrix A, but the problem is the user's pairs alone (family 'data'); "
                             "give --problem and --grid (or --matrix) with --data to use A")
        return self.stencil

    @property
    def n(self):
        return int(np.prod(self.grid)) if self._A is None else self._A.shape[0]

    def rows(self, rows):
        """The rows ``rows`` (global indices) of A as CSR (len(rows), n), without the whole A if it is not built."""
        if self._A is None and (self.stencil is not None or not self.matrix):
            return self._stencil()(rows)
        return self.A[np.asarray(rows, dtype=np.int64)]

    @property
    def rows_only(self):
        """True for a matrix file whose rows this rank reads from its distributed copy (no whole A here)."""
        return self._A is None and self.matrix is not None and self.stencil is not None

    def block(self, nodes):
        """A restricted to the sorted ``nodes`` (rows and columns), R A R^T as CSR.

        Columns are matched by a sorted search, O(nnz of the rows), where
        scipy's column slicing costs O(n) per call.
        """
        nodes = np.asarray(nodes, dtype=np.int64)
        return principal_block(self.rows(nodes), nodes)

    @property
    def dim(self):
        return len(self.grid)

    @property
    def constant(self):
        """True when the eigenpairs are the closed-form products of sines."""
        return self.family in ("laplace1d", "poisson2d") or (
            self.family in ("diffusion1d", "diffusion2d") and self.coefficient == "const")

    def spec(self):
        """Plain data for checkpoints: enough to rebuild A (with the file for a matrix)."""
        return {"family": self.family, "grid": list(self.grid), "coefficient": self.coefficient,
                "seed": self.seed, "matrix": self.matrix, "checksum": self.checksum}

    def factor(self):
        """The sparse LDL^T of A, computed once (also proves A is SPD)."""
        if self._factor is None:
            self._factor = check_spd(self.A, self.matrix or f"the {self.family} matrix")
        return self._factor

    def solve(self, F):
        """A^-1 F for F of shape (n, B), with the cached factorization."""
        return self.factor().solve(np.asarray(F, dtype=np.float64))

    def smallest_eigenpairs(self, k):
        """The k smallest eigenvalues (ascending) and orthonormal eigenvectors (n, k) of A."""
        return smallest_eigenpairs(self, k)

    def __eq__(self, other):
        return isinstance(other, Problem) and self.spec() == other.spec()


def make_problem(family="laplace1d", grid=(1023,), coefficient="const", seed=0, matrix=None):
    """Build a Problem; every bad spec is a one-line ValueError."""
    if family not in FAMILIES:
        raise ValueError(f"unknown problem family {family!r}; choose one of {FAMILIES}")
    parse_coefficient(coefficient)
    if family == "data":
        if grid is None:
            raise ValueError("--problem data needs a grid: --grid, or the shape of the pairs in --data FILE")
        return Problem("data", parse_grid(grid), "const", int(seed), None)
    if family == "matrix" or matrix is not None:
        if matrix is None:
            raise ValueError("--problem matrix needs --matrix FILE")
        A = read_matrix(matrix)
        problem = Problem("matrix", (A.shape[0],), "const", int(seed), A, str(matrix), file_sha256(matrix))
        if grid is not None and tuple(grid) != (A.shape[0],):
            if int(np.prod(grid)) != A.shape[0]:
                raise ValueError(f"grid {grid} has {int(np.prod(grid))} nodes, the matrix {A.shape[0]} rows")
            problem.grid = tuple(grid)
        problem.factor()  # not SPD: refuse now, with one line
        return problem
    grid = parse_grid(grid)
    dim = 1 if family.endswith("1d") else 2
    if len(grid) != dim:
        raise ValueError(f"{family} needs a {'n' if dim == 1 else 'nx x ny'} grid, got {'x'.join(map(str, grid))}")
    if family in ("laplace1d", "poisson2d") and coefficient != "const":
        raise ValueError(f"{family} has a constant coefficient; use "
                         f"{'diffusion1d' if dim == 1 else 'diffusion2d'} for --coefficient {coefficient}")
    k = coefficient_field(coefficient, seed, dim)
    return Problem(family, grid, coefficient, int(seed), None, stencil=lambda rows: stencil_rows(grid, k, rows))


def spec_label(spec):
    """A short one-line name of a problem spec (what `pddattn solve` names its PETSc Mat)."""
    grid = "x".join(map(str, spec["grid"]))
    label = f"{spec['family']} {grid} {spec['coefficient']} seed={spec['seed']}"
    return label + (f" sha256={spec['checksum'][:16]}" if spec.get("checksum") else "")


def operator_problem(A, grid=None):
    """A matrix handed over in memory (a PETSc PC's operator) as a Problem, identified by its values."""
    A = sp.csr_matrix(A)
    digest = hashlib.sha256()
    for part in (A.indptr, A.indices, A.data):
        digest.update(np.ascontiguousarray(part).tobytes())
    grid = tuple(grid) if grid else (A.shape[0],)
    return Problem("operator", grid, "const", 0, A, None, digest.hexdigest())


def problem_from_spec(spec):
    """Rebuild a Problem from ``Problem.spec()``; a matrix file must match its checksum."""
    if spec["family"] == "operator":
        raise ValueError("the model was built from an operator handed to a PETSc PC (no file to rebuild it from)")
    problem = make_problem(spec["family"], tuple(spec["grid"]), spec["coefficient"], spec["seed"],
                           spec.get("matrix"))
    if spec.get("checksum") and problem.checksum != spec["checksum"]:
        raise ValueError(f"the matrix file {spec['matrix']} has changed since the model was trained "
                         "(SHA-256 differs)")
    return problem
