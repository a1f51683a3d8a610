"""Command line: ``pddattn train | compare | solve | apply | data | bench``.

    pddattn compare --out runs/compare                       # the main job
    pddattn train --model dd --n 1023 --subdomains 32 --out runs/dd
    mpirun -n 4 pddattn train --model dd --out runs/dd4      # distributed
    pddattn train --resume --out runs/dd4                    # continue (any rank count)
    mpirun -n 2 pddattn solve -ksp_type cg -pc_type python \\
        -pc_python_type pddattn.petsc.DDAttentionPC -pddattn_model runs/dd4/checkpoint.pt

A bad argument ends every rank with one line, ``pddattn: error: ...``, and
exit status 2. An unexpected exception on one MPI rank aborts the whole job
(MPI_Abort) so the others do not wait forever.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
import traceback

import torch

from . import checkpoint
from .bench import format_step_times, step_time_comparison
from .compare import compare, format_table, parse_baselines, plot_curves
from .config import FLAT, TrainConfig
from .errors import CollectiveError, ConfigurationError
from .family_cli import add_apply_parser, add_data_parser, add_family_options, cmd_apply, cmd_data, \
    refuse_family_flags, train_generated
from .parallel.layout import launched_under_mpi, make_layout
from .problems import COEFFICIENTS, DATA_KINDS, FAMILIES
from .problems.pairs import is_data_file
from .train import device_missing, train

# Errors every rank raises alike (validated before any communication): a clean exit.
COLLECTIVE_ERRORS = (CollectiveError,)
_DEFAULTS = TrainConfig()


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2."""

    def error(self, message):
        raise ConfigurationError(message)


def _positive_or_none(text):
    return None if text in ("full", "none", "None") else int(text)


def _subdomains_arg(text):
    return int(text) if str(text).isdigit() else str(text).lower()


def _add_model_options(p, model=True):
    g = p.add_argument_group("model")
    if model:
        g.add_argument("--model", choices=("dd", "global", "fno"), default=None,
                       help="operator to train (default dd; fno: the FNO baseline, extra [fno])")
    g.add_argument("--problem", choices=FAMILIES, help="the operator A (default laplace1d; data: none, the pairs of --data FILE alone)")
    g.add_argument("--n", type=int, help=f"interior nodes of a 1D grid (default {_DEFAULTS.problem.n})")
    g.add_argument("--grid", help="grid shape, 1023 or 127x127 (default: --n)")
    g.add_argument("--coefficient", help=f"coefficient field: const, smooth:C, jump:C, lognormal:S, darcy "
                                         f"(kinds {', '.join(COEFFICIENTS)}; default const)")
    g.add_argument("--coefficient-seed", type=int, help="seed of a random coefficient field (default 0)")
    g.add_argument("--matrix", help="a user's SPD matrix: PETSc binary Mat or scipy .npz (sets --problem matrix)")
    g.add_argument("--subdomains", type=_subdomains_arg, help="N, or Nx x Ny for boxes, e.g. 32 or 4x4 (default: 4x4 boxes in 2D, else 32)")
    g.add_argument("--decomposition", choices=("intervals", "boxes", "algebraic"),
                   help="subdomain builder (default: intervals in 1D, boxes in 2D, algebraic for a matrix)")
    g.add_argument("--coarse", dest="coarse_space", choices=("hat", "q1", "harmonic", "nicolaides", "none"),
                   help="coarse space (default: hat for intervals, q1 for boxes, harmonic for algebraic)")
    g.add_argument("--overlap", type=int, help=f"delta, overlap in nodes (default {_DEFAULTS.model.overlap})")
    g.add_argument("--rank", type=int, help=f"rank of each block (default {_DEFAULTS.model.rank})")
    g.add_argument("--coarse-rank", type=_positive_or_none, help="coarse rank r0 (default: full, N - 1; "
                                                                 "the top level's with --levels)")
    g.add_argument("--levels", type=int, help="2: dense coarse block (default); L > 2: multilevel DD attention")
    g.add_argument("--top-size", type=int, help="target size of the dense top level with --levels > 2 (default 64; "
                   "0: coarse subdomains of a fixed size, the top growing with n)")
    g.add_argument("--level-coarse", choices=("harmonic", "nicolaides"),
                   help="coarse space of the coarse levels with --levels > 2 (default harmonic)")
    g.add_argument("--pou", choices=("count", "smooth"), help="partition of unity (default count)")
    g.add_argument("--symmetric", action="store_true", default=None, help="tie K = Q (SPSD operator)")
    g.add_argument("--one-level", dest="coarse_space", action="store_const", const="none",
                   help="drop the coarse term: the same as --coarse none")
    g.add_argument("--init", choices=("random", "schwarz"), help="initial factors (default random)")
    g.add_argument("--init-scale", type=float, help="random init std in natural units (default 0.1)")
    g.add_argument("--fno-width", type=int, help=f"FNO hidden channels (default {_DEFAULTS.model.fno_width})")
    g.add_argument("--fno-modes", type=int, help=f"FNO Fourier modes per axis (default {_DEFAULTS.model.fno_modes})")
    g.add_argument("--fno-layers", type=int, help=f"FNO Fourier layers (default {_DEFAULTS.model.fno_layers})")


