"""The baselines at DD's parameter count in other shapes: is the equal-parameter bar won against their best one?

The benchmark's equal-count baselines are the authors' own shapes narrowed to DD's 31,185 parameters
(darcy.py: ``fno-paper-small``, 4 Fourier layers of width 7 with 6 modes, 0.0217; ``gt-cao-paper-small``,
6 attention layers of width 20 with 4 regressor modes, 0.0255). A narrowed network is not always the
best use of a small budget, so the same models are trained here in other shapes at the same count,
each on its authors' recipe (the paper FNO's: batches of 20, the step schedule, the loss summed; the
Galerkin Transformer's: batches of 4, one cycle, the H1 term) for the whole 100-epoch budget, the width
chosen for the count nearest DD's given the layers and modes:

  fno-paper, 4 layers, 4 modes        fewer modes, wider (width 11)
  fno-paper, 2 layers, 6 modes        shallower, wider (width 10)
  fno-paper, 2 layers, 4 modes        shallower, fewer modes, wider still (width 15)
  gt-cao-paper, 2 layers, 4 modes     shallower, wider (width 28)
  gt-cao-paper, 4 layers, 12 modes    the authors' regressor modes, narrower (width 16)
  gt-cao-paper, 1 layer, 4 modes      one attention layer, wider still (width 32)

Every epoch is saved, so a stopped run resumes (``--state``, default runs/darcy_shapes_state):

    python benchmarks/darcy_shapes.py --data runs/darcy/darcy_85.h5 --epochs 100 --out benchmarks/results
    python benchmarks/darcy_shapes.py --quick --out /tmp/shapes     # tiny data and models, on the spot
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import darcy  # noqa: E402
import darcy_ablation as ablation  # noqa: E402
from darcy_gt_ablation import QUICK  # noqa: E402
from darcy_recipe import CAO, FNO_PAPER  # noqa: E402
from pddattn.family_run import FamilySpec  # noqa: E402
from pddattn.fno_paper import PaperFNO2D, sized  # noqa: E402
from pddattn.galerkin import CaoDarcy, sized_cao  # noqa: E402

FNO_SHAPES = ((4, 4), (2, 6), (2, 4))  # (layers, modes)
GT_SHAPES = ((2, 4), (4, 12), (1, 4))


def variants(a, u, quick=False):
    """{name: () -> (model a -> u, recipe)} at DD's parameter count on these fields' grid, the width in the name."""
    side = a.shape[1]
    target = darcy.dd_parameters(FamilySpec(grid=(side - 2,) * 2, data="ones", generator_dtype="float32"), a)
    out = {}
    for layers, modes in FNO_SHAPES:
        width, modes = sized(target, side, layers, min(modes, (side - 1) // 2))
        out[f"fno-paper, {layers} layer{'s' * (layers > 1)}, width {width}, {modes} modes"] = (
            lambda w=width, m=modes, n=layers: (PaperFNO2D(side, w, m, n).fit(a, u), FNO_PAPER))
    for layers, modes in GT_SHAPES:
        config = ({**QUICK, "fourier_modes": min(modes, (side - 1) // 2), "num_encoder_layers": layers} if quick
                  else sized_cao(target, side, layers, modes))
        out[f"gt-cao-paper, {layers} layer{'s' * (layers > 1)}, width {config['n_hidden']}, {modes} modes"] = (
            lambda c=config: (CaoDarcy(side, **c).fit(a, u), CAO))
    return out


def main(argv=None):
    gt_only = lambda text: lambda r: text(r) if r["recipe"]["batch"] == CAO.batch else "-"  # noqa: E731
    return ablation.main(argv, __doc__, "darcy_shapes", variants, dropout_off=True, columns={
        "recipe": lambda r: "Cao's" if r["recipe"]["batch"] == CAO.batch else "the FNO paper's",
        "last epoch, attention dropout off": gt_only(lambda r: f"{r['attention dropout off']:.4f}")})


if __name__ == "__main__":
    sys.exit(main())
