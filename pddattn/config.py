"""The training configuration: nested frozen specs, plain data checked in one place.

    cfg = TrainConfig.of(model="dd", n=1023, subdomains=32, overlap=2, rank=8).validate()
    cfg.model.rank, cfg.optim.steps                        # the sections: problem, model, data, optim, run
    problem, arch, sampler, hierarchy = assemble(cfg)      # pddattn.assembly: A and the levels built once

A configuration is five frozen sections: :class:`ProblemSpec` (the operator),
:class:`ModelSpec` (the architecture), :class:`DataSpec` (training and test
pairs), :class:`OptimSpec` (loss and schedule) and :class:`RunSpec` (seed,
precision, device, cadence). Their fields are named by one flat vocabulary,
the CLI's flags (``--rank``, ``--steps``): :meth:`TrainConfig.of` and
:meth:`TrainConfig.replace` take it, :meth:`TrainConfig.to_dict` writes it,
and checkpoints store that dict, so a checkpoint of any release reads back
(:meth:`TrainConfig.from_dict`). ``validate`` names the first bad field in
one ConfigurationError line (the same on every rank, before any
communication). Builders live in assembly.py, not here.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from .errors import ConfigurationError
from .fno import fno_missing
from .models import MODELS
from .operators import INITS
from .problems.pairs import is_data_file

__all__ = ["TrainConfig", "ProblemSpec", "ModelSpec", "DataSpec", "OptimSpec", "RunSpec", "DTYPES", "LOSSES",
           "device_missing"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
LOSSES = ("error", "condition")


@dataclasses.dataclass(frozen=True)
class ProblemSpec:
    """The operator A."""

    family: str = "laplace1d"           # laplace1d, diffusion1d, poisson2d, diffusion2d, matrix, data
    n: int = 1023                       # 1D grid size when no grid is given
    grid: str | None = None             # "1023" or "127x127"
    coefficient: str = "const"          # const, smooth:C, jump:C, lognormal:S, darcy
    coefficient_seed: int = 0
    matrix: str | None = None           # a PETSc binary or .npz file (family "matrix")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The architecture: DD attention's decomposition and ranks, or a baseline's size."""

    kind: str = "dd"                    # dd, global, fno
    decomposition: str | None = None    # intervals (1D), boxes (2D), algebraic; None: by dimension
    coarse_space: str | None = None     # hat, q1, harmonic, nicolaides, none; None: by decomposition
    subdomains: int | str | None = None  # N, or "4x4" for boxes; None: 4x4 boxes in 2D, else 32
    overlap: int = 2
    rank: int = 8
    coarse_rank: int | None = None      # None: full coarse rank n_0 (the top level's with levels > 2)
    levels: int = 2                     # 2: dense coarse block; L > 2: multilevel (hierarchy.py)
    top_size: int = 64                  # target size of the dense top level when levels > 2
    level_coarse: str = "harmonic"      # coarse space of the coarse levels: harmonic or nicolaides
    pou: str = "count"
    symmetric: bool = False
    init: str = "random"
    init_scale: float = 0.1
    fno_width: int = 32                 # the FNO baseline (kind "fno"): hidden channels,
    fno_modes: int = 16                 # Fourier modes per axis,
    fno_layers: int = 4                 # Fourier layers


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """The pairs (f, u): made from A, or the user's file."""

    source: str | None = None           # fourier, probe, solve, or a pairs FILE; None: fourier if A has sine modes
    test_fraction: float = 0.1          # held-out share of a pairs file without f_test and u_test
    sha256: str | None = None           # of the pairs file, recorded by TrainConfig.as_run (checkpoints name it)
    modes: int | None = None            # None: all n modes
    alpha: float = 0.0
    test_size: int = 256


