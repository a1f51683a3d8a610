"""Coarse levels built per rank (parallel/coarse_level.py) against the serial hierarchy.

    mpirun -n 3 python -m pytest --with-mpi -m mpi tests/test_mpi_levels.py

Boxes on a family: level 0 is each rank's share, and every coarse level with
a tile per rank is built from the rows its ranks own, never from A_1 whole.
Equal to the serial model (tiles of the same cores) in float64.
"""

import numpy as np
import pytest
import torch

from pddattn.parallel.layout import Layout
from pddattn.parallel.share import DecompositionShare
from pddattn.train import TrainConfig, train

from pddattn.problems import make_problem
from test_mpi import relative, world, worst
from tolerances import APPLY, adam_steps, cond, rounding

pytestmark = pytest.mark.mpi(min_size=2)

GRID, BOXES = (39, 35), "6x5"
# Coarse bases from local solves of A_II: relative rounding kappa(A_II) eps <= kappa(A) eps for A's principal
# blocks, and kappa(A_l) <= kappa(A) kappa(Phi^T Phi) (~10) on the coarse levels; factor 10 for the sums.
KAPPA = cond(make_problem("diffusion2d", GRID, "jump:1e4", seed=1).A)
PHI = rounding(10 * KAPPA, factor=10)


def _config(levels, steps=1, **extra):
    return TrainConfig.of(problem="diffusion2d", grid="x".join(map(str, GRID)), coefficient="jump:1e4",
                       coefficient_seed=1, subdomains=BOXES, overlap=1, coarse_space="harmonic", rank=3,
                       levels=levels, top_size=extra.pop("top_size", 6), batch=8, steps=steps, eval_every=10,
                       test_size=8, dtype="float64", lr=0.05, warmup=2, data="probe", checkpoint_every=10**9,
                       **extra)


def _pair(levels, steps=1, **extra):
    cfg = _config(levels, steps, **extra)
    serial, _ = train(cfg, out=None)
    dist, _ = train(cfg, out=None, layout=Layout())
    return serial, dist


def _parameter_error(serial, dist):
    return max(relative(q.detach(), dist.from_global(name, p.detach()))
               for (name, p), (_, q) in zip(serial.named_parameters(), dist.named_parameters()))


def _spread(model):
    """The levels of ``model`` built as per-rank shares (level 0 excluded)."""
    return [m for m in model.level_operators[1:] if not m.decomposition.whole]


@pytest.mark.parametrize("levels,level_coarse", [(3, "harmonic"), (4, "harmonic"), (3, "nicolaides")])
def test_per_rank_coarse_levels_equal_serial(levels, level_coarse):
    serial, dist = _pair(levels, steps=0, top_size=4, level_coarse=level_coarse)
    P = world().Get_size()
    spread = _spread(dist)
    assert worst(len(spread) == 0) == 0, "no coarse level was built per rank"
    for model, whole in zip(dist.level_operators[1:], serial.level_operators[1:]):
        d, w = model.decomposition, whole.decomposition
        if d.whole:
            continue
        assert d.N == w.N >= P and d.coarse_size == w.coarse_size
        for i in d.held:  # the tiles' cores and subdomains are the serial ones
            assert np.array_equal(d.cores[i], w.cores[i]) and np.array_equal(d.subdomains[i], w.subdomains[i])
        phi = w.phi[d.own]
        assert worst(abs(d.phi - phi).max() / abs(phi).max()) <= PHI
    own = torch.as_tensor(dist.own_rows)
    n = serial.n
    x = torch.randn(n, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        assert worst(relative(dist.matvec(x[own]), serial.matvec(x)[own])) <= PHI + APPLY  # random factors


def test_a_rank_holds_only_its_rows_of_the_coarse_level():
    """A_1's rows: a rank reads them at its tiles' subdomains and ring only; asking for another is an error."""
    _, dist = _pair(3, steps=0, top_size=4)
    level = _spread(dist)
    if not level:
        pytest.skip("the coarse level has fewer tiles than ranks")
    model = level[0]
    d = model.decomposition
    held = np.unique(np.concatenate(list(d.subdomains) + [d.own]))
    assert len(held) < d.n
    outside = np.setdiff1d(np.arange(d.n), held)
    rows = model.problem.rows(held)
    assert rows.shape[0] == len(held)
    if len(outside):
        with pytest.raises(ValueError, match="holds A's rows"):
            model.problem.rows(outside[:1])
    counts = world().allgather(len(d.own))
    assert sum(counts) == d.n


@pytest.mark.parametrize("levels", [3, 4])
def test_twenty_steps_with_per_rank_coarse_levels_equal_serial(levels):
    serial, dist = _pair(levels, steps=20, top_size=4)
    assert worst(_parameter_error(serial, dist)) <= adam_steps(20, per_step=PHI + APPLY)


@pytest.mark.parametrize("pou", ["count", "smooth"])
def test_algebraic_blocks_on_a_family_are_built_per_rank(pou):
    """Row blocks grown through the stencil's graph on each rank: the whole decomposition's parts, no whole A."""
    from pddattn.decomposition import algebraic
    from pddattn.hierarchy import build_hierarchy
    from pddattn.problems import make_problem
    spec = {"kind": "algebraic", "N": 7, "delta": 2, "pou": pou, "coarse": "harmonic"}
    problem = make_problem("diffusion2d", (13, 11), "jump:1e4", seed=1)
    share = build_hierarchy(problem, spec, layout=Layout()).decomposition
    whole_problem = make_problem("diffusion2d", (13, 11), "jump:1e4", seed=1)
    whole = algebraic(whole_problem.A, 7, 2, pou, "harmonic")
    assert isinstance(share, DecompositionShare) and not share.whole and problem._A is None
    for i in share.held:
        assert np.array_equal(share.cores[i], whole.cores[i]) and np.array_equal(share.subdomains[i],
                                                                                 whole.subdomains[i])
    weights = relative(torch.as_tensor(share.held_pou_weights(share.held)),
                       torch.as_tensor(whole.held_pou_weights(share.held)))
    phi = whole.phi[share.own]
    # Weights from the same counts, Phi from local solves (see PHI) on this smaller problem.
    assert worst(max(weights, abs(share.phi - phi).max() / abs(phi).max())) <= rounding(cond(whole_problem.A), factor=10)
