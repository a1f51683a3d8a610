"""The FNO comparison's DD budget rule (benchmarks/fno_compare.py): counts and choices a reader can trust."""
import dataclasses
import sys
from pathlib import Path

import pytest

from pddattn.models import architecture, model_from_architecture
from pddattn.train import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fno_compare  # noqa: E402  (the benchmark script, importable from benchmarks/)


@pytest.mark.parametrize("name", ["laplace1d", "poisson2d-63", "diffusion2d-jump-127"])
@pytest.mark.parametrize("budget", [20_000, 100_000, 500_000])
def test_rule_counts_the_models_parameters_within_budget(name, budget):
    """The rule's count is the built model's, it never exceeds the budget, the coarse block is funded."""
    spec = fno_compare.PROBLEMS[name]
    base = TrainConfig(**spec, subdomains=32)
    changes, params = fno_compare.dd_choice(base, budget)
    cfg = dataclasses.replace(base, **changes)
    problem, _, _ = cfg.validate().build()
    model = model_from_architecture(architecture(cfg.to_dict(), problem), problem=problem)
    assert model.num_parameters() == params <= budget
    n0 = model.decomposition.coarse_size
    assert changes["coarse_rank"] * n0 >= min(n0 * n0, budget // 4)


def test_rule_prefers_the_finest_decomposition_that_fits():
    """Cores of about 16 nodes where the budget allows; coarser boxes only when rank 1 does not fit."""
    pick = lambda name, budget: fno_compare.dd_choice(TrainConfig(**fno_compare.PROBLEMS[name]), budget)[0]
    assert pick("laplace1d", 20_000)["subdomains"] == 64
    assert pick("poisson2d-63", 20_000)["subdomains"] == "16x16"
    assert pick("poisson2d-127", 100_000)["subdomains"] == "32x32"
    assert pick("poisson2d-127", 20_000)["subdomains"] == "4x4"  # rank 1 on 8x8 and finer exceeds 20k
    with pytest.raises(ValueError, match="no DD configuration fits"):
        fno_compare.dd_choice(TrainConfig(**fno_compare.PROBLEMS["poisson2d-127"]), 5_000)
