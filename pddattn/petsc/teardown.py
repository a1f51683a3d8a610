"""Safe ends for users' programs: a live DDAttentionPC at interpreter exit, and our errors raised through PETSc.

Most petsc4py programs never destroy their KSP: the objects die with the
interpreter. petsc4py 3.18 then defers their destruction to PetscFinalize,
which runs after Python is gone, and PCReset of a Python PC calls back into
the dead interpreter: SEGV, ``MPI_ABORT ... errorcode 59``, and no
``-log_view`` (it is printed by PetscFinalize). Any Python PC does it. So
every live PC holding a DDAttentionPC is turned into ``PCNONE`` from an
``atexit`` hook, which runs while Python is still alive; PCSetType calls our
``destroy`` then, and PetscFinalize finds only C objects. The PC is reached
by its C handle (petsc4py has no wrapper-from-handle), never by a Python
wrapper, which would hold a reference and keep a destroyed KSP's PC alive.

An error that DDAttentionPC raises on every rank alike (a bad option, a
model of another matrix) ends a user's program with its one line,
``pddattn: error: ...``, printed once, and exit status 1; other exceptions
keep Python's traceback.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import sys
import traceback

from ..errors import CollectiveError, ConfigurationError

__all__ = ["register", "unregister", "detach_all", "live_handles", "abort_if_one_rank_fails"]

_live: dict[int, int] = {}  # id(context) -> PC handle


def register(context, pc):
    """Record that ``pc`` (a petsc4py PC) holds ``context``; idempotent."""
    _live[id(context)] = int(pc.handle)


def unregister(context):
    """Forget ``context`` (its PC is being destroyed or retyped)."""
    _live.pop(id(context), None)


def live_handles():
    """The C handles of the PCs that still hold a DDAttentionPC."""
    return sorted(set(_live.values()))


def detach_all():
    """Turn every live DDAttentionPC's PC into PCNONE while Python can still run its ``destroy``."""
    if not _live:
        return
    try:
        from petsc4py import PETSc
    except ImportError:
        return
    if not PETSc.Sys.isInitialized() or PETSc.Sys.isFinalized():
        _live.clear()
        return
    # dlsym on the extension module's handle searches its dependencies: libpetsc's PCSetType.
    # PyDLL keeps the GIL, which PCDestroy_Python needs to call our destroy.
    set_type = ctypes.PyDLL(PETSc.__file__).PCSetType
    set_type.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    for handle in live_handles():
        set_type(ctypes.c_void_p(handle), b"none")
    _live.clear()


@contextlib.contextmanager
def abort_if_one_rank_fails(comm):
    """Let errors raised on every rank alike pass; any other one ends the whole job (MPI_Abort).

    An unexpected exception (a bug, memory) is raised on one rank only; the
    others would wait for it in the next collective forever.
    """
    try:
        yield
    except CollectiveError:
        raise
    except Exception:
        if comm.Get_size() == 1:
            raise
        print(f"pddattn: DDAttentionPC failed on rank {comm.Get_rank()}; aborting all {comm.Get_size()} ranks",
              file=sys.stderr)
        traceback.print_exc()
        sys.stderr.flush()
        comm.Abort(1)


def _collective_error_hook(previous):
    def hook(kind, value, tb):
        if not isinstance(value, CollectiveError):
            return previous(kind, value, tb)
        if _world_rank() == 0:  # raised on every rank alike: one line is enough
            print(f"pddattn: error: {value}", file=sys.stderr)
            sys.stderr.flush()
    return hook


def _world_rank():
    """This process's rank in the world, from mpi4py or else petsc4py (a user's program may load only that)."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        return mpi.COMM_WORLD.Get_rank()
    petsc = sys.modules.get("petsc4py.PETSc")
    if petsc is not None and petsc.Sys.isInitialized() and not petsc.Sys.isFinalized():
        return petsc.COMM_WORLD.getRank()
    return 0


atexit.register(detach_all)
sys.excepthook = _collective_error_hook(sys.excepthook)


def unknown_pc(name, known):
    """A stand-in PC context for ``-pc_python_type NAME`` naming no class: a clean one-line error."""

    class UnknownPC:
        def create(self, pc):
            register(self, pc)  # so detach_all retypes the PC before PetscFinalize

        def destroy(self, pc):
            unregister(self)

        def setFromOptions(self, pc):
            raise ConfigurationError(f"-pc_python_type {name}: there is no such preconditioner; "
                                     f"pddattn's is pddattn.petsc.{known}")

        setUp = setFromOptions
    return UnknownPC
