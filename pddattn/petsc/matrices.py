"""PETSc matrices from scipy ones, and the operator PETSc hands a preconditioner as scipy.

A preconditioner that cannot be built from its rows (a stored model whose
problem cannot be rebuilt, the hat coarse space) brings A's graph and
values to every rank once: :func:`gather_operator`. Matrix files are read
per rank: :func:`mat_read`. With a DMDA the PETSc
ordering (process boxes) is turned into the grid's natural ordering (x
fastest), the one the decompositions use.
"""
from __future__ import annotations

import zlib

import numpy as np
import scipy.sparse as sp

from ..errors import CollectiveError
from ..problems.families import matrix_header, read_matrix

__all__ = ["petsc_matrix", "laplacian_matrix", "gather_operator", "operator_state", "dmda_grid", "mat_load",
           "mat_read"]


def _petsc():
    from petsc4py import PETSc
    return PETSc


def petsc_matrix(A, comm=None, ownership=None):
    """A scipy CSR matrix as a distributed PETSc AIJ matrix; each rank inserts its own rows."""
    PETSc = _petsc()
    comm = comm or PETSc.COMM_WORLD
    n = A.shape[0]
    if ownership is None:
        local, _ = PETSc.Sys.splitOwnership(n, comm=comm)
        rstart = comm.tompi4py().exscan(local) or 0
    else:
        rstart, local = ownership[0], ownership[1] - ownership[0]
    rows = A.tocsr()[rstart:rstart + local]
    rows.sort_indices()
    csr = (rows.indptr.astype(PETSc.IntType), rows.indices.astype(PETSc.IntType), rows.data.astype(PETSc.ScalarType))
    M = PETSc.Mat().createAIJ(((local, n), (local, n)), csr=csr, comm=comm)
    M.assemble()
    return M


def laplacian_matrix(n, comm=None, ownership=None):
    """A = h^-2 tridiag(-1, 2, -1) as a distributed AIJ matrix (PETSc's layout unless given)."""
    PETSc = _petsc()
    comm = comm or PETSc.COMM_WORLD
    local = PETSc.DECIDE if ownership is None else ownership[1] - ownership[0]
    A = PETSc.Mat().createAIJ(((local, n), (local, n)), nnz=(3, 2), comm=comm)
    h2 = float((n + 1) ** 2)
    rstart, rend = A.getOwnershipRange()
    for i in range(rstart, rend):
        cols = [j for j in (i - 1, i, i + 1) if 0 <= j < n]
        A.setValues(i, cols, [2.0 * h2 if j == i else -h2 for j in cols])
    A.assemble()
    return A


def dmda_grid(dm):
    """(nx, ny) or (n,) of a scalar DMDA, else None (no DM, another DM type, dof > 1, 3D)."""
    if dm is None or not dm.handle:
        return None
    try:
        if dm.getType() != "da" or dm.getDof() != 1 or dm.getDim() > 2:
            return None
    except Exception:  # a DMShell or a DM without these queries
        return None
    return tuple(int(s) for s in dm.getSizes())


def gather_operator(A, dm=None):
    """(A_natural as scipy CSR on every rank, petsc_of_natural, grid or None).

    A_natural[i, j] = A[petsc_of_natural[i], petsc_of_natural[j]]; without a
    DMDA the natural ordering is PETSc's own.
    """
    comm = A.getComm().tompi4py()
    n = A.getSize()[0]
    rstart, rend = A.getOwnershipRange()
    indptr, indices, values = A.getValuesCSR()
    parts = comm.allgather((rstart, np.asarray(indptr), np.asarray(indices), np.asarray(values)))
    rows = [sp.csr_matrix((v, j, p), shape=(len(p) - 1, n)) for _, p, j, v in sorted(parts, key=lambda t: t[0])]
    A_petsc = sp.vstack(rows).tocsr()
    grid = dmda_grid(dm)
    petsc_of_natural = np.arange(n)
    if grid is not None:
        ao = dm.getAO()
        petsc_of_natural = np.asarray(ao.app2petsc(np.arange(n, dtype=_petsc().IntType)), dtype=np.int64)
    A_nat = A_petsc[petsc_of_natural][:, petsc_of_natural].tocsr()
    A_nat.sort_indices()
    return A_nat, petsc_of_natural, grid


def operator_state(A):
    """A key that changes when A's size, pattern or values change (collective)."""
    indptr, indices, values = A.getValuesCSR()
    local = zlib.crc32(np.ascontiguousarray(values).tobytes(), zlib.crc32(np.ascontiguousarray(indices).tobytes()))
    return (A.getSize()[0], tuple(A.getComm().tompi4py().allgather(local)))


def mat_load(path, comm=None):
    """The PETSc binary Mat in ``path`` as a distributed AIJ matrix, rows split as PETSc does.

    Each rank reads its rows only (MatLoad); a file that is not a Mat or a
    matrix that is not symmetric is a CollectiveError on every rank.
    ``comm``: a petsc4py or mpi4py communicator (default COMM_WORLD).
    """
    PETSc = _petsc()
    comm = PETSc.COMM_WORLD if comm is None else PETSc.Comm(comm)
    viewer = PETSc.Viewer().createBinary(str(path), "r", comm=comm)
    A = PETSc.Mat().create(comm=comm)
    A.setType(PETSc.Mat.Type.AIJ)
    try:
        A.load(viewer)
    except PETSc.Error:
        raise CollectiveError(f"{path} could not be read as a PETSc binary Mat") from None
    finally:
        viewer.destroy()
    return _symmetric(A, path)


def mat_read(path, comm=None):
    """A matrix file as a distributed AIJ matrix, rows split as PETSc does.

    A PETSc binary Mat is read by MatLoad, each rank its rows. A scipy .npz
    has no per-row access (compressed arrays): rank 0 reads it and sends each
    rank its block of rows, so no other rank ever holds the whole A. Errors
    are CollectiveErrors on every rank.
    """
    if matrix_header(path) is not None:
        return mat_load(path, comm)
    PETSc = _petsc()
    comm = PETSc.COMM_WORLD if comm is None else PETSc.Comm(comm)
    mpi = comm.tompi4py()
    A, error = None, None
    if mpi.Get_rank() == 0:
        try:
            A = read_matrix(path)
            if A.shape[0] != A.shape[1]:
                error = f"the matrix in {path} is {A.shape[0]} x {A.shape[1]}; an SPD operator is square"
        except ValueError as exc:
            error = str(exc)
    error, n = mpi.bcast((error, None if A is None else A.shape[0]), root=0)
    if error:
        raise CollectiveError(error)
    local, _ = PETSc.Sys.splitOwnership(n, comm=comm)
    counts = mpi.gather(local, root=0)
    blocks = None
    if A is not None:
        starts = np.concatenate([[0], np.cumsum(counts)])
        blocks = [A[lo:hi] for lo, hi in zip(starts[:-1], starts[1:])]
        del A
    block = mpi.scatter(blocks, root=0)
    del blocks
    csr = (block.indptr.astype(PETSc.IntType), block.indices.astype(PETSc.IntType), block.data)
    P = PETSc.Mat().createAIJ(((local, n), (local, n)), csr=csr, comm=comm)
    P.assemble()
    return _symmetric(P, path)


def _symmetric(A, path):
    """A, unless it is not symmetric (then a CollectiveError on every rank)."""
    PETSc = _petsc()
    if not A.isSymmetric(1e-12 * max(A.norm(PETSc.NormType.INFINITY), 1e-300)):
        raise CollectiveError(f"the matrix in {path} is not symmetric; pddattn needs a symmetric positive definite operator")
    return A