def _add_training_options(p):
    g = p.add_argument_group("data and training")
    g.add_argument("--loss", choices=("error", "condition"),
                   help="error: ||M f - u|| on the data (default); condition: log kappa(M A) by Lanczos, "
                        "for symmetric preconditioners (distributed under mpirun as the model is)")
    g.add_argument("--data", metavar="KIND_OR_FILE",
                   help=f"made data ({', '.join(DATA_KINDS)}: fourier for constant coefficients, probe f = A u, "
                        "solve u = A^-1 f; default fourier where A has sine modes, else solve) or the user's "
                        "pairs: a .npz with f and u (optional f_test, u_test), shape (samples, n) or (samples, ny, "
                        "nx), or a folder with f.npy and u.npy (read memory-mapped); without --problem or "
                        "--matrix no A is used")
    g.add_argument("--test-fraction", type=float, help="held-out share of a pairs file without f_test/u_test "
                                                       f"(default {_DEFAULTS.data.test_fraction}, split by --seed)")
    g.add_argument("--modes", type=int, help="K, Fourier modes (default n: many-mode data)")
    g.add_argument("--alpha", type=float, help="spectral decay of the coefficients (default 0)")
    g.add_argument("--steps", type=int, help=f"optimiser steps (default {_DEFAULTS.optim.steps})")
    g.add_argument("--batch", type=int, help=f"global batch size (default {_DEFAULTS.optim.batch})")
    g.add_argument("--lr", type=float, help=f"relative learning rate (default {_DEFAULTS.optim.lr})")
    g.add_argument("--beta2", type=float, help=f"Adam's second-moment decay (default {_DEFAULTS.optim.beta2})")
    g.add_argument("--warmup", type=int, help=f"warm-up steps (default {_DEFAULTS.optim.warmup})")
    g.add_argument("--seed", type=int, help="seed of data and init (default 0)")
    g.add_argument("--dtype", choices=("float32", "float64"), help="default float32")
    g.add_argument("--device", help="torch device (default cpu)")
    g.add_argument("--eval-every", type=int, help=f"steps between test evaluations (default {_DEFAULTS.run.eval_every})")
    g.add_argument("--test-size", type=int, help=f"held-out samples (default {_DEFAULTS.data.test_size})")
    g.add_argument("--target", type=float, help="stop at this test error (default: run all steps)")
    g.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default 1000)")
    g.add_argument("--data-parallel", type=int, help="R data replicas under mpirun (default 1)")


SOLVE_EPILOG = """PETSc options: every single-dash option (-ksp_type cg, -pc_type gamg, -pc_gamg_threshold -1,
-ksp_view, -log_view, -help) goes to PETSc unchanged. DD attention is
-pc_type python -pc_python_type pddattn.petsc.DDAttentionPC, configured by its
-pddattn_* options (-pddattn_model PATH, -pddattn_subdomains 4x4,
-pddattn_overlap, -pddattn_coarse, -pddattn_rank, -pddattn_levels, ...): run
with -help to list them all with their defaults, or see docs/reference.md.

"""


