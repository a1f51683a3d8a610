"""The training configuration: everything a run depends on, as plain data, checked in one place.

    cfg = TrainConfig(model="dd", n=1023, subdomains=32, overlap=2, rank=8).validate()
    problem, arch, sampler, hierarchy = cfg.build()   # A and the levels built once and handed down

``validate`` names the first bad field in one ConfigurationError line (the
same on every rank, before any communication); ``build`` turns the plain
data into the problem, the architecture (a rank's share under MPI) and the
sampler. Checkpoints store ``to_dict()``; ``from_dict`` reads one back.
"""
from __future__ import annotations

import dataclasses
import math
import typing

import torch

from .errors import ConfigurationError
from .models import MODELS, architecture, hierarchy_of, problem_of
from .operators import INITS
from .problems import make_sampler, parse_grid
from .problems.pairs import PairsSampler, is_data_file, load_pairs


class Built(typing.NamedTuple):
    """What a configuration builds: the operator, the architecture, the data and (DD) the levels."""

    problem: object
    arch: dict
    sampler: object
    hierarchy: object = None

__all__ = ["TrainConfig", "Built", "DTYPES", "LOSSES", "device_missing"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
LOSSES = ("error", "condition")


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run depends on, as plain data."""

    model: str = "dd"
    problem: str = "laplace1d"          # laplace1d, diffusion1d, poisson2d, diffusion2d, matrix
    n: int = 1023                       # 1D grid size when no --grid is given
    grid: str | None = None             # "1023" or "127x127"
    coefficient: str = "const"          # const, smooth:C, jump:C, lognormal:S
    coefficient_seed: int = 0
    matrix: str | None = None           # a PETSc binary or .npz file (problem "matrix")
    decomposition: str | None = None    # intervals (1D), boxes (2D), algebraic; None: by dimension
    coarse_space: str | None = None     # hat, q1, harmonic, nicolaides, none; None: by decomposition
    subdomains: int | str | None = None  # N, or "4x4" for boxes; None: 4x4 boxes in 2D, else 32
    overlap: int = 2
    rank: int = 8
    coarse_rank: int | None = None      # None: full coarse rank n_0 = N - 1 (the top level's with --levels)
    levels: int = 2                     # 2: dense coarse block; L > 2: multilevel (hierarchy.py)
    top_size: int = 64                  # target size of the dense top level when levels > 2
    level_coarse: str = "harmonic"      # coarse space of the coarse levels: harmonic or nicolaides
    pou: str = "count"
    symmetric: bool = False
    init: str = "random"
    init_scale: float = 0.1
    loss: str = "error"                 # or "condition": kappa(M A), for preconditioners
    data: str | None = None             # fourier, probe, solve, or pairs FILE; None: fourier if A has sine modes, else solve
    test_fraction: float = 0.1          # held-out share of a pairs file without f_test and u_test
    data_sha256: str | None = None      # of the pairs file, recorded by build() (checkpoints name it)
    modes: int | None = None            # None: all n modes
    alpha: float = 0.0
    steps: int = 10000
    batch: int = 64
    lr: float = 0.01
    beta2: float = 0.95                 # Adam's second-moment decay (0.999 made the demo's error jump 11x)
    warmup: int = 100
    seed: int = 0
    dtype: str = "float32"
    device: str = "cpu"
    eval_every: int = 100
    test_size: int = 256
    target: float = 0.0                 # stop once the test error is at or below it
    checkpoint_every: int = 1000
    data_parallel: int = 1
    fno_width: int = 32                 # the FNO baseline (model "fno"): hidden channels,
    fno_modes: int = 16                 # Fourier modes per axis,
    fno_layers: int = 4                 # Fourier layers

    def validate(self):
        """Raise ConfigurationError naming the first bad field and what is allowed."""
        def need(ok, message):
            if not ok:
                raise ConfigurationError(message)
        need(self.model in MODELS, f"unknown model {self.model!r}; choose one of {MODELS}")
        need(self.init in INITS, f"unknown init {self.init!r}; choose one of {INITS}")
        need(self.dtype in DTYPES, f"unknown dtype {self.dtype!r}; choose one of {tuple(DTYPES)}")
        need(self.loss in LOSSES, f"unknown loss {self.loss!r}; choose one of {LOSSES}")
        need(self.loss == "error" or (self.model == "dd" and self.symmetric),
             "--loss condition needs a symmetric DD model (--model dd --symmetric): kappa(M A) is "
             "defined for SPD M")
        need(isinstance(self.levels, int) and self.levels >= 2, f"--levels must be an integer >= 2, got {self.levels!r}")
        need(isinstance(self.top_size, int) and not isinstance(self.top_size, bool) and self.top_size >= 0,
             f"--top-size must be an integer >= 0 (0: coarse subdomains of a fixed size), got {self.top_size!r}")
        need(self.level_coarse in ("harmonic", "nicolaides"), f"--level-coarse must be harmonic or nicolaides, "
                                                               f"got {self.level_coarse!r}")
        for name in ("n", "rank", "batch", "eval_every", "test_size", "checkpoint_every", "overlap"):
            value = getattr(self, name)
            low = 0 if name == "overlap" else 1
            need(isinstance(value, int) and value >= low, f"--{name.replace('_', '-')} must be "
                 f"{'a positive integer' if low else 'an integer >= 0'}, got {value!r}")
        need(isinstance(self.steps, int) and self.steps >= 0,
             f"--steps must be an integer >= 0 (0 saves the initial model), got {self.steps!r}")
        need(self.coarse_rank is None or self.coarse_rank >= 1, f"--coarse-rank must be a positive integer, "
                                                                f"got {self.coarse_rank!r}")
        need(self.warmup >= 0, f"--warmup must be >= 0, got {self.warmup}")
        need(math.isfinite(self.lr) and self.lr > 0, f"--lr must be a positive number, got {self.lr}")
        need(0 < self.beta2 < 1, f"--beta2 must be in (0, 1), got {self.beta2}")
        need(math.isfinite(self.init_scale) and self.init_scale > 0, "--init-scale must be positive")
        need(self.target >= 0, f"--target must be >= 0, got {self.target}")
        need(self.device == "cpu" or self.device.startswith(("cuda", "mps", "xpu")),
             f"unknown device {self.device!r}; use cpu, cuda, cuda:N, mps or xpu")
        need(not device_missing(self.device), device_missing(self.device))
        self._validate_data(need)
        if self.model == "fno":
            from .fno import fno_missing
            need(not fno_missing(), fno_missing())
            need(self.loss == "error", "--loss condition is for DD preconditioners, not the FNO")
            for name in ("fno_width", "fno_modes", "fno_layers"):
                value = getattr(self, name)
                need(isinstance(value, int) and value >= 1, f"--{name.replace('_', '-')} must be a positive "
                                                            f"integer, got {value!r}")
        return self

    def _validate_data(self, need):
        """What a pairs file (or the lack of a matrix) rules out, before anything is built."""
        need(0 < self.test_fraction < 1, f"--test-fraction must be in (0, 1), got {self.test_fraction}")
        if not is_data_file(self.data):
            need(self.problem != "data", "--problem data learns from the user's pairs: give --data FILE "
                                         "(a .npz with f and u, or a folder with f.npy and u.npy)")
            return
        need(self.modes is None and not self.alpha, "--modes and --alpha shape made data; they do not apply to "
                                                    f"the pairs in --data {self.data}")
        if self.problem == "data":
            need(self.init == "random", "--init schwarz needs the matrix A; with --data FILE alone the factors "
                                        "start random (give --problem/--grid or --matrix for a Schwarz start)")
            need(self.loss == "error", "--loss condition needs the matrix A; --data FILE alone gives pairs only")
            geometric = self.coarse_space in (None, "hat", "q1", "nicolaides", "none")
            need(self.decomposition in (None, "intervals", "boxes") and geometric and self.levels == 2,
                 "algebraic subdomains, harmonic coarse spaces and coarse levels are built from A; with --data "
                 "FILE alone use intervals/hat (1D) or boxes/q1 (2D), two levels")

    def pairs(self):
        """The user's pairs (a PairsData) when --data names a file or folder, else None."""
        if not is_data_file(self.data):
            return None
        return load_pairs(self.data, parse_grid(self.grid) if self.grid else None, self.test_fraction, self.seed)

    def build(self, problem=None, layout=None, hierarchy=None):
        """:class:`Built` (problem, architecture, sampler, hierarchy): A and the levels built once and handed
        down; one-line errors.

        ``layout``: where the model will run (a distributed one builds a rank's share only);
        ``hierarchy``: the DD model's levels when the caller has them (compare's models share one).
        """
        try:
            pairs = self.pairs()
            if pairs is not None:
                self._check_recorded(pairs)
                problem = problem or problem_of({**self.to_dict(), "grid": self.grid or pairs.grid})
                _check_pairs_fit(pairs, problem)
                problem.pairs, self.data_sha256 = pairs, pairs.sha256
                sampler = PairsSampler(pairs, self.seed)
            else:
                problem = problem or problem_of(self.to_dict(), layout)
            if self.model == "dd":  # first: a rank's share gives level 0's problem its rows of A
                hierarchy = hierarchy or hierarchy_of(self.to_dict(), problem, layout)
                problem = hierarchy.problem
            arch = architecture(self.to_dict(), problem, hierarchy)
            if pairs is None:
                sampler = make_sampler(self.data_kind(problem), problem, self.modes, self.alpha, self.seed)
            if self.model == "fno":
                from .fno import data_scales
                arch["scales"] = list(data_scales(sampler))
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        return Built(problem, arch, sampler, hierarchy)

    def _check_recorded(self, pairs):
        if self.data_sha256 and self.data_sha256 != pairs.sha256:
            raise ValueError(f"--data {self.data} has changed since this run was started (SHA-256 "
                             f"{pairs.sha256[:16]}..., recorded {self.data_sha256[:16]}...)")

    def data_kind(self, problem):
        """The data kind: as given ('pairs' for a file), else fourier where A has sine modes and solve otherwise."""
        if is_data_file(self.data):
            return "pairs"
        if self.data:
            return self.data
        return "fourier" if problem.constant and problem.family != "matrix" else "solve"

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        """A config from its dict; one written before ``coarse`` went (coarse: false) says coarse_space none."""
        fields = {f.name for f in dataclasses.fields(cls)}
        if d.get("coarse") is False and not d.get("coarse_space"):
            d = dict(d, coarse_space="none")
        return cls(**{k: v for k, v in d.items() if k in fields})


def _check_pairs_fit(pairs, problem):
    """The pairs and a named problem must be on the same nodes."""
    if pairs.n != problem.n or (problem.dim == 2 and tuple(pairs.grid) != tuple(problem.grid)
                                and len(pairs.grid) == 2):
        raise ValueError(f"the pairs in {pairs.path} are on a {'x'.join(map(str, pairs.grid))} grid ({pairs.n} "
                         f"nodes), the {problem.family} problem on {'x'.join(map(str, problem.grid))} "
                         f"({problem.n}); give the problem's --grid")


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