@dataclasses.dataclass(frozen=True)
class OptimSpec:
    """What is minimised and how."""

    loss: str = "error"                 # or "condition": kappa(M A), for preconditioners
    steps: int = 10000
    batch: int = 64
    lr: float = 0.01
    beta2: float = 0.95                 # Adam's second-moment decay (0.999 made the demo's error jump 11x)
    warmup: int = 100
    target: float = 0.0                 # stop once the test error is at or below it


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Where and how the run goes: seed, precision, device, cadence, data replicas."""

    seed: int = 0
    dtype: str = "float32"
    device: str = "cpu"
    eval_every: int = 100
    checkpoint_every: int = 1000
    data_parallel: int = 1


SECTIONS = {"problem": ProblemSpec, "model": ModelSpec, "data": DataSpec, "optim": OptimSpec, "run": RunSpec}
# The flat vocabulary (the CLI's flags, a checkpoint's dict) where it differs from a section's field name.
_RENAMED = {("problem", "family"): "problem", ("model", "kind"): "model", ("data", "source"): "data",
            ("data", "sha256"): "data_sha256"}
FLAT = {_RENAMED.get((section, f.name), f.name): (section, f.name)
        for section, spec in SECTIONS.items() for f in dataclasses.fields(spec)}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on, as five frozen sections (module docstring).

    A changed run is a new configuration: ``cfg.replace(steps=100)``.
    """

    problem: ProblemSpec = ProblemSpec()
    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    optim: OptimSpec = OptimSpec()
    run: RunSpec = RunSpec()

    @classmethod
    def of(cls, **flat):
        """A configuration from flat names (``rank=8, steps=100``); unnamed fields keep their defaults."""
        return cls().replace(**flat)

    def replace(self, **flat):
        """This configuration with the named (flat) fields changed."""
        unknown = sorted(set(flat) - set(FLAT))
        if unknown:
            raise TypeError(f"unknown configuration field(s) {unknown}; known: {sorted(FLAT)}")
        changes = {}
        for name, value in flat.items():
            section, field = FLAT[name]
            changes.setdefault(section, {})[field] = value
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **fields)
                                            for section, fields in changes.items()})

    def to_dict(self):
        """The flat dict (the CLI's names) that checkpoints and results store."""
        return {name: getattr(getattr(self, section), field) for name, (section, field) in FLAT.items()}

    @classmethod
    def from_dict(cls, d):
        """A config from its flat dict, of any release: unknown keys are ignored; one written before
        ``coarse`` went (coarse: false) says coarse_space none."""
        if d.get("coarse") is False and not d.get("coarse_space"):
            d = dict(d, coarse_space="none")
        return cls.of(**{k: v for k, v in d.items() if k in FLAT})

    def as_run(self, problem):
        """This configuration as run on ``problem``: the checksum of its pairs file recorded (checkpoints
        and results store it, and a resumed run refuses a changed file)."""
        sha = problem.pairs.sha256 if problem.pairs is not None else self.data.sha256
        return self.replace(data_sha256=sha)

    def validate(self):
        """Raise ConfigurationError naming the first bad field and what is allowed; returns self."""
        _validate_model(self.model, self.optim)
        _validate_optim(self.optim)
        _validate_run(self.run, self.data)
        _validate_data(self.data, self.problem, self.model, self.optim)
        return self


def _need(ok, message):
    if not ok:
        raise ConfigurationError(message)


def _counts(spec, names, low=1):
    for name in names:
        value = getattr(spec, name)
        _need(isinstance(value, int) and not isinstance(value, bool) and value >= low,
              f"--{name.replace('_', '-')} must be {'a positive integer' if low else 'an integer >= 0'}, "
              f"got {value!r}")


def _validate_model(m, optim):
    _need(m.kind in MODELS, f"unknown model {m.kind!r}; choose one of {MODELS}")
    _need(m.init in INITS, f"unknown init {m.init!r}; choose one of {INITS}")
    _need(optim.loss in LOSSES, f"unknown loss {optim.loss!r}; choose one of {LOSSES}")
    _need(optim.loss == "error" or (m.kind == "dd" and m.symmetric),
          "--loss condition needs a symmetric DD model (--model dd --symmetric): kappa(M A) is defined for SPD M")
    _need(isinstance(m.levels, int) and m.levels >= 2, f"--levels must be an integer >= 2, got {m.levels!r}")
    _need(isinstance(m.top_size, int) and not isinstance(m.top_size, bool) and m.top_size >= 0,
          f"--top-size must be an integer >= 0 (0: coarse subdomains of a fixed size), got {m.top_size!r}")
    _need(m.level_coarse in ("harmonic", "nicolaides"), f"--level-coarse must be harmonic or nicolaides, "
                                                        f"got {m.level_coarse!r}")
    _counts(m, ("rank",))
    _counts(m, ("overlap",), low=0)
    _need(m.coarse_rank is None or m.coarse_rank >= 1, f"--coarse-rank must be a positive integer, "
                                                      f"got {m.coarse_rank!r}")
    _need(math.isfinite(m.init_scale) and m.init_scale > 0, "--init-scale must be positive")
    if m.kind == "fno":
        _need(not fno_missing(), fno_missing())
        _need(optim.loss == "error", "--loss condition is for DD preconditioners, not the FNO")
        _counts(m, ("fno_width", "fno_modes", "fno_layers"))


