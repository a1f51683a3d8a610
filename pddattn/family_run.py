"""Training one generated-factor model over a family, its checkpoint, and the model on a new operator.

    pddattn train --factors generated --problem diffusion2d --grid 63x63 --coefficient darcy \\
        --operators 64 --steps 2000 --out runs/fam

The training operators are the family's members with coefficient seeds
1..K (``--operators K``), the held-out ones seeds 1000001.. (never trained
on): the test error is measured on those alone, next to classical two-level
Schwarz (exact local solves, additive and restricted) on the same structure
at the same number of steps. Each operator is set up once per run (features,
Phi, A_0's factorization: the hierarchy's batched ``values``), at most
``--operators-held`` at a time.

The checkpoint (``checkpoint.pt``) stores the :class:`FamilySpec` and the
generator's weights; the subdomains are stored as a box size in nodes, so
that the model serves any grid of its family (:func:`model_for`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from scipy.sparse.linalg import spsolve

from .checkpoint import CheckpointError, atomic_save
from .errors import ConfigurationError
from .family import COARSE_BLOCKS, FamilyDDAttention, fit, relative_errors, schwarz
from .generator import GENERATOR_DTYPES, LOCAL_FORMS
from .hierarchy import build_hierarchy
from .problems import make_problem, operator_problem
from .problems.samplers import make_sampler
from .problems.triplets import operator_of_field, read_triplets

__all__ = ["FamilySpec", "FORMAT", "train_family", "save", "load", "model_for", "HELD_OUT_SEED"]

FORMAT, VERSION = "pddattn-family", 1
HELD_OUT_SEED = 1_000_001  # held-out members: coefficient seeds from here; training seeds stay below it


@dataclasses.dataclass(frozen=True)
class FamilySpec:
    """A generated-factor model and its training (plain data: the checkpoint stores it)."""

    problem: str = "diffusion2d"
    grid: tuple = (63, 63)
    coefficient: str = "darcy"
    box: int = 8              # box side in nodes: (nx + 1) / box boxes per axis on any grid
    overlap: int = 2
    coarse: str = "q1"
    rank: int = 16
    local: str = "direct"     # direct: Q_i = h G(X_i) / sqrt(s_i); ritz: Rayleigh-Ritz on the span of G(X_i)
    coarse_functions: int = 0  # generated coarse functions per box, appended to the coarse space
    coarse_block: str = "exact"  # exact: A_0^-1 factored; generated: Q_0(A_0) Q_0(A_0)^T
    coarse_rank: int = 16      # r_0 of a generated coarse block
    width: int = 32
    depth: int = 4
    generator_dtype: str = "float64"  # the generators' arithmetic (float32: about 4x faster convolutions)
    operators: int = 64
    held: int = 256           # operators set up at once (memory)
    data: str = "ones"        # ones: f = 1 (Darcy); solve: white f, u = A^-1 f; probe: white u, f = A u
    samples: int = 16         # pairs per operator for data 'solve'
    steps: int = 2000
    batch: int = 1
    per_step: int = 1         # operators per optimiser step (split over --data-parallel replicas)
    lr: float = 1e-3
    loss: str = "error"       # error: relative L2 error after --unroll steps; condition: log kappa(M(A) A)
    unroll: int = 1
    seed: int = 0
    test_operators: int = 16

    def __post_init__(self):
        object.__setattr__(self, "grid", tuple(int(g) for g in self.grid))
        if self.problem != "diffusion2d" or len(self.grid) != 2:
            raise ConfigurationError("--factors generated serves 2D stencil families: --problem diffusion2d with "
                                     "an nx x ny --grid")
        for name in ("box", "rank", "width", "depth", "operators", "held", "samples", "steps", "batch", "unroll",
                     "test_operators", "per_step", "coarse_rank"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.coarse_functions < 0:
            raise ConfigurationError(f"--coarse-functions must be 0 or more, got {self.coarse_functions}")
        if self.operators >= HELD_OUT_SEED:
            raise ConfigurationError(f"--operators must stay below {HELD_OUT_SEED} (the held-out seeds)")
        if self.data not in ("ones", "solve", "probe") and not self.from_file:
            raise ConfigurationError(f"--data {self.data}: generated factors train on 'ones' (f = 1), 'solve', "
                                     "'probe' or a triplet file (.npz or .h5 with a, f, u)")
        if self.loss not in ("error", "condition"):
            raise ConfigurationError(f"--loss {self.loss}: generated factors train on error or condition")
        if self.local not in LOCAL_FORMS:
            raise ConfigurationError(f"--local-factors {self.local}: use one of {LOCAL_FORMS}")
        if self.generator_dtype not in GENERATOR_DTYPES:
            raise ConfigurationError(f"--generator-dtype {self.generator_dtype}: use one of "
                                     f"{tuple(GENERATOR_DTYPES)}")
        if self.coarse_block not in COARSE_BLOCKS:
            raise ConfigurationError(f"--coarse-block {self.coarse_block}: use exact or generated")
        if self.coarse_block == "generated" and (self.coarse != "q1" or self.coarse_functions):
            raise ConfigurationError("--coarse-block generated needs --coarse q1 and no --coarse-functions (A_0 "
                                     "is then a stencil on the grid of box corners)")
        if self.coarse in ("none", "hat"):
            raise ConfigurationError(f"--coarse {self.coarse}: generated factors need a 2D coarse space "
                                     "(q1, harmonic or nicolaides)")

    @property
    def from_file(self):
        return str(self.data).endswith((".npz", ".h5", ".hdf5"))

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        """A stored spec; one written before the Rayleigh-Ritz form has the direct one."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{"local": "direct", **{k: (tuple(v) if k == "grid" else v) for k, v in d.items() if k in known}})


