"""Checkpoints: global parameters and the decomposition, never a rank layout.

A checkpoint is one file written by ``torch.save`` and read back with
``torch.load(weights_only=True)``, so loading never executes code. It holds
plain data only:

    format, version      "pddattn-checkpoint", 2 (version 1, 1D Laplacian only, still loads)
    architecture         model kind, n, the problem spec (family, grid, coefficient and its
                         seed, or a matrix file's path and SHA-256), the decomposition spec
                         (builder, N, delta, pou, coarse space), ranks, symmetric
    config               the training configuration (plain dict)
    state                {name: tensor} in the global layout, e.g. Q of shape (N, L, r)
    optimizer            {"step": int, "moments": {name: {"exp_avg", "exp_avg_sq"}}}
    progress             {"step", "elapsed", "test_error"}

Writes are atomic: the payload goes to a temporary file in the same folder,
is fsynced, then renamed over the old file, so a crash mid-write leaves the
previous checkpoint intact. Under MPI only world rank 0 writes the file and
the outcome is broadcast, so a failed write raises on every rank instead of
leaving some waiting.

Sharded (version 3), when a model is distributed over more than one domain
rank: no rank gathers the (N, L, r) tensors. Each domain rank of the first
replica writes its held subdomains' rows (and their optimizer moments) to
``checkpoint.pt.shards-STEP-TOKEN/domain-RANK.pt``; the file itself (the
manifest) holds everything else, the replicated parameters among it, and
names the shard folder, written last, so it names only complete shards; the
previous save's folder is removed after. A checkpoint loads on any rank
count: each rank takes the rows of the subdomains it holds from the shards
(one shard in memory at a time); serially, all of them. ``global_state``
assembles the whole tensors (tools, tests).
"""
from __future__ import annotations

import os
import pickle
import secrets
import shutil
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from .errors import CheckpointError
from .models import model_from_architecture, upgrade_architecture
from .operators import LOADED, renamed
from .parallel.layout import SerialLayout
from .problems import problem_from_spec
from .problems.families import Problem

__all__ = ["FORMAT", "VERSION", "CheckpointError", "atomic_save", "read", "save", "load_model", "architecture_of",
           "global_state"]

FORMAT, VERSION = "pddattn-checkpoint", 2
SHARDED_VERSION = 3  # written only by a model distributed over domain ranks
READABLE = (1, 2, 3)


def atomic_save(payload, path):
    """torch.save to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if tmp.exists():
            tmp.unlink()


def read(path):
    """Load and validate a checkpoint file on this process (no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"cannot read checkpoint {path}: not a PyTorch checkpoint file (truncated or "
                              "another format)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"cannot read checkpoint {path}: it holds objects other than tensors and plain "
                              "data, which pddattn refuses to unpickle (loading must not run code)") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pddattn checkpoint")
    if payload.get("version") not in READABLE:
        raise CheckpointError(f"{path} has checkpoint version {payload.get('version')}, this pddattn reads "
                              f"{READABLE}")
    if "shards" in payload:
        folder = path.parent / payload["shards"]["folder"]
        if not folder.is_dir():
            raise CheckpointError(f"{path} names its shard folder {folder.name}, which is missing")
        payload["shards"]["where"] = str(folder)
    return _today_names(payload)


def _today_names(payload):
    """The payload with the parameter names of releases up to 2 (the recursive ``coarse_model.`` chain of a
    multilevel operator) mapped to today's (``coarse_levels.{l-1}.``); today's names pass unchanged."""
    payload["state"] = renamed(payload["state"])
    moments = payload.get("optimizer", {}).get("moments")
    if moments is not None:
        payload["optimizer"]["moments"] = renamed(moments)
    if "shards" in payload:
        info = payload["shards"]
        info["names"] = list(renamed(dict.fromkeys(info["names"])))
        if "held" in info:
            info["held"] = renamed(info["held"])
    return payload


def architecture_of(payload):
    """The payload's architecture in today's form (version 1 meant the 1D Laplacian)."""
    return upgrade_architecture(payload["architecture"])


