"""The command line of family models and data: ``train --factors generated``, ``apply``, ``data``.

    pddattn train --factors generated --operators 64 --out runs/fam
    pddattn apply --model runs/fam/checkpoint.pt --data triplets.npz --out u.npy --refine 300
    pddattn data darcy --grid 85 --train 1000 --test 200 --out darcy85.h5

Their options and what each command does; cli.py parses and dispatches.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from . import family_run
from .apply import apply_main
from .decomposition import parse_subdomains
from .errors import ConfigurationError
from .problems import darcy_data
from .problems.families import parse_grid
from .problems.triplets import read_triplets

__all__ = ["add_family_options", "add_apply_parser", "add_data_parser", "refuse_family_flags", "train_generated",
           "cmd_apply", "cmd_data"]


def add_family_options(p):
    g = p.add_argument_group("one model for a family of operators (--factors generated)")
    g.add_argument("--factors", choices=("free", "generated"), default="free",
                   help="free: Q_i, K_i are parameters of one matrix (the paper's model, default); generated: "
                        "Q_i = G(X_i(A)) by a network shared by all subdomains, trained once on a family "
                        "(--operators members; defaults diffusion2d 63x63 darcy, 8x8 boxes, --data ones)")
    g.add_argument("--operators", type=int, help="training members of the family: coefficient seeds 1..K "
                                                 "(default 64); held-out seeds from 1000001 are tested")
    g.add_argument("--operators-held", type=int, help="operators set up at once (default 256)")
    g.add_argument("--test-operators", type=int, help="held-out operators measured (default 16)")
    g.add_argument("--unroll", type=int, help="train through K unrolled steps u += M(A)^-1 (f - A u) (default 1)")
    g.add_argument("--operators-per-step", type=int, help="operators per optimiser step, their losses averaged "
                                                          "(default 1, or R with --data-parallel R: one each)")
    g.add_argument("--coarse-functions", type=int, help="coarse functions per box generated from the operator and "
                                                        "appended to the coarse space (default 0: Q1 alone)")
    g.add_argument("--local-factors", choices=("direct", "ritz"),
                   help="direct: Q_i = h G(X_i) / sqrt(s_i) (default); ritz: G(X_i) (plus the box's lowest sine "
                        "modes) spans a subspace on which A_i^-1 is taken by Rayleigh-Ritz, Q_i Q_i^T = "
                        "V (V^T A_i V)^-1 V^T")
    g.add_argument("--coarse-block", choices=("exact", "generated"),
                   help="exact: A_0^-1 by a factorization of A_0 (default); generated: Q_0 Q_0^T with Q_0 generated "
                        "from A_0's stencil on the grid of box corners by a second network (rank --coarse-rank, "
                        "default 16; q1 coarse space)")
    g.add_argument("--generator-width", type=int, help="channels of the generator's convolutions (default 32)")
    g.add_argument("--generator-depth", type=int, help="3x3 convolutions of the generator (default 4)")
    g.add_argument("--generator-dtype", choices=("float64", "float32"),
                   help="the generator's weights and arithmetic (default float64; float32 convolutions run about "
                        "4x faster on a CPU); the operator's arithmetic stays float64")


def add_apply_parser(sub):
    a = sub.add_parser("apply", help="a trained model's answer u = M(A)^-1 f on new operators, --refine K by CG",
                       description="Write u for every right-hand side: a generated-factor model on any operator of "
                                   "its family (a matrix file, or the fields of a triplet file), a free-factor one "
                                   "on its own matrix. --refine K runs K steps of CG preconditioned by the model "
                                   "from its answer; every residual printed is a true one.")
    a.add_argument("--model", required=True, help="checkpoint.pt of `pddattn train`")
    a.add_argument("--matrix", help="the operator: PETSc binary Mat or scipy .npz (with --rhs)")
    a.add_argument("--grid", help="the matrix's grid, e.g. 127x127 (default: square)")
    a.add_argument("--rhs", help="right-hand sides: .npy of shape (n,), (B, n) or (B, ny, nx)")
    a.add_argument("--solution", help="the exact u (.npy, as --rhs), to print the error")
    a.add_argument("--data", help="triplets .npz: fields a, right-hand sides f and solutions u on the full s x s "
                                  "grid (the FNO data's convention: docs/reference.md)")
    a.add_argument("--split", choices=("train", "test"), default="train",
                   help="which split of --data (an .h5 group, or an .npz's a_test, f_test, u_test; default train)")
    a.add_argument("--out", required=True, help="where u is written (.npy; for triplets (B, s, s), ring 0)")
    a.add_argument("--refine", type=int, default=0, help="CG steps preconditioned by M(A)^-1 (default 0)")
    a.add_argument("--rtol", type=float, default=0.0, help="stop refining below this true relative residual")


def add_data_parser(sub):
    d = sub.add_parser("data", help="regenerate a benchmark's data set by its recipe: darcy (the FNO paper's)",
                       description="The Darcy benchmark (Li et al. 2021) regenerated by its recipe: fields "
                                   "a = 12 / 3, f = 1, solved on the fine grid and subsampled (problems/"
                                   "darcy_data.py). Regenerated, not the original files.")
    d.add_argument("dataset", choices=("darcy",))
    d.add_argument("--grid", default="85", help="nodes a side, boundary included: 85, or several (85,141)")
    d.add_argument("--train", type=int, default=1000, help="training samples (default 1000)")
    d.add_argument("--test", type=int, default=200, help="test samples (default 200)")
    d.add_argument("--resolution", type=int, default=421, help="the fine grid's nodes a side (default 421)")
    d.add_argument("--seed", type=int, default=0, help="seed of the fields (default 0)")
    d.add_argument("--out", required=True, help="darcy85.h5 (HDF5) or .npz (triplets); with several grids "
                                                "each file gets _GRID before its suffix")


def refuse_family_flags(args):
    """One line for a --factors generated flag given to a free-factor training."""
    for flag in ("operators", "operators_held", "test_operators", "unroll", "generator_width", "generator_depth",
                 "generator_dtype", "operators_per_step", "coarse_functions", "coarse_block", "local_factors"):
        if getattr(args, flag) is not None:
            raise ConfigurationError(f"--{flag.replace('_', '-')} belongs to --factors generated")


_NOT_GENERATED = ("model", "n", "matrix", "decomposition", "levels", "top_size", "level_coarse",
                  "pou", "symmetric", "init", "init_scale", "modes", "alpha", "beta2", "warmup", "dtype",
                  "device", "eval_every", "test_size", "target", "checkpoint_every", "resume",
                  "coefficient_seed", "test_fraction", "fno_width", "fno_modes", "fno_layers")


def train_generated(args, layout):
    """``train --factors generated``: one model for a family (family_run.py)."""
    given = [k for k in _NOT_GENERATED if getattr(args, k, None) not in (None, False)]
    if given:
        raise ConfigurationError(f"--{given[0].replace('_', '-')} does not apply to --factors generated")
    if args.coarse_rank is not None and args.coarse_block != "generated":
        raise ConfigurationError("--coarse-rank applies to --factors generated with --coarse-block generated only")
    per_step = args.operators_per_step or layout.data_size
    if per_step < layout.data_size:
        raise ConfigurationError(f"--operators-per-step {per_step} gives {layout.data_size} data replicas too few "
                                 "operators; give at least one per replica")
    grid = parse_grid(args.grid or "63x63")
    data_file = args.data is not None and str(args.data).endswith((".npz", ".h5", ".hdf5"))
    if data_file:  # a user's family: the triplets' grid, all their training and test members by default
        train, test = (read_triplets(args.data, split) for split in ("train", "test"))
        if args.grid and parse_grid(args.grid) != train.grid:
            raise ConfigurationError(f"--grid {args.grid}: the triplets in {args.data} are on the "
                                     f"{train.grid[0]}x{train.grid[1]} interior grid")
        grid, args.data = train.grid, os.path.abspath(args.data)
        args.operators = args.operators or len(train.a)
        args.test_operators = args.test_operators or len(test.a)
        args.coefficient = args.coefficient or "file"
    box = 8
    if args.subdomains is not None:
        N = parse_subdomains(str(args.subdomains))
        if len(N) != 2:
            raise ConfigurationError("--factors generated takes boxes, --subdomains Nx x Ny")
        box = max(1, int(round((grid[0] + 1) / N[0])))
    values = {"problem": args.problem, "grid": grid, "coefficient": args.coefficient, "box": box,
              "overlap": args.overlap, "coarse": args.coarse_space, "rank": args.rank,
              "local": args.local_factors, "coarse_functions": args.coarse_functions, "coarse_block": args.coarse_block,
              "coarse_rank": args.coarse_rank, "width": args.generator_width,
              "depth": args.generator_depth, "generator_dtype": args.generator_dtype, "operators": args.operators, "held": args.operators_held,
              "data": args.data, "steps": args.steps, "batch": args.batch, "lr": args.lr, "unroll": args.unroll, "loss": args.loss,
              "seed": args.seed, "test_operators": args.test_operators, "per_step": per_step}
    spec = family_run.FamilySpec(**{k: v for k, v in values.items() if v is not None})
    out = args.out or time.strftime("runs/family-%Y%m%d-%H%M%S")
    out = layout.bcast(out)
    family_run.check_out(out, args.overwrite)
    replicas = (layout.replica, layout.data_size, layout.data_comm) if layout.data_size > 1 else None
    model, summary = family_run.train_family(spec, out, layout.domain_comm if layout.domain_size > 1 else None,
                                             replicas)
    if layout.is_root:
        print(family_run.format_summary(spec, summary))
        print(f"wrote {os.path.join(out, 'checkpoint.pt')} and {os.path.join(out, 'log.jsonl')}")


def cmd_data(args, layout):
    if layout.world_size > 1:
        raise ConfigurationError("pddattn data runs on one process")
    try:
        sides = [int(v) for v in str(args.grid).split(",")]
    except ValueError:
        raise ConfigurationError(f"--grid {args.grid}: nodes a side, e.g. 85 or 85,141") from None
    if args.train < 1 or args.test < 1:
        raise ConfigurationError("--train and --test must be at least 1")
    out = Path(args.out)
    if out.suffix not in (".h5", ".hdf5", ".npz"):
        raise ConfigurationError(f"--out {out}: write .h5 (HDF5) or .npz (triplets)")
    for s in sides:
        darcy_data.stride(args.resolution, s)
    data = darcy_data.generate(sides, args.train, args.test, args.resolution, args.seed, log=print)
    for s in sides:
        path = out if len(sides) == 1 else out.with_name(f"{out.stem}_{s}{out.suffix}")
        attrs = {"recipe": darcy_data.RECIPE, "seed": args.seed, "resolution": args.resolution, "grid": s}
        darcy_data.write(path, data[s], attrs)
        stats = darcy_data.statistics(data[s]["train"][0], data[s]["train"][2])
        print(f"wrote {path}: {args.train} training and {args.test} test samples at {s}x{s}; share of a = 12 "
              f"{stats['fraction_a_12']:.3f}, max u per sample {stats['u_max_min']:.4f}-{stats['u_max_max']:.4f} "
              f"(mean {stats['u_max_mean']:.4f})")


def cmd_apply(args, layout):
    if layout.world_size > 1:
        raise ConfigurationError("pddattn apply runs on one process; use `pddattn solve` for MPI solves")
    apply_main(args)
