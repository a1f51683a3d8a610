"""The ghost exchange from index sets: 2D boxes on a process grid and algebraic decompositions.

    mpirun -n 3 python -m pytest --with-mpi -m mpi tests/test_mpi_ghosts.py

Distributed against serial in float64 at 2, 3 and 4 ranks, on uneven grids
and layouts (cores of different sizes, N not divisible by P, boxes whose
process grid is not square), with variable coefficients and probe or solve
data made on each rank's own rows only.
"""

import numpy as np
import pytest
import torch

from pddattn.decomposition import algebraic, boxes
from pddattn.operators import DDAttention
from pddattn.parallel.ghosts import GhostExchange
from pddattn.parallel.layout import Layout, subdomain_holdings
from pddattn.problems import make_problem
from pddattn.train import TrainConfig, train

from test_mpi import distributable, relative, world, worst
from tolerances import APPLY, adam_steps, applied, cond

pytestmark = pytest.mark.mpi(min_size=2)

PROBLEM = make_problem("diffusion2d", (13, 11), "jump:1e4", seed=1)
KAPPA = cond(PROBLEM.A)  # 9e4
# (name, builder): uneven 13x11 grid; boxes 3x2 (process grids 2x1, 3x1, 2x2), algebraic N=7.
DECOMPOSITIONS = {
    "boxes-q1": lambda: boxes((13, 11), (3, 2), 2, "smooth", "q1", PROBLEM.A),
    "boxes-harmonic": lambda: boxes((13, 11), (3, 2), 1, "count", "harmonic", PROBLEM.A),
    "algebraic": lambda: algebraic(PROBLEM.A, 7, 2, "smooth", "harmonic"),
}


def pair(name, **kwargs):
    from pddattn.parallel.operator import DistributedDDAttention
    d = DECOMPOSITIONS[name]()
    if not distributable(d, world().Get_size()):
        pytest.skip(f"{name} cannot be distributed over {world().Get_size()} ranks")
    kwargs = dict(dict(r=3, r0=4, seed=5, init_scale=20.0, dtype=torch.float64, problem=PROBLEM), **kwargs)
    layout = Layout()
    return DDAttention(d, **kwargs), DistributedDDAttention(d, layout=layout, **kwargs), layout


