"""Build an operator from plain data: a training config or a checkpoint's architecture.

One place decides serial versus distributed: a layout with more than one
domain rank gets a DistributedDDAttention, anything else the serial module
(data replicas each hold the whole model).
"""
from __future__ import annotations

from .decomposition import Decomposition
from .operators import DDAttention, GlobalAttention
from .parallel.layout import ConfigurationError, SerialLayout, check_distribution

__all__ = ["MODELS", "architecture", "model_from_architecture"]

MODELS = ("dd", "global")


def architecture(cfg):
    """The architecture part of a training config, as stored in checkpoints."""
    if cfg["model"] == "global":
        return {"model": "global", "n": cfg["n"], "rank": cfg["rank"], "symmetric": cfg["symmetric"]}
    d = decomposition_of(cfg)
    return {"model": "dd", **d.to_dict(), "rank": cfg["rank"],
            "coarse_rank": d.coarse_size if cfg.get("coarse_rank") is None else cfg["coarse_rank"],
            "symmetric": cfg["symmetric"], "coarse": cfg.get("coarse", True)}


def decomposition_of(cfg):
    return Decomposition(cfg["n"], cfg["N"] if "N" in cfg else cfg["subdomains"],
                         cfg["delta"] if "delta" in cfg else cfg["overlap"], cfg.get("pou", "count"))


def model_from_architecture(arch, layout=None, *, dtype=None, device=None, init="random", init_scale=0.1,
                            seed=0):
    """A GlobalAttention, DDAttention or DistributedDDAttention for ``arch``.

    Raises ConfigurationError (identically on every rank) when the layout
    cannot hold the model.
    """
    layout = layout or SerialLayout()
    kind = arch.get("model")
    if kind not in MODELS:
        raise ConfigurationError(f"unknown model {kind!r}; choose one of {MODELS}")
    if kind == "global":
        if layout.domain_size > 1:
            raise ConfigurationError("the global model runs data-parallel only: pass --data-parallel "
                                     f"{layout.world_size} (one replica per rank)")
        return GlobalAttention(arch["n"], arch["rank"], symmetric=arch["symmetric"], init_scale=init_scale,
                               seed=seed, dtype=dtype, device=device)
    d = decomposition_of(arch)
    check_distribution(d, layout.world_size, layout.data_size)
    kwargs = dict(r=arch["rank"], r0=arch.get("coarse_rank"), symmetric=arch["symmetric"],
                  coarse=arch.get("coarse", True), init=init, init_scale=init_scale, seed=seed,
                  dtype=dtype, device=device)
    if layout.domain_size == 1:
        return DDAttention(d, **kwargs)
    from .parallel.operator import DistributedDDAttention
    return DistributedDDAttention(d, layout=layout, **kwargs)
