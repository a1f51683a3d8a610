"""What a training run will need in memory, estimated from its configuration before allocating.

The dominant terms are plain arithmetic on the configuration: the test set
and its generation (float64 spectral or sparse work per sample), one batch
and its activations, the factors with their gradients and Adam moments, the
index sets and the dense coarse block, and for the condition loss the
Lanczos vectors. Against it stands what this process
may use: the smallest of MemAvailable, the cgroup limit and RLIMIT_AS, shared
by the ranks on this node. A run that cannot fit is refused with one line
instead of failing minutes later in an allocator.
"""
from __future__ import annotations

import math
import os
import resource

from .errors import ConfigurationError
from .problems.pairs import is_data_file
from .spectrum import LANCZOS_STEPS

__all__ = ["estimate_bytes", "available_bytes", "check_memory", "format_bytes"]

_GENERATION_BYTES_PER_VALUE = 100  # float64 coefficients, FFT work, f and u, the tensor copy


def format_bytes(b):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if b < 1024 or unit == "PiB":
            return f"{b:.1f} {unit}" if unit != "B" else f"{int(b)} B"
        b /= 1024.0


def _nodes(cfg):
    if is_data_file(cfg.data.source) and cfg.problem.family == "data" and not cfg.problem.grid:
        return None  # the grid comes from the pairs' shape
    if cfg.problem.grid:
        try:
            return math.prod(int(v) for v in str(cfg.problem.grid).lower().split("x"))
        except ValueError:
            return None
    return None if cfg.problem.matrix else cfg.problem.n


def estimate_bytes(cfg):
    """{part: bytes} for the whole job (all ranks together), or {} when n is unknown (matrix file)."""
    n = _nodes(cfg)
    if not n:
        return {}
    size = 4 if cfg.run.dtype == "float32" else 8
    test = cfg.data.test_size * n * (2 * size + _GENERATION_BYTES_PER_VALUE)
    batch = cfg.optim.batch * n * (6 * size + _GENERATION_BYTES_PER_VALUE)
    if cfg.model.kind == "global":
        params = 2 * n * cfg.model.rank
        coarse = 0
    else:
        try:
            N = math.prod(int(v) for v in str(cfg.model.subdomains or 32).lower().split("x"))
        except ValueError:
            return {}
        dim = 2 if cfg.problem.grid and "x" in str(cfg.problem.grid) else 1
        extended = n + 2 * cfg.model.overlap * N * (math.sqrt(max(n / N, 1)) if dim == 2 else 1)
        n0 = N
        r0 = n0 if cfg.model.coarse_rank is None else cfg.model.coarse_rank
        params = 2 * extended * cfg.model.rank + 2 * n0 * r0
        batch += extended * cfg.optim.batch * 4 * size             # gathered blocks and their gradients
        coarse = 3 * 8 * n0 * n0 + 16 * extended             # dense A_0 and eigh; index sets
    parts = {"test set": test, "batch": batch, "model": 4 * params * size + coarse, "operator": 200 * n}
    if cfg.optim.loss == "condition":  # kappa's Lanczos vectors and A times them (spectrum.condition_number: 80 steps)
        parts["lanczos"] = 2 * n * 2 * LANCZOS_STEPS * size
    return parts


def available_bytes(local_ranks=1):
    """Memory this process may use: min(MemAvailable, cgroup room, RLIMIT_AS room) / local ranks."""
    limits = []
    try:
        with open("/proc/meminfo") as fh:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh}
        limits.append(info["MemAvailable"])
    except (OSError, KeyError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            cap = fh.read().strip()
        if cap != "max":
            with open("/sys/fs/cgroup/memory.current") as fh:
                limits.append(int(cap) - int(fh.read()))
    except (OSError, ValueError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        try:
            with open("/proc/self/statm") as fh:
                used = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            used = 0
        limits.append((soft - used) * local_ranks)
    return min(limits) // max(local_ranks, 1) if limits else None


def _local_ranks(comm):
    from mpi4py import MPI
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    count = local.Get_size()
    local.Free()
    return count


def check_memory(cfg, layout):
    """Raise ConfigurationError (the same on every rank) when the run cannot fit in memory.

    Collective under MPI: every rank takes the smallest room of any rank.
    """
    parts = estimate_bytes(cfg)
    world_size = layout.world_size
    have = available_bytes(_local_ranks(layout.comm) if world_size > 1 else 1)
    if world_size > 1:
        from mpi4py import MPI
        have = layout.comm.allreduce(float("inf") if have is None else have, op=MPI.MIN)
        have = None if have == float("inf") else int(have)
    if not parts or have is None:
        return
    need = sum(parts.values()) / world_size
    if need > have:
        detail = ", ".join(f"{k} {format_bytes(v / world_size)}" for k, v in parts.items())
        raise ConfigurationError(
            f"this run needs about {format_bytes(need)} of memory per rank ({detail}), but "
            f"{format_bytes(have)} is available; lower --n/--grid, --test-size or --batch, or use more ranks")