def stored_model(payload, build):
    """``build(arch)`` for the payload's architecture, with the coarse levels its tensors were trained on.

    Multilevel checkpoints written between the graph partition of the coarse
    levels and the record of ``level_partition`` in the architecture (which
    model.config() lacked) hold no partition name: they are rebuilt with
    contiguous blocks (what the oldest used) unless the stored tensors' shapes
    say graph. Decided from global shapes, so every rank decides alike.
    """
    arch = architecture_of(payload)
    model = build(arch)
    if arch.get("levels", 2) > 2 and "level_partition" not in arch and not _shapes_fit(payload, model):
        model = build(dict(arch, level_partition="graph"))
    return model


def _shapes_fit(payload, model):
    """Whether the stored tensors have the model's shapes (past the subdomain axis, which a rank splits)."""
    for name, p in model.named_parameters():
        stored = payload["state"].get(name)
        if stored is None:
            continue
        if tuple(stored.shape[1:]) != tuple(p.shape[1:]) or (p.dim() < 3 and stored.shape != p.shape):
            return False
    return True


def _collective(layout, action):
    """Run ``action`` on the root, broadcast (result, error) so all ranks agree."""
    result, error = None, None
    if layout.is_root:
        try:
            result = action()
        except (CheckpointError, OSError) as exc:
            error = str(exc) if isinstance(exc, CheckpointError) else f"checkpoint I/O failed: {exc}"
    result, error = layout.bcast((result, error))
    if error:
        raise CheckpointError(error)
    return result


def save(path, model, optimizer, progress, config, layout):
    """Write the global state atomically: gathered to the root, or sharded (module docstring).

    Collective over the layout: every rank must call it.
    """
    if layout.domain_size > 1 and any(model.local_part(n) is not None for n, _ in model.named_parameters()):
        return _save_sharded(Path(path), model, optimizer, progress, config, layout)
    state = {name: model.to_global(name, p.detach()) for name, p in model.named_parameters()}
    moments = {}
    step = 0
    for name, p in model.named_parameters():
        st = optimizer.state.get(p, {})
        if st:
            step = int(st["step"])
            moments[name] = {k: model.to_global(name, st[k]) for k in ("exp_avg", "exp_avg_sq")}
    payload = {
        "format": FORMAT, "version": VERSION, "architecture": model.config(), "config": dict(config),
        "state": state, "optimizer": {"step": step, "moments": moments}, "progress": dict(progress),
        **_matrix_of(model),
    }
    _collective(layout, lambda: (atomic_save(payload, path), _remove_shards(path)))


def _matrix_of(model):
    """{"matrix": CSR arrays} of a model of a matrix file held whole here, so that it loads without the file.

    The harmonic coarse basis and the algebraic subdomains are computed from
    A: the file is the model's, not its training data. A matrix read by rows
    over ranks is not gathered for this (the file stays needed).
    """
    problem = getattr(model, "problem", None)
    if problem is None or problem.family != "matrix" or getattr(problem, "_A", None) is None:
        return {}
    A = problem._A.tocsr()
    return {"matrix": {"indptr": torch.from_numpy(A.indptr.astype(np.int64)),
                       "indices": torch.from_numpy(A.indices.astype(np.int64)),
                       "data": torch.from_numpy(A.data.astype(np.float64)), "shape": list(A.shape)}}


def stored_problem(payload):
    """The payload's problem: rebuilt from its spec, or from the matrix stored in it when the file is gone."""
    spec = architecture_of(payload)["problem"]
    stored = payload.get("matrix")
    if stored is None or spec.get("matrix") is None or os.path.exists(spec["matrix"]):
        return problem_from_spec(spec)  # a changed file is refused there: the user meant that file
    A = sp.csr_matrix((stored["data"].numpy(), stored["indices"].numpy(), stored["indptr"].numpy()),
                      shape=tuple(stored["shape"]))
    return Problem("matrix", tuple(spec["grid"]), spec["coefficient"], spec["seed"], A, spec.get("matrix"),
                   spec.get("checksum"))


