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
previous checkpoint intact. Under MPI only world rank 0 writes (after the
others' pieces are gathered to it) and the outcome is broadcast, so a failed
write raises on every rank instead of leaving some waiting.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from .parallel.layout import CollectiveError

__all__ = ["FORMAT", "VERSION", "CheckpointError", "atomic_save", "read", "save", "load_model", "architecture_of"]

FORMAT, VERSION = "pddattn-checkpoint", 2
READABLE = (1, 2)


class CheckpointError(CollectiveError):
    """A checkpoint that cannot be written, read or used here (raised on every rank alike)."""


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
    return payload


def architecture_of(payload):
    """The payload's architecture in today's form (version 1 meant the 1D Laplacian)."""
    from .models import upgrade_architecture
    return upgrade_architecture(payload["architecture"])


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
    """Gather the global state and write it atomically from the root.

    Collective over the layout: every rank must call it.
    """
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
    }
    _collective(layout, lambda: atomic_save(payload, path))


def read_collective(path, layout):
    """Read on the root and broadcast: every rank gets the payload or the same error."""
    return _collective(layout, lambda: read(path))


def restore(payload, model, optimizer=None):
    """Copy a payload's global state (and optimizer moments) into a model's local layout."""
    missing = {n for n, _ in model.named_parameters()} - set(payload["state"])
    if missing:
        raise CheckpointError(f"checkpoint lacks parameters {sorted(missing)} for this model")
    with torch.no_grad():
        for name, p in model.named_parameters():
            value = model.from_global(name, payload["state"][name])
            if value.shape != p.shape:
                raise CheckpointError(f"checkpoint parameter {name} has shape {tuple(value.shape)}, "
                                      f"the model expects {tuple(p.shape)}")
            p.copy_(value)
    if optimizer is None:
        return
    step = payload["optimizer"]["step"]
    fused = bool(optimizer.defaults.get("fused"))
    for name, p in model.named_parameters():
        m = payload["optimizer"]["moments"].get(name)
        if m is not None:
            # The step counter as Adam makes it: float32 on the device when fused.
            counter = (torch.tensor(float(step), dtype=torch.float32, device=p.device) if fused
                       else torch.tensor(float(step)))
            optimizer.state[p] = {"step": counter, **{
                k: model.from_global(name, m[k]).to(dtype=p.dtype, device=p.device).clone() for k in m}}


def load_model(path, layout=None, dtype=torch.float64, device=None):
    """The operator stored in a checkpoint, serial or distributed over ``layout``.

    Parameters
    ----------
    path : str or Path
    layout : Layout, optional
        When given (an MPI layout), a DistributedDDAttention on its domain
        group; otherwise a serial module.
    """
    from .models import model_from_architecture
    from .parallel.layout import SerialLayout
    layout = layout or SerialLayout()
    payload = read_collective(path, layout)
    try:
        model = model_from_architecture(architecture_of(payload), layout, dtype=dtype, device=device)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    restore(payload, model)
    return model, payload