def _validate_optim(o):
    _counts(o, ("batch",))
    _need(isinstance(o.steps, int) and o.steps >= 0,
          f"--steps must be an integer >= 0 (0 saves the initial model), got {o.steps!r}")
    _need(o.warmup >= 0, f"--warmup must be >= 0, got {o.warmup}")
    _need(math.isfinite(o.lr) and o.lr > 0, f"--lr must be a positive number, got {o.lr}")
    _need(0 < o.beta2 < 1, f"--beta2 must be in (0, 1), got {o.beta2}")
    _need(o.target >= 0, f"--target must be >= 0, got {o.target}")


def _validate_run(r, data):
    _need(r.dtype in DTYPES, f"unknown dtype {r.dtype!r}; choose one of {tuple(DTYPES)}")
    _counts(r, ("eval_every", "checkpoint_every"))
    _counts(data, ("test_size",))
    _need(r.device == "cpu" or r.device.startswith(("cuda", "mps", "xpu")),
          f"unknown device {r.device!r}; use cpu, cuda, cuda:N, mps or xpu")
    _need(not device_missing(r.device), device_missing(r.device))


def _validate_data(data, problem, model, optim):
    """What a pairs file (or the lack of a matrix) rules out, before anything is built."""
    _counts(problem, ("n",))
    _need(0 < data.test_fraction < 1, f"--test-fraction must be in (0, 1), got {data.test_fraction}")
    if not is_data_file(data.source):
        _need(problem.family != "data", "--problem data learns from the user's pairs: give --data FILE "
                                        "(a .npz with f and u, or a folder with f.npy and u.npy)")
        return
    _need(data.modes is None and not data.alpha, "--modes and --alpha shape made data; they do not apply to "
                                                 f"the pairs in --data {data.source}")
    if problem.family == "data":
        _need(model.init == "random", "--init schwarz needs the matrix A; with --data FILE alone the factors "
                                      "start random (give --problem/--grid or --matrix for a Schwarz start)")
        _need(optim.loss == "error", "--loss condition needs the matrix A; --data FILE alone gives pairs only")
        geometric = model.coarse_space in (None, "hat", "q1", "nicolaides", "none")
        _need(model.decomposition in (None, "intervals", "boxes") and geometric and model.levels == 2,
              "algebraic subdomains, harmonic coarse spaces and coarse levels are built from A; with --data "
              "FILE alone use intervals/hat (1D) or boxes/q1 (2D), two levels")


def device_missing(name):
    """Why torch cannot use device ``name`` here ('' when it can): a CPU build, no device, a bad index."""
    try:
        device = torch.device(name)
    except RuntimeError:
        return f"unknown device {name!r}; use cpu, cuda, cuda:N, mps or xpu"
    if device.type == "cpu":
        return ""
    backend = {"cuda": torch.cuda, "mps": getattr(torch.backends, "mps", None), "xpu": getattr(torch, "xpu", None)}
    module = backend.get(device.type)
    if module is None or not module.is_available():
        built = "" if device.type != "cuda" or torch.version.cuda else " (a CPU build of torch)"
        return f"--device {name}: torch {torch.__version__}{built} sees no {device.type} device here; use --device cpu"
    count = module.device_count() if hasattr(module, "device_count") else 1
    if device.index is not None and device.index >= count:
        return f"--device {name}: only {count} {device.type} device(s) here (index 0 to {count - 1})"
    return ""