def boxes_for(grid, box):
    """Boxes per axis so that each is about ``box`` nodes wide: round((n + 1) / box), at least 1."""
    return [max(1, int(round((g + 1) / box))) for g in grid]


def decomposition_spec(spec, grid):
    return {"kind": "boxes", "N": boxes_for(grid, spec.box), "delta": spec.overlap, "pou": "count",
            "coarse": spec.coarse}


def members(spec, seeds, grid=None):
    """The family's members with coefficient ``seeds`` on ``grid`` (default the training grid)."""
    return [make_problem(spec.problem, grid or spec.grid, spec.coefficient, seed=s) for s in seeds]


def pairs(spec, problems, seed):
    """[(f, u)] per operator: f = 1 (data 'ones'), or ``spec.samples`` pairs with white f, u = A^-1 f
    (data 'solve') or white u, f = A u (data 'probe': every frequency alike, what a preconditioner needs)."""
    if spec.data == "ones":
        return [(torch.ones(1, p.n, dtype=torch.float64), torch.as_tensor(p.solve(np.ones((p.n, 1))).T))
                for p in problems]
    return [tuple(torch.as_tensor(a) for a in make_sampler(spec.data, p, seed=seed).sample(spec.samples))
            for p in problems]


class Members:
    """The operators and their (f, u) pairs a run trains and tests on: the family's seeds (training 1..K,
    held-out from HELD_OUT_SEED), or a triplet file's training and test splits (``--data FILE``)."""

    def __init__(self, spec):
        self.spec = spec
        self.file = {split: read_triplets(spec.data, split) for split in ("train", "test")} \
            if spec.from_file else None

    def count(self, split):
        if self.file is None:
            return self.spec.operators if split == "train" else self.spec.test_operators
        return min(len(self.file[split].a), self.spec.operators if split == "train" else self.spec.test_operators)

    def get(self, split, indices, seed=0, grid=None):
        """(matrices, [(f, u)]) of members ``indices`` of ``split``."""
        if self.file is not None:
            t = self.file[split]
            return ([operator_of_field(t.a[i]) for i in indices],
                    [(torch.as_tensor(t.f[i:i + 1]), torch.as_tensor(t.u[i:i + 1])) for i in indices])
        base = 1 if split == "train" else HELD_OUT_SEED
        problems = members(self.spec, [base + i for i in indices], grid)
        return [p.A for p in problems], pairs(self.spec, problems, seed)

    @property
    def grid(self):
        return self.file["train"].grid if self.file is not None else self.spec.grid