def build_parser():
    p = _Parser(prog="pddattn", description="Domain-decomposition attention (Koehler and Rheinbach).",
                epilog="Threads: torch uses one per core (under mpirun the ranks on a node share the cores). "
                       "On a machine shared with other jobs set OMP_NUM_THREADS=1 for small models: beside a "
                       "second training a 300-step run took 7.7 s with the default threads and 3.4 s with one "
                       "(3.5 s either way alone); never OMP_WAIT_POLICY=ACTIVE there (42 s). "
                       "benchmarks/threads.py measures it.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser("train", help="train one model (serial or under mpirun)",
                       epilog="Threads: one per core; on a machine shared with other jobs, OMP_NUM_THREADS=1 "
                              "is as fast alone and 2.3x faster beside a second training for small models "
                              "(pddattn --help).")
    _add_model_options(t)
    _add_training_options(t)
    add_family_options(t)
    t.add_argument("--out", help="folder for log.jsonl and checkpoint.pt (default runs/MODEL-DATE-TIME)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    t.add_argument("--overwrite", action="store_true", help="replace the run in --out (refused without it)")
    add_apply_parser(sub)
    add_data_parser(sub)
    c = sub.add_parser("compare", help="the main job: DD against the global baseline")
    _add_model_options(c, model=False)
    _add_training_options(c)
    c.add_argument("--global-rank", type=int, help="rank of the global baseline (default 64)")
    c.add_argument("--budget", type=int, help="size every model at about this many parameters by one rule "
                                              "(DD's subdomains, ranks, overlap, symmetry; the global rank; "
                                              "the FNO's width and modes): docs/reference.md")
    c.add_argument("--global-lr", type=float, help="lr of the global model (default --lr)")
    c.add_argument("--dd-lr", type=float, help="lr of the DD model (default --lr)")
    c.add_argument("--global-steps", type=int, help="steps of the global model (default --steps)")
    c.add_argument("--baseline", default="global", help="baselines next to DD: global, fno or global,fno "
                                                         "(default global; fno needs the extra [fno])")
    c.add_argument("--fno-lr", type=float, help="AdamW lr of the FNO (default 1e-3, chosen by a sweep: "
                                                "docs/results.md)")
    c.add_argument("--out", default="runs/compare", help="output folder (default runs/compare)")
    from .petsc.verdict import RULE
    s = sub.add_parser("solve", help="PETSc KSP solve of A u = f; PETSc options pass through",
                       epilog=SOLVE_EPILOG + textwrap.fill(RULE, 79), formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--problem", choices=[f for f in FAMILIES if f != "data"], help="problem family (default: the model's, else laplace1d)")
    s.add_argument("--n", type=int, default=None, help="1D grid nodes (default: the model's, else 1023)")
    s.add_argument("--grid", help="grid, 1023 or 127x127 (default: the model's)")
    s.add_argument("--coefficient", help="const, smooth:C, jump:C, lognormal:S, darcy (default: the model's, else const)")
    s.add_argument("--coefficient-seed", type=int, default=0, help="seed of a random coefficient (default 0)")
    s.add_argument("--matrix", help="a PETSc binary Mat or scipy .npz file (problem 'matrix')")
    s.add_argument("--dmda", action="store_true",
                   help="assemble a 2D problem on a PETSc DMDA (process boxes); DDAttentionPC takes its grid")
    s.add_argument("--rhs", default="fourier",
                   help="fourier (constant coefficients; else solve), probe, solve, or a .npy / PETSc binary Vec file")
    s.add_argument("--modes", type=int, default=None, help="Fourier modes of the rhs (default n)")
    s.add_argument("--seed", type=int, default=0)
    b = sub.add_parser("bench", help="training-step time: DD against global at equal parameters",
                       description="Seconds per training step (forward, backward, Adam) of a DD model and of the "
                                   "global model at equal parameters, on the 1D Laplacian.")
    b.add_argument("--n", type=int, default=4095, help="grid nodes (default 4095)")
    b.add_argument("--subdomains", type=int, default=64, help="DD subdomains N (default 64)")
    b.add_argument("--overlap", type=int, default=2, help="DD overlap delta (default 2)")
    b.add_argument("--rank", type=int, default=8, help="DD local rank r (default 8)")
    b.add_argument("--levels", type=int, default=2, help="levels of the DD model (default 2)")
    b.add_argument("--batch", type=int, default=64, help="samples per step (default 64)")
    b.add_argument("--repeats", type=int, default=50, help="timed steps per model (default 50)")
    b.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="default float32")
    b.add_argument("--device", default="cpu", help="torch device (default cpu)")
    b.add_argument("--json", help="also write the measurements here")
    return p


def config_from_args(args, base=None):
    """A TrainConfig from parsed arguments: explicit ones override ``base``."""
    base = base or TrainConfig()
    fields = set(FLAT)
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    for k in ("data", "matrix"):  # files by absolute path: the run can be resumed from any folder
        if k in given and (k == "matrix" or is_data_file(given[k])) and os.path.exists(given[k]):
            given[k] = os.path.abspath(given[k])
    if is_data_file(given.get("data")) and not given.get("problem") and not given.get("matrix"):
        given["problem"] = "data"  # the user's pairs alone: no A
    return base.replace(**given), given


def _cmd_train(args, layout):
    if args.factors == "generated":
        train_generated(args, layout)
        return
    refuse_family_flags(args)
    cfg, given = config_from_args(args)
    if args.resume and not args.out:
        raise ConfigurationError("--resume needs --out, the folder of the run to continue")
    out = args.out or layout.bcast(time.strftime(f"runs/{cfg.model.kind}-%Y%m%d-%H%M%S"))
    stored = _stored_run(out, layout)
    if args.resume:
        if stored is None:
            raise ConfigurationError(f"--resume: there is no run in {out} (no checkpoint.pt) to continue")
        cfg = _resumed_config(out, stored, given)
    elif stored is not None and not args.overwrite:
        raise ConfigurationError(f"{out} holds a run (checkpoint at step {stored['progress']['step']}); continue "
                                 "it with --resume, replace it with --overwrite, or choose another --out")
    _, summary = train(cfg, out=out, resume=args.resume, layout=layout)
    if layout.is_root:
        kappa = (f", kappa(M A) ~ {summary['condition']:.3f} (model of step {summary['best_step']})"
                 if "condition" in summary else "")
        print(f"{summary['model']}: {summary['parameters']:,} parameters, test error "
              f"{summary['test_error']:.3e}{kappa} after {summary['steps']} steps, {summary['time']:.1f} s training")
        print(f"wrote {os.path.join(out, 'checkpoint.pt')} and {os.path.join(out, 'log.jsonl')}")


def _stored_run(out, layout):
    """The checkpoint payload of the run in ``out``, or None where there is none (decided on the root)."""
    path = os.path.join(out, "checkpoint.pt")
    if not layout.bcast(os.path.isfile(path)):
        return None
    return checkpoint.read_collective(path, layout)


_MAY_CHANGE_ON_RESUME = ("steps", "target", "eval_every", "checkpoint_every", "device", "data_parallel")


def _resumed_config(out, payload, given):
    """The stored run's config with the flags that may change; one line for a clash or a finished run."""
    stored = TrainConfig.from_dict(payload["config"])
    flat = stored.to_dict()
    for k, v in given.items():
        if k not in _MAY_CHANGE_ON_RESUME and not _same_setting(k, flat[k], v):
            raise ConfigurationError(f"the run in {out} has --{k.replace('_', '-')} {flat[k]!r}, not "
                                     f"{v!r}; resume with the run's own settings")
    cfg = stored.replace(**{k: v for k, v in given.items() if k in _MAY_CHANGE_ON_RESUME})
    step = payload["progress"]["step"]
    if step >= cfg.optim.steps:
        raise ConfigurationError(f"the run in {out} is finished (step {step} of --steps {cfg.optim.steps}); to "
                                 f"continue it, resume with more --steps (e.g. --steps {2 * max(step, 1)})")
    return cfg


def _same_setting(name, old, new):
    """Equal settings; a file given by another path (relative, absolute) is the same file."""
    if old == new:
        return True
    if name in ("data", "matrix") and isinstance(old, str) and isinstance(new, str) and os.path.exists(old) \
            and os.path.exists(new):
        return os.path.samefile(old, new)
    return False


def _cmd_compare(args, layout):
    if layout.world_size > 1:
        raise ConfigurationError("compare runs on one process; use `mpirun ... pddattn train` for MPI runs")
    cfg, given = config_from_args(args)
    if args.budget is not None:
        _check_budget(args, given)
    results = compare(cfg, 64 if args.global_rank is None else args.global_rank, args.global_lr, args.dd_lr, out=args.out,
                      global_steps=args.global_steps, baselines=parse_baselines(args.baseline), fno_lr=args.fno_lr,
                      budget=args.budget)
    print(format_table(results))
    png = plot_curves(results, os.path.join(args.out, "curves.png"))
    print(f"wrote {os.path.join(args.out, 'results.json')}" +
          (f" and {png}" if png else " (curves.png skipped: install matplotlib, pip install 'pddattn[plot]')"))


_SIZED_BY_BUDGET = ("subdomains", "rank", "coarse_rank", "overlap", "symmetric", "fno_width", "fno_modes")


def _check_budget(args, given):
    """One line for a --budget that cannot be met or that clashes with a size given by hand."""
    if args.budget < 1:
        raise ConfigurationError(f"--budget must be a positive number of parameters, got {args.budget}")
    if given.get("levels", 2) > 2:
        raise ConfigurationError("--budget sizes two-level DD models; drop --levels (or drop --budget)")
    clash = [k for k in _SIZED_BY_BUDGET if k in given] + (["global_rank"] if args.global_rank is not None else [])
    if clash:
        flag = "--" + clash[0].replace("_", "-")
        raise ConfigurationError(f"--budget sizes every model by its rule; drop {flag} (or drop --budget)")


def _cmd_solve(args, layout):
    from .petsc import solve_main
    solve_main(args, layout)


def _cmd_bench(args, layout):
    if device_missing(args.device):
        raise ConfigurationError(device_missing(args.device))
    result = step_time_comparison(args.n, args.subdomains, args.overlap, args.rank, args.batch,
                                  args.repeats, args.dtype, args.device, levels=args.levels)
    print(format_step_times(result))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)


COMMANDS = {"train": _cmd_train, "compare": _cmd_compare, "solve": _cmd_solve, "bench": _cmd_bench,
            "apply": cmd_apply, "data": cmd_data}


def main(argv=None):
    """Entry point of the ``pddattn`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    # PETSc options (-ksp_type ...) belong to PETSc, not argparse.
    ours, petsc_opts = _split_petsc_options(argv)
    layout, world = None, _world()
    try:
        args = build_parser().parse_args(ours)
        args.petsc_options = petsc_opts
        if petsc_opts and args.command != "solve":
            raise ConfigurationError(f"unrecognized arguments: {' '.join(petsc_opts)}")
        layout = make_layout(getattr(args, "data_parallel", None) or 1)
        _limit_threads(layout)
        COMMANDS[args.command](args, layout)
    except (COLLECTIVE_ERRORS + (ValueError,)) as exc:
        if world is not None and not isinstance(exc, COLLECTIVE_ERRORS):
            _abort(world)  # raised on this rank only: the others would wait forever
        if world is None or world.Get_rank() == 0:
            print(f"pddattn: error: {exc}", file=sys.stderr)
        return 2
    except _local_errors() as exc:  # PETSc failed, maybe on this rank alone: one line, then end every rank
        print(f"pddattn: error: {exc}" + (f" (rank {world.Get_rank()})" if world is not None else ""),
              file=sys.stderr)
        sys.stderr.flush()
        if world is not None:
            world.Abort(2)
        return 2
    except Exception as exc:
        if not _out_of_memory(exc):
            if world is not None:
                _abort(world)
            raise
        where = f" on rank {world.Get_rank()}" if world is not None else ""
        print(f"pddattn: error: out of memory{where}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
              "lower --n/--grid, --batch or --test-size, or use more ranks", file=sys.stderr)
        sys.stderr.flush()
        if world is not None:
            world.Abort(2)  # one rank's allocation failed: end the others instead of leaving them waiting
        return 2
    except KeyboardInterrupt:
        return 130
    except BaseException:
        if world is not None:
            _abort(world)
        raise
    return 0


def _local_errors():
    """Errors raised on one rank that still deserve one line (PETSc's), when PETSc is loaded."""
    solve = sys.modules.get("pddattn.petsc.solve")
    return (solve.PetscFailure,) if solve is not None else ()


def _out_of_memory(exc):
    """numpy's MemoryError, torch's OutOfMemoryError, or the CPU allocator's RuntimeError."""
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    return name == "OutOfMemoryError" or (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))


def _world():
    """COMM_WORLD when launched by mpirun with more than one rank, else None (no MPI import)."""
    if not launched_under_mpi():
        return None
    from mpi4py import MPI
    return MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None


def _abort(world):
    """Print this rank's traceback and end the whole MPI job (MPI_Abort)."""
    print(f"pddattn: rank {world.Get_rank()} failed; aborting all {world.Get_size()} ranks", file=sys.stderr)
    traceback.print_exc()
    sys.stderr.flush()
    world.Abort(1)


def _split_petsc_options(argv):
    """Separate PETSc-style single-dash options (-ksp_type cg) from ours (--n 10)."""
    ours, petsc = [], []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("-") and not a.startswith("--") and len(a) > 2 and not _is_number(a):
            petsc.append(a)
            if i + 1 < len(argv) and (not argv[i + 1].startswith("-") or _is_number(argv[i + 1])):
                petsc.append(argv[i + 1])  # its value, negative ones too (-pc_gamg_threshold -1)
                i += 1
        else:
            ours.append(a)
        i += 1
    return ours, petsc


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _limit_threads(layout):
    """One team of torch threads per core: ranks sharing a node split its cores."""
    if layout.world_size > 1:
        from mpi4py import MPI
        local = layout.comm.Split_type(MPI.COMM_TYPE_SHARED)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local.Get_size()))
        local.Free()


if __name__ == "__main__":
    sys.exit(main())