def _remove_shards(path, keep=None):
    """Shard folders of earlier saves of ``path``, which the file no longer names."""
    path = Path(path)
    for old in path.parent.glob(f"{path.name}.shards-*"):
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


def _split_state(model, optimizer):
    """(replicated state, replicated moments, local state, local moments, held ids, Adam step)."""
    out = ({}, {}, {}, {}, {})
    step = 0
    for name, p in model.named_parameters():
        st = optimizer.state.get(p, {}) if optimizer is not None else {}
        step = int(st["step"]) if st else step
        held = model.local_part(name)
        state, moments = (out[0], out[1]) if held is None else (out[2], out[3])
        state[name] = p.detach().cpu()
        if st:
            moments[name] = {k: st[k].detach().cpu() for k in ("exp_avg", "exp_avg_sq")}
        if held is not None:
            out[4][name] = torch.as_tensor(np.asarray(held, dtype=np.int64))
    return (*out, step)


def _agree(layout, error):
    """Raise the first rank's error on every rank (an allgather of error strings)."""
    errors = [e for e in layout.comm.allgather(error) if e]
    if errors:
        raise CheckpointError(errors[0])


def _save_sharded(path, model, optimizer, progress, config, layout):
    state, moments, local, local_moments, held, step = _split_state(model, optimizer)
    token = layout.bcast(f"{int(progress.get('step', 0)):08d}-{secrets.token_hex(4)}")
    folder = path.with_name(f"{path.name}.shards-{token}")
    error = None
    if layout.is_root:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            error = f"checkpoint I/O failed: {exc}"
    _agree(layout, layout.bcast(error))
    error = None
    if layout.replica == 0:  # data replicas hold the same rows
        shard = {"format": FORMAT, "held": held, "state": local, "moments": local_moments}
        try:
            atomic_save(shard, folder / f"domain-{layout.domain_rank:05d}.pt")
        except OSError as exc:
            error = f"checkpoint I/O failed on domain rank {layout.domain_rank}: {exc}"
    _agree(layout, error)
    # Which subdomains each shard holds (O(N) numbers): a reader opens only the shards it needs.
    gathered = layout.comm.gather((layout.replica, layout.domain_rank, held), root=0)
    index = {}
    if gathered is not None:
        writers = sorted((rank, h) for replica, rank, h in gathered if replica == 0)
        index = {name: [h[name] for _, h in writers] for name in held}
    payload = {
        "format": FORMAT, "version": SHARDED_VERSION, "architecture": model.config(), "config": dict(config),
        "state": state, "optimizer": {"step": step, "moments": moments}, "progress": dict(progress),
        "shards": {"folder": folder.name, "count": layout.domain_size, "names": sorted(held), "held": index},
        **_matrix_of(model),
    }

    _collective(layout, lambda: (atomic_save(payload, path), _remove_shards(path, keep=folder)))