def new_model(spec, problem, comm=None):
    """An untrained model of ``spec`` on the grid of ``problem`` (its hierarchy's structure); its boxes shared
    by the ranks of ``comm``."""
    return FamilyDDAttention(build_hierarchy(problem, decomposition_spec(spec, problem.grid)), spec.rank,
                             spec.width, spec.depth, seed=spec.seed, comm=comm,
                             coarse_functions=spec.coarse_functions, coarse_block=spec.coarse_block,
                             coarse_rank=spec.coarse_rank, local=spec.local,
                             generator_dtype=GENERATOR_DTYPES[spec.generator_dtype])


def train_family(spec, out, comm=None, replicas=None):
    """Train on the training members in chunks of ``spec.held`` operators, measure on the held-out ones, save;
    the summary.

    Under ``comm`` the ranks share the boxes: each generates its own boxes' factors, the generator's
    gradients are summed, and everything else (operators, data, the loss) is the same on every rank.
    ``replicas`` (replica, R, data_comm): R data replicas, each with its own ``comm``, split every step's
    ``spec.per_step`` operators. The first rank of the first replica writes.
    """
    replica = 0 if replicas is None else replicas[0]
    out, root = Path(out), (comm is None or comm.Get_rank() == 0) and replica == 0
    if root:
        out.mkdir(parents=True, exist_ok=True)
    source = Members(spec)
    indices = list(range(source.count("train")))
    first, _ = source.get("train", indices[:1])
    model = new_model(spec, operator_problem(first[0], source.grid), comm)
    chunks = [indices[i:i + spec.held] for i in range(0, len(indices), spec.held)]
    per_chunk = [spec.steps * len(c) // len(indices) for c in chunks]
    per_chunk[-1] += spec.steps - sum(per_chunk)
    t0, setup, history = time.perf_counter(), 0.0, []
    with open(out / "log.jsonl" if root else os.devnull, "w") as fh:
        for chunk, steps in zip(chunks, per_chunk):
            ts = time.perf_counter()
            matrices, data = source.get("train", chunk, seed=spec.seed + 1)
            ops = model.values(matrices)
            setup += time.perf_counter() - ts

            def record(step, loss, fh=fh, base=len(history)):
                history.append(loss)
                if step % 50 == 0 or step == steps - 1:
                    fh.write(json.dumps({"step": base + step, "loss": loss}) + "\n")
            fit(model, ops, data, steps, lr=spec.lr, batch=spec.batch, seed=spec.seed, unroll=spec.unroll,
                log=record, per_step=spec.per_step, replicas=replicas, loss=spec.loss)
            for op in ops:
                op.free()
    train_s = time.perf_counter() - t0 - setup
    summary = {"parameters": model.num_parameters(), "train_s": train_s, "setup_s": setup, "steps": spec.steps,
               "operators": len(indices), "final_loss": float(np.mean(history[-20:])),
               **held_out_errors(model, spec, source=source)}
    if root:
        save(out / "checkpoint.pt", model, spec, summary)
    return model, summary


def held_out_errors(model, spec, grid=None, count=None, source=None):
    """Mean relative L2 error on held-out members after 1 and ``unroll`` steps, with AS and RAS beside."""
    source = source or Members(spec)
    matrices, data = source.get("test", range(count or source.count("test")), seed=spec.seed + 2, grid=grid)
    target = model if grid is None else transfer(model, spec, operator_problem(matrices[0], grid))
    ops = target.values(matrices)
    ks = sorted({1, spec.unroll})
    out = {"test_operators": len(matrices), "test_error": {f"K={k}": relative_errors(target, ops, data, k)
                                                          for k in ks}}
    for name, restricted in (("AS", False), ("RAS", True)):
        out[name] = {f"K={k}": relative_errors(target, ops, data, k, apply_of=lambda op, r=restricted:
                                               schwarz(target, op, r)) for k in ks}
    if spec.from_file:  # u from another discretization (a finer grid): A^-1 f itself errs, every method's floor
        out["discrete_solution"] = float(np.mean([
            np.linalg.norm(spsolve(A.tocsc(), f[0].numpy()) - u[0].numpy()) / np.linalg.norm(u[0].numpy())
            for A, (f, u) in zip(matrices, data)]))
    for op in ops:
        op.free()
    return out


def transfer(model, spec, problem):
    """The model's weights on another grid of its family (boxes of the same size in nodes)."""
    target = new_model(spec, problem, model.comm)
    target.load_state_dict(model.state_dict())
    return target


def save(path, model, spec, summary=None):
    atomic_save({"format": FORMAT, "version": VERSION, "spec": spec.to_dict(), "state": model.state_dict(),
                 "summary": summary or {}}, path)


def is_family(payload):
    return isinstance(payload, dict) and payload.get("format") == FORMAT


def load(path):
    """(spec, payload) of a family checkpoint; one line for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line
        raise CheckpointError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None
    if not is_family(payload):
        raise CheckpointError(f"{path} is not a generated-factor (family) model")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path} has family checkpoint version {payload.get('version')}, this pddattn reads "
                              f"{VERSION}")
    return FamilySpec.from_dict(payload["spec"]), payload


def model_for(spec, payload, A, grid):
    """The stored model on operator ``A`` (scipy sparse) on ``grid``: its hierarchy built on A's pattern.

    One line (ValueError) where the model cannot serve A: not a 2D grid, a grid that does not hold A's
    rows, or another stencil than its family's 5-point one.
    """
    grid = tuple(int(g) for g in grid)
    if len(grid) != 2:
        raise ValueError(f"a generated-factor model of {spec.problem} needs a 2D grid (--grid nx x ny), "
                         f"got {'x'.join(map(str, grid))}")
    if int(np.prod(grid)) != A.shape[0]:
        raise ValueError(f"grid {'x'.join(map(str, grid))} has {int(np.prod(grid))} nodes, the operator "
                         f"{A.shape[0]} rows")
    model = new_model(spec, operator_problem(A, grid))
    model.load_state_dict(payload["state"])
    return model.eval()


def square_grid(n):
    """The square grid of n nodes, or None."""
    side = int(round(np.sqrt(n)))
    return (side, side) if side * side == n else None


def check_out(out, overwrite):
    """Refuse to replace a stored run without ``overwrite``."""
    if out and os.path.isfile(os.path.join(out, "checkpoint.pt")) and not overwrite:
        raise ConfigurationError(f"{out} holds a run; replace it with --overwrite, or choose another --out")


def format_summary(spec, summary):
    """The training's result in a few lines: held-out errors next to AS and RAS at the same steps."""
    ks = list(summary["test_error"])
    cells = lambda d: " / ".join(f"{d[k]:.3e}" for k in ks)  # noqa: E731
    return "\n".join([
        f"generated factors: {summary['parameters']:,} parameters, {summary['operators']} training operators, "
        f"{summary['steps']} steps in {summary['train_s']:.1f} s (+ {summary['setup_s']:.1f} s set-up)",
        f"held-out operators ({summary['test_operators']}), mean relative L2 error at {', '.join(ks)}:",
        f"  learned                      {cells(summary['test_error'])}",
        f"  AS (exact local solves)      {cells(summary['AS'])}",
        f"  RAS (exact local solves)     {cells(summary['RAS'])}"]
        + ([f"  A^-1 f (exact discrete solve, the floor of every method on this grid) "
            f"{summary['discrete_solution']:.3e}"] if "discrete_solution" in summary else []))
