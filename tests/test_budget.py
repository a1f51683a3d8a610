"""Models sized at a parameter budget (pddattn.budget): counts a reader can trust, the choices the rule states."""

import pytest

from pddattn.assembly import assemble
from pddattn.budget import dd_at_budget, fno_at_budget, global_at_budget
from pddattn.models import model_from_architecture
from pddattn.train import TrainConfig

PROBLEMS = {"laplace1d": dict(problem="laplace1d", n=1023), "poisson2d-63": dict(problem="poisson2d", grid="63x63"),
            "poisson2d-127": dict(problem="poisson2d", grid="127x127"),
            "jump-127": dict(problem="diffusion2d", grid="127x127", coefficient="jump:1e4")}


def built(spec, **changes):
    cfg = TrainConfig.of(**spec, subdomains="4x4" if "grid" in spec else 32).replace(**changes)
    problem, arch, _, _ = assemble(cfg.validate())
    return cfg, problem, arch


@pytest.mark.parametrize("name", ["laplace1d", "poisson2d-63", "jump-127"])
@pytest.mark.parametrize("budget", [20_000, 100_000, 500_000])
def test_dd_count_is_the_built_models_within_budget(name, budget):
    """The rule's count is the built model's, never above the budget, and the coarse block is funded."""
    cfg, problem, _ = built(PROBLEMS[name])
    changes, params = dd_at_budget(cfg, problem, budget)
    _, problem, arch = built(PROBLEMS[name], **changes)
    model = model_from_architecture(arch, problem=problem)
    assert model.num_parameters() == params <= budget
    n0 = model.decomposition.coarse_size
    assert changes["symmetric"] and changes["coarse_rank"] * n0 >= min(n0 * n0, budget // 4)


def test_dd_prefers_the_finest_decomposition_that_fits():
    """Cores of about 16 nodes where the budget allows; coarser boxes only when rank 1 does not fit."""
    def pick(name, budget):
        cfg, problem, _ = built(PROBLEMS[name])
        return dd_at_budget(cfg, problem, budget)[0]["subdomains"]
    assert pick("laplace1d", 20_000) == 64 and pick("poisson2d-63", 20_000) == "16x16"
    assert pick("poisson2d-127", 100_000) == "32x32"
    assert pick("poisson2d-127", 20_000) == "4x4"  # rank 1 on 8x8 boxes and finer costs more than 20k
    cfg, problem, _ = built(PROBLEMS["poisson2d-127"])
    with pytest.raises(ValueError, match="no DD configuration fits 5,000 parameters"):
        dd_at_budget(cfg, problem, 5_000)


def test_global_rank_nearest_the_budget():
    assert global_at_budget(1023, 100_000, symmetric=True) == (98, 100_254)
    assert global_at_budget(1023, 100_000, symmetric=False) == (49, 100_254)
    assert global_at_budget(16129, 5_000, symmetric=False) == (1, 32_258)  # at least rank 1


def test_fno_size_nearest_the_budget():
    pytest.importorskip("neuralop")
    from pddattn.fno import FNOOperator
    for grid, budget in (((1023,), 20_000), ((63, 63), 100_000)):
        w, m, params = fno_at_budget(grid, budget)
        assert FNOOperator(grid, w, m).num_parameters() == params and 0.5 < params / budget < 2