def _shards(payload, wanted):
    """Each shard holding some of the ``wanted`` rows (see _rows_from_shards), in turn, one in memory at a time."""
    info = payload["shards"]
    for k in range(info["count"]):
        index = info.get("held", {})
        needed = [name for name in info["names"] if wanted.get(name) is None or name not in index
                  or np.isin(index[name][k].numpy(), wanted[name]).any()]
        if not needed:
            continue
        file = Path(info["where"]) / f"domain-{k:05d}.pt"
        try:
            shard = torch.load(file, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
            raise CheckpointError(f"cannot read checkpoint shard {file}: {str(exc).splitlines()[0]}") from None
        shard["held"] = {name: ids.numpy() for name, ids in renamed(shard["held"]).items()}
        shard["state"], shard["moments"] = renamed(shard["state"]), renamed(shard["moments"])
        yield shard


def _rows_from_shards(payload, wanted):
    """({name: rows}, {name: {moment: rows}}) of the subdomains ``wanted[name]`` (global ids; None: all, in order)."""
    pieces = {}  # (name, key) -> [(destination rows, part)], key "" for the parameter itself
    for shard in _shards(payload, wanted):
        for name, ids in shard["held"].items():
            want = wanted.get(name)
            if want is None:
                dest, keep = ids, np.arange(len(ids))
            else:
                order = np.argsort(want)
                at = np.minimum(np.searchsorted(want, ids, sorter=order), max(len(want) - 1, 0))
                keep = np.flatnonzero(want[order[at]] == ids) if len(want) else np.zeros(0, dtype=np.int64)
                dest = order[at[keep]]
            for key, part in {"": shard["state"][name], **shard["moments"].get(name, {})}.items():
                pieces.setdefault((name, key), []).append((dest, part[torch.as_tensor(keep)]))
    state, moments = {}, {}
    for (name, key), parts in pieces.items():
        want = wanted.get(name)
        rows = sum(len(d) for d, _ in parts) if want is None else len(want)
        out = parts[0][1].new_zeros((rows,) + tuple(parts[0][1].shape[1:]))
        for dest, part in parts:
            out[torch.as_tensor(dest)] = part
        if key:
            moments.setdefault(name, {})[key] = out
        else:
            state[name] = out
    return state, moments


def global_state(path):
    """The whole parameters {name: tensor} of a checkpoint file, sharded or not."""
    payload = read(path)
    state = dict(payload["state"])
    if "shards" in payload:
        whole, _ = _rows_from_shards(payload, {name: None for name in payload["shards"]["names"]})
        state.update(whole)
    return state


def read_collective(path, layout):
    """Read on the root and broadcast: every rank gets the payload or the same error."""
    return _collective(layout, lambda: read(path))


def restore(payload, model, optimizer=None):
    """Copy a payload's global state (and optimizer moments) into a model's local layout."""
    sharded = set(payload.get("shards", {}).get("names", ()))
    missing = {n for n, _ in model.named_parameters()} - set(payload["state"]) - sharded
    if missing:
        raise CheckpointError(f"checkpoint lacks parameters {sorted(missing)} for this model")
    local, local_moments = {}, {}
    if sharded:  # this model's rows of each sharded parameter: its held subdomains', or all
        wanted = {name: model.local_part(name) for name in sharded}
        local, local_moments = _rows_from_shards(payload, wanted)
    with torch.no_grad():
        for name, p in model.named_parameters():
            value = local[name] if name in local else model.from_global(name, payload["state"][name])
            if value.shape != p.shape:
                raise CheckpointError(f"checkpoint parameter {name} has shape {tuple(value.shape)}, "
                                      f"the model expects {tuple(p.shape)}")
            p.copy_(value)
    if optimizer is None:
        return
    step = payload["optimizer"]["step"]
    fused = bool(optimizer.defaults.get("fused"))
    for name, p in model.named_parameters():
        m = local_moments.get(name) or payload["optimizer"]["moments"].get(name)
        if m is not None:
            # The step counter as Adam makes it: float32 on the device when fused.
            counter = (torch.tensor(float(step), dtype=torch.float32, device=p.device) if fused
                       else torch.tensor(float(step)))
            own = (lambda t: t) if name in local_moments else (lambda t: model.from_global(name, t))  # noqa: E731
            optimizer.state[p] = {"step": counter, **{
                k: own(m[k]).to(dtype=p.dtype, device=p.device).clone() for k in m}}


def load_model(path, layout=None, dtype=torch.float64, device=None):
    """The operator stored in a checkpoint, serial or distributed over ``layout``.

    Parameters
    ----------
    path : str or Path
    layout : Layout, optional
        When given (an MPI layout), a DistributedDDAttention on its domain
        group; otherwise a serial module.
    """
    layout = layout or SerialLayout()
    payload = read_collective(path, layout)
    # Zero factors, filled by restore(): no initialisation to compute, so no A, pairs or data are needed.
    try:
        problem = stored_problem(payload)
        build = lambda arch: model_from_architecture(arch, layout, problem=problem, dtype=dtype,  # noqa: E731
                                                     device=device, init=LOADED)
        model = stored_model(payload, build)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    restore(payload, model)
    return model, payload
