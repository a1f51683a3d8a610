"""Which part of the FNO paper's recipe its Darcy error owes to: the first epochs of the stated budget.

The benchmark's ``fno`` (neuraloperator 2.0's FNO, scalar normalisers, the loss averaged over the batch)
and ``fno-paper`` (the paper's own model and script: pointwise normalisers, batch norm and ReLU, the loss
summed) are trained here beside the variants between them, each on the first ``--epochs`` epochs of the
100-epoch budget (the learning rate still 1e-3 until epoch 20), the same shuffles and batches:

  paper                                 fno-paper's first epochs
  paper, loss averaged                  the same, the loss averaged over the batch
  paper, scalar normalisers             a by its mean and deviation over all points, u by its RMS
  neuralop, pointwise normalisers       the benchmark's fno between the paper's normalisers
  neuralop (the benchmark's fno)        fno's first epochs

    python benchmarks/darcy_fno_ablation.py --data runs/darcy/darcy_85.h5 --epochs 10 --out benchmarks/results
    python benchmarks/darcy_fno_ablation.py --quick --out /tmp/ablation     # tiny data made on the spot
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import darcy  # noqa: E402
import darcy_ablation as ablation  # noqa: E402
from darcy_recipe import COMMON, FNO_PAPER  # noqa: E402
from pddattn.fno_paper import PaperFNO2D, PointwiseNormalised  # noqa: E402

BUDGET = 100  # the stated budget's epochs: its schedule, of which the first --epochs are trained


class Pointwise(PointwiseNormalised):
    """Any (B, 1, s, s) network between the paper's pointwise normalisers."""

    def __init__(self, net, side):
        super().__init__(side)
        self.net = net

    def network(self, x):
        return self.net(x[:, None])[:, 0]


def variants(side, a, u):
    """{name: () -> (model a -> u, recipe)}, each made from the same seed when its turn comes."""
    modes = min(12, side // 2)
    summed, averaged = FNO_PAPER, COMMON  # the paper's loss summed over the batch, the benchmark's averaged
    return {
        "paper": lambda: (PaperFNO2D(side, modes=modes).fit(a, u), summed),
        "paper, loss averaged": lambda: (PaperFNO2D(side, modes=modes).fit(a, u), averaged),
        "paper, scalar normalisers": lambda: (PaperFNO2D(side, modes=modes).fit(a, u, pointwise=False), summed),
        "neuralop, pointwise normalisers": lambda: (Pointwise(darcy.fno(32, 2 * modes), side).fit(a, u), averaged),
        "neuralop (the benchmark's fno)": lambda: (
            darcy.FieldModel(darcy.fno(32, 2 * modes), u.pow(2).mean().sqrt()), averaged),
    }


def main(argv=None):
    return ablation.main(argv, __doc__, "darcy_fno_ablation", lambda a, u, quick: variants(a.shape[1], a, u),
                         BUDGET, {"loss over the batch": lambda r: r["recipe"]["reduction"]})


if __name__ == "__main__":
    sys.exit(main())