@pytest.mark.parametrize("name", DECOMPOSITIONS)
@pytest.mark.parametrize("symmetric,init", [(False, "random"), (True, "schwarz")])
def test_forward_and_transpose_equal_serial(name, symmetric, init):
    serial, dist, _ = pair(name, symmetric=symmetric, init=init)
    own = torch.as_tensor(dist.own_rows)
    x = torch.randn(PROBLEM.n, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    err = relative(dist.matvec(x[own]), serial.matvec(x)[own])
    err_t = relative(dist.matvec(x[own], transpose=True), serial.matvec(x, transpose=True)[own])
    assert worst(max(err, err_t)) <= applied(KAPPA if init == "schwarz" else 10)


@pytest.mark.parametrize("name", DECOMPOSITIONS)
def test_gradients_equal_serial(name):
    serial, dist, layout = pair(name)
    own = torch.as_tensor(dist.own_rows)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(PROBLEM.n, 4, generator=g, dtype=torch.float64)
    w = torch.randn(PROBLEM.n, 4, generator=g, dtype=torch.float64)
    (serial.matvec(x) * w).square().sum().backward()
    (dist.matvec(x[own]) * w[own]).square().sum().backward()
    layout.sync_gradients(dist)
    errors = [relative(q.grad, dist.from_global(name_, p.grad))
              for (name_, p), (_, q) in zip(serial.named_parameters(), dist.named_parameters())]
    assert worst(max(errors)) <= APPLY  # random factors: the adjoint application


def test_rows_partition_and_holdings_cover_every_subdomain():
    d = DECOMPOSITIONS["boxes-q1"]()
    P = world().Get_size()
    if not distributable(d, P):
        pytest.skip("no process grid")
    holdings = subdomain_holdings(d, P)
    assert sorted(np.concatenate(holdings).tolist()) == list(range(d.N))
    own = world().allgather(Layout() and GhostExchange.of_decomposition(d, holdings, world().Get_rank()).own)
    assert sorted(np.concatenate(own).tolist()) == list(range(d.n))


@pytest.mark.parametrize("name", DECOMPOSITIONS)
def test_comm_volume_matches_a_model_from_the_index_sets(name):
    """Per apply: forward sends every own row a neighbour reads, reverse sends every ghost back."""
    serial, dist, _ = pair(name)
    d, P, me = dist.decomposition, world().Get_size(), world().Get_rank()
    holdings = subdomain_holdings(d, P)
    owned = {q: set(np.concatenate([d.cores[i] for i in holdings[q]]).tolist()) for q in range(P)}
    reads = {q: set(np.concatenate([d.subdomains[i] for i in holdings[q]]).tolist()) for q in range(P)}
    sent = {q: len(owned[me] & reads[q]) for q in range(P) if q != me}
    back = {q: len(reads[me] & owned[q]) for q in range(P) if q != me}
    B = 5
    dist.stats.reset()
    with torch.no_grad():
        dist.matvec(torch.zeros(len(dist.own_rows), B, dtype=torch.float64))
    expected = (sum(sent.values()) + sum(back.values())) * B * 8
    messages = sum(1 for v in sent.values() if v) + sum(1 for v in back.values() if v)
    ok = dist.stats.bytes["halo"] == expected and dist.stats.messages["halo"] == messages
    ok = ok and dist.stats.bytes["allreduce"] == d.coarse_size * B * 8
    assert worst(0.0 if ok else 1.0) == 0.0


def _train_pair(name, data, steps, out=None, **extra):
    kind = "boxes" if name.startswith("boxes") else "algebraic"
    d = DECOMPOSITIONS[name]()
    if not distributable(d, world().Get_size()):
        pytest.skip("not distributable at this size")
    cfg = TrainConfig.of(problem="diffusion2d", grid="13x11", coefficient="jump:1e4", coefficient_seed=1,
                      decomposition=kind, subdomains="3x2" if kind == "boxes" else 7, overlap=d.delta,
                      pou=d.pou, coarse_space=d.coarse, rank=3, coarse_rank=4, batch=8, steps=steps, eval_every=10,
                      test_size=8, dtype="float64", lr=0.05, warmup=2, data=data, checkpoint_every=10**9, **extra)
    serial, s_sum = train(cfg, out=None)
    dist, d_sum = train(cfg, out=out, layout=Layout())
    return serial, dist, s_sum, d_sum


def _parameter_error(serial, dist):
    return max(relative(q.detach(), dist.from_global(name, p.detach()))
               for (name, p), (_, q) in zip(serial.named_parameters(), dist.named_parameters()))


@pytest.mark.parametrize("name", ["boxes-q1", "algebraic"])
def test_one_step_equals_serial(name):
    serial, dist, _, _ = _train_pair(name, "probe", 1)
    assert worst(_parameter_error(serial, dist)) <= adam_steps(1)
    if name.startswith("boxes") and world().Get_size() > 1:  # boxes on a family: each rank built its share only
        from pddattn.parallel.share import DecompositionShare
        share = dist.decomposition
        assert isinstance(share, DecompositionShare) and not share.whole and np.array_equal(share.held, dist.held)
        assert share.phi.shape[0] == len(dist.own_rows) < PROBLEM.n


@pytest.mark.parametrize("name,data", [("boxes-q1", "probe"), ("boxes-harmonic", "solve"), ("algebraic", "probe")])
def test_twenty_steps_equal_serial(name, data):
    serial, dist, s_sum, d_sum = _train_pair(name, data, 20)
    assert worst(_parameter_error(serial, dist)) <= adam_steps(20)
    assert worst(abs(s_sum["test_error"] - d_sum["test_error"]) / s_sum["test_error"]) <= adam_steps(20)


def test_fourier_data_on_boxes_equals_serial():
    """poisson2d's sine data made on each rank's box alone equals the serial DST synthesis."""
    from pddattn.problems import make_sampler
    from pddattn.problems.samplers import evaluate_rows
    p = make_problem("poisson2d", (13, 11))
    d = boxes((13, 11), (3, 2), 1, A=p.A)
    if not distributable(d, world().Get_size()):
        pytest.skip("no process grid")
    own = GhostExchange.of_decomposition(d, subdomain_holdings(d, world().Get_size()), world().Get_rank()).own
    s = make_sampler("fourier", p, seed=3)
    coef = s.coefficients(4, 0, 2)
    f, u = evaluate_rows(s, coef, own)
    F, U = s.evaluate(coef)
    # A DST synthesis on a box against the whole grid's: sums of 143 sine terms, |a| |s| / |f| <= 10.
    assert worst(max(relative(f, F[:, own]), relative(u, U[:, own]))) <= applied(10, terms=143)


@pytest.mark.parametrize("name", ["boxes-harmonic", "algebraic"])
def test_three_levels_forward_and_training_equal_serial(name):
    """Multilevel: the coarse levels (replicated on every rank for now) below the distributed level 0."""
    serial, dist, _ = pair(name, levels=3, top_size=3, init="schwarz", symmetric=True, r=4)
    # The coarse level is distributed when it has a subdomain per rank, else replicated.
    assert (dist.transfer is not None) == (dist.next_level.decomposition.N >= world().Get_size())
    own = torch.as_tensor(dist.own_rows)
    x = torch.randn(PROBLEM.n, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert worst(relative(dist.matvec(x[own]), serial.matvec(x)[own])) <= applied(KAPPA)  # a Schwarz start
    s, d, s_sum, d_sum = _train_pair(name, "probe", 20, levels=3, top_size=3)
    assert d.next_level is not None
    assert worst(_parameter_error(s, d)) <= adam_steps(20)


def test_three_level_checkpoint_from_p_ranks_loads_serially():
    from pddattn.checkpoint import load_model
    from test_mpi import shared_tmpdir
    tmp = shared_tmpdir()
    _, dist, _, _ = _train_pair("algebraic", "probe", 3, levels=3, top_size=3, out=tmp)
    serial, _ = load_model(tmp / "checkpoint.pt")
    own = torch.as_tensor(dist.own_rows)
    x = torch.randn(PROBLEM.n, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        assert worst(relative(dist.matvec(x[own]), serial.matvec(x)[own])) <= APPLY  # random start, 3 steps


def test_three_level_transfer_traffic_matches_a_model_from_phi():
    """Per apply, level 0 -> 1: each rank sends its partial Phi^T x rows home and gets back every coarse row it reads."""
    serial, dist, _ = pair("algebraic", levels=3, top_size=3, r=4)
    if dist.transfer is None:
        pytest.skip("the coarse level is replicated at this rank count")
    from pddattn.parallel.ghosts import owners
    d, c, P, me = dist.decomposition, dist.next_level.decomposition, world().Get_size(), world().Get_rank()
    fine_owner = owners(d, subdomain_holdings(d, P))
    coarse_owner = owners(c, subdomain_holdings(c, P))
    reads = {q: set(np.unique(d.phi[np.flatnonzero(fine_owner == q)].indices).tolist()) for q in range(P)}
    mine = set(np.flatnonzero(coarse_owner == me).tolist())
    sent = sum(len(mine & reads[q]) for q in range(P) if q != me)   # forward: coarse rows others read
    back = len(reads[me] - mine)                                     # reverse: my partial sums of others' rows
    B = 4
    dist.transfer.stats.reset()
    with torch.no_grad():
        dist.matvec(torch.zeros(len(dist.own_rows), B, dtype=torch.float64))
    assert worst(abs(dist.transfer.stats.bytes["halo"] - (sent + back) * B * 8)) == 0


def test_three_level_flops_per_rank_match_the_holdings():
    """Per rank and level: 4 x (subdomains held) x L x r x B, from the holdings; and what torch executes."""
    from test_multilevel import measured_flops
    _, dist, _ = pair("algebraic", levels=3, top_size=3, r=4)
    P, me, B = world().Get_size(), world().Get_rank(), 5
    counted = dict(dist.level_flops(B))
    mismatch = 0
    for level, model in enumerate(dist.level_operators):
        d = model.decomposition
        held = subdomain_holdings(d, P)[me] if model.spread else np.arange(d.N)
        mismatch += abs(counted[level] - 4 * len(held) * d.max_size * model.r * B)
    x = torch.zeros(len(dist.own_rows), B, dtype=torch.float64)
    bmm = measured_flops(lambda: dist.matvec(x))["bmm"]
    mismatch += abs(bmm - sum(v for k, v in counted.items() if k != "top"))
    assert worst(mismatch) == 0
