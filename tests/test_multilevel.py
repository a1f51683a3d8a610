"""Multilevel DD attention: levels = 2 is the two-level operator; exactness; multilevel Schwarz."""
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import pytest
import torch

import reference as ref
from pddattn.decomposition import algebraic, boxes, intervals
from pddattn.hierarchy import coarse_levels
from pddattn.operators import DDAttention
from pddattn.problems import make_problem
from tolerances import applied, cond, rounding


def dense(model):
    with torch.no_grad():
        return model.dense().double().numpy()


@pytest.mark.parametrize("init", ["random", "schwarz"])
def test_two_levels_is_the_two_level_operator_bit_for_bit(init):
    p = make_problem("diffusion1d", (90,), "jump:1e4", seed=2)
    d = intervals(90, 6, 2, coarse="harmonic", A=p.A)
    a = DDAttention(d, r=4, init=init, seed=3, dtype=torch.float64, problem=p)
    b = DDAttention(d, r=4, init=init, seed=3, dtype=torch.float64, problem=p, levels=2)
    assert [n for n, _ in a.named_parameters()] == ["Q", "K", "Q0", "K0"] and a.config() == b.config()
    assert np.array_equal(dense(a), dense(b))


def set_exact(model):
    """Exact interior blocks on every level, the top level's dense inverse: the model becomes A^-1 (1D)."""
    for m in model.level_operators:
        ref.set_exact_blocks(m, m.problem.A.toarray())
    top = model.level_operators[-1]
    A0 = (top.decomposition.phi.T @ top.problem.A @ top.decomposition.phi).toarray()
    mu, V = np.linalg.eigh(A0)
    with torch.no_grad():
        top.Q0.copy_(torch.as_tensor(V / np.sqrt(mu)))
        top.K0.copy_(torch.as_tensor(V / np.sqrt(mu)))


@pytest.mark.parametrize("levels,top_size", [(3, 3), (4, 2)])  # sizes 120, 11, 2 and 120, 11, 4, 1
def test_harmonic_multilevel_at_full_rank_is_exact_in_1d(levels, top_size):
    """A 1e4 coefficient jump; kappa(A) ~ 1e7 limits the dense reference inverse itself to ~1e-11."""
    p = make_problem("diffusion1d", (120,), "jump:1e4", seed=2)
    d = intervals(120, 12, 2, "smooth", coarse="harmonic", A=p.A)
    model = DDAttention(d, r=d.max_size, init="schwarz", dtype=torch.float64, problem=p, levels=levels,
                        top_size=top_size)
    assert len(model.level_operators) == levels - 1
    set_exact(model)
    Ainv = np.linalg.inv(p.A.toarray())
    # Both inverses carry kappa(A) eps (1.2e7 here); factor 100 for the levels' products.
    assert np.abs(dense(model) - Ainv).max() <= rounding(cond(p.A), factor=100) * np.abs(Ainv).max()


def multilevel_schwarz(A, d, hierarchy):
    """sum_i R_i^T D^1/2 A_i^-1 D^1/2 R_i + Phi M_1^-1 Phi^T, recursively, densely (independent of pddattn's kernel)."""
    weights = [w[: len(s)] for w, s in zip(d.pou_weights(), d.subdomains)]
    if not hierarchy:
        return ref.two_level_schwarz(A, d.subdomains, weights, d.coarse_basis_dense())
    local = ref.two_level_schwarz(A, d.subdomains, weights, np.zeros((A.shape[0], 0)))
    Phi = d.coarse_basis_dense()
    below = multilevel_schwarz(Phi.T @ A @ Phi, hierarchy[0].decomposition, hierarchy[1:])
    return local + Phi @ below @ Phi.T


@pytest.mark.parametrize("case", ["boxes-q1", "boxes-harmonic", "algebraic"])
def test_schwarz_initialisation_is_multilevel_additive_schwarz(case):
    p = make_problem("diffusion2d", (23, 21), "lognormal:1", seed=1)
    d = {"boxes-q1": lambda: boxes((23, 21), (4, 4), 1, coarse="q1", A=p.A),
         "boxes-harmonic": lambda: boxes((23, 21), (4, 4), 1, coarse="harmonic", A=p.A),
         "algebraic": lambda: algebraic(p.A, 16, 1, coarse="harmonic")}[case]()
    model = DDAttention(d, r=d.max_size, init="schwarz", symmetric=True, dtype=torch.float64, problem=p, levels=3,
                        top_size=4)
    M = multilevel_schwarz(p.A.toarray(), d, coarse_levels(d, p, 3, 4))
    assert np.abs(dense(model) - M).max() <= rounding(cond(p.A), factor=100) * np.abs(M).max()  # as above


def test_parameters_and_training_run_with_three_levels(tmp_path):
    from pddattn.checkpoint import load_model
    from pddattn.train import TrainConfig, train
    cfg = TrainConfig.of(n=255, subdomains=32, rank=4, levels=3, top_size=8, steps=5, batch=8, test_size=8,
                      eval_every=5, dtype="float64")
    model, summary = train(cfg, out=tmp_path)
    assert model.next_level is not None and model.Q0 is None
    assert summary["parameters"] == model.num_parameters() < DDAttention(intervals(255, 32, 2), r=4).num_parameters()
    again, _ = load_model(tmp_path / "checkpoint.pt")
    assert np.abs(dense(again) - dense(model)).max() == 0.0


def test_bad_levels_are_one_line_errors():
    d = intervals(40, 4, 1)
    with pytest.raises(ValueError, match="levels must be an integer >= 2"):
        coarse_levels(d, make_problem("laplace1d", (40,)), 1)
    with pytest.raises(ValueError, match="too small for 4 levels"):
        DDAttention(d, r=2, levels=4)


def measured_flops(fn):
    """Flops of the dense products torch executed in fn(), by aten op (FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return {str(op).split(".")[-1]: v for op, v in counter.get_flop_counts()["Global"].items()}


@pytest.mark.parametrize("levels,batch", [(2, 6), (3, 6), (4, 2)])
def test_level_flops_are_what_torch_executes(levels, batch):
    """level_flops (from the shapes) against the bmm flops FlopCounterMode sees, level by level."""
    model = DDAttention(intervals(1023, 64, 2), r=4, levels=levels, top_size=8)
    counted = dict(model.level_flops(batch))
    assert len(counted) == levels  # levels - 1 kernels and the dense top
    x = torch.randn(1023, batch)
    for level, m in enumerate(model.level_operators):
        xl = torch.randn(m.n, batch)
        assert measured_flops(lambda: m.local_term(xl))["bmm"] == counted[level]
    top = model.level_operators[-1]
    c = torch.randn(top.decomposition.coarse_size, batch)
    assert measured_flops(lambda: top.top_term(c))["mm"] == counted["top"]
    assert measured_flops(lambda: model.matvec(x))["bmm"] == sum(v for k, v in counted.items() if k != "top")


def test_nicolaides_coarse_levels_shrink_by_the_subdomain_count():
    """Columns R_i^T D_i 1 sum to one; each coarse level has exactly its decomposition's N rows."""
    p = make_problem("poisson2d", (31, 31))
    d = boxes((31, 31), (4, 4), 2, coarse="harmonic", A=p.A)
    below = coarse_levels(d, p, 4, top_size=8, coarse="nicolaides")
    for upper, lower in zip(below[:-1], below[1:]):
        assert lower.A.shape[0] == upper.decomposition.N
    phi = below[0].decomposition.phi
    assert np.allclose(np.asarray(phi.sum(axis=1)).ravel(), 1.0)
    with pytest.raises(ValueError, match="coarse levels' space must be one of"):
        coarse_levels(d, p, 3, coarse="q1")


def _edge_cut(A, d):
    """Edges of A's graph between different cores."""
    part = np.empty(A.shape[0], dtype=np.int64)
    for i, c in enumerate(d.cores):
        part[c] = i
    coo = sp.triu(A, 1).tocoo()
    return int(np.count_nonzero(part[coo.row] != part[coo.col]))


def test_graph_partition_is_balanced_compact_and_the_same_every_time():
    """A grid numbered at random: the bisection's cores cut few edges; contiguous blocks cut most."""
    p = make_problem("poisson2d", (32, 32))
    perm = np.random.default_rng(0).permutation(p.n)
    A = sp.csr_matrix(p.A[perm][:, perm])
    graph, blocks = algebraic(A, 16, 1, partition="graph"), algebraic(A, 16, 1)
    sizes = graph.core_sizes
    assert sizes.sum() == p.n and sizes.max() - sizes.min() <= 1
    assert np.array_equal(np.sort(np.concatenate(graph.cores)), np.arange(p.n))
    assert _edge_cut(A, graph) < 0.25 * _edge_cut(A, blocks)  # measured 341 against 1866 (4 x 4 boxes: 192)
    again = algebraic(A, 16, 1, partition="graph")
    assert all(np.array_equal(a, b) for a, b in zip(graph.cores, again.cores))
    assert graph.spec["partition"] == "graph" and "partition" not in blocks.spec
    with pytest.raises(ValueError, match="partition must be one of"):
        algebraic(A, 4, 1, partition="metis")


def test_fixed_coarse_subdomains_let_the_top_grow():
    """top_size 0: every coarse level is split into parts of about COARSE_ROWS rows (tiles of the
    cores above, so whole tiles: within a factor 2), and the top grows with n."""
    from pddattn.hierarchy import COARSE_ROWS
    tops = []
    for m in (63, 127):
        p = make_problem("poisson2d", (m, m))
        d = boxes((m, m), ((m + 1) // 8,) * 2, 2, coarse="harmonic", A=p.A)
        below = coarse_levels(d, p, 3, top_size=0)
        n_1, N_1 = below[0].A.shape[0], below[0].decomposition.N
        assert COARSE_ROWS / 2 <= n_1 / N_1 <= 2 * COARSE_ROWS
        tops.append(below[0].decomposition.coarse_size)
    assert tops[1] > 3 * tops[0]
    with pytest.raises(ValueError, match="integer >= 0"):
        coarse_levels(d, p, 3, top_size=-1)


def test_a_multilevel_checkpoint_from_before_the_partition_rebuilds_its_row_blocks():
    """An architecture without level_partition (written before it) gets the contiguous coarse cores it trained on."""
    from pddattn.models import architecture, model_from_architecture
    from pddattn.train import TrainConfig
    p = make_problem("poisson2d", (31, 31))
    cfg = TrainConfig.of(problem="poisson2d", grid="31x31", subdomains="4x4", levels=3, top_size=8).to_dict()
    arch = architecture(cfg, p)
    assert arch["level_partition"] == "tiles"
    new = model_from_architecture(arch, problem=p)
    assert new.next_level.decomposition.spec["partition"] == "tiles"
    assert new.config()["level_partition"] == "tiles" and new.config()["level_coarse"] == "harmonic"
    graph = model_from_architecture(dict(arch, level_partition="graph"), problem=p)  # written by the last release
    assert graph.config()["level_partition"] == "graph"
    old = model_from_architecture({k: v for k, v in arch.items() if k != "level_partition"}, problem=p)
    cores = old.next_level.decomposition.cores
    assert "partition" not in old.next_level.decomposition.spec
    assert all(c[-1] - c[0] + 1 == len(c) for c in cores)


def test_the_levels_are_a_flat_list_the_apply_iterates():
    """level_operators holds every level once; the apply and the counts never ask a level below to recurse."""
    p = make_problem("poisson2d", (31, 31), seed=0)
    d = boxes((31, 31), (4, 4), 1, coarse="harmonic", A=p.A)
    model = DDAttention(d, r=3, levels=4, top_size=4, dtype=torch.float64, problem=p, seed=5)
    levels = model.level_operators
    assert len(levels) == 3 and levels[0] is model and all(a.next_level is b for a, b in zip(levels, levels[1:]))
    assert list(model.coarse_levels) == levels[1:] and not any(list(m.children()) for m in levels[1:])
    assert [m.levels for m in levels] == [4, 3, 2] and levels[-1].Q0 is not None
    names = [n for n, _ in model.named_parameters()]
    assert names == ["Q", "K", "coarse_levels.0.Q", "coarse_levels.0.K", "coarse_levels.1.Q", "coarse_levels.1.K",
                     "coarse_levels.1.Q0", "coarse_levels.1.K0"]
    x = torch.randn(p.n, 2, dtype=torch.float64)
    before = model.matvec(x)
    for m in levels[1:]:  # a recursive apply would call these
        m.matvec = m.coarse_term = m.num_parameters = m.rank_bound = m.natural_scales = None
    assert torch.equal(model.matvec(x), before)
    top = levels[-1].decomposition.coarse_size
    assert model.num_parameters() == sum(2 * 3 * int(m.decomposition.sizes.sum()) for m in levels) + 2 * top * top
    assert set(names) <= set(model.natural_scales()) and model.rank_bound() <= p.n


def test_a_graph_partitioned_checkpoint_without_its_partition_name_loads(tmp_path):
    """Written between the graph partition and the record of level_partition: rebuilt with graph, from its shapes."""
    from pddattn.checkpoint import load_model
    from pddattn.train import TrainConfig, train
    cfg = TrainConfig.of(problem="poisson2d", grid="63x63", subdomains="8x8", levels=3, top_size=16, steps=2, batch=4,
                      test_size=4, dtype="float64")
    train(cfg, out=tmp_path)
    path = tmp_path / "checkpoint.pt"
    payload = torch.load(path, weights_only=False)
    from pddattn.models import model_from_architecture
    graph = model_from_architecture(dict(payload["architecture"], level_partition="graph"))
    blocks = model_from_architecture(dict(payload["architecture"], level_partition="blocks"))
    assert graph.next_level.Q.shape != blocks.next_level.Q.shape  # the shapes tell them apart here
    payload["architecture"] = {k: v for k, v in payload["architecture"].items() if k != "level_partition"}
    payload["state"] = {k: v for k, v in graph.state_dict().items()}
    torch.save(payload, path)
    loaded, _ = load_model(path)
    assert loaded.next_level.decomposition.spec["partition"] == "graph"
    assert np.abs(dense(loaded) - dense(graph)).max() == 0.0


def test_a_checkpoint_of_the_last_release_loads_with_its_names_mapped_and_gives_its_outputs():
    """tests/data/release_4levels.pt: written by release 2's code (parameters named by the recursive chain,
    coarse_model.coarse_model.Q0, ...), with its outputs on two vectors; today's names are coarse_levels.l.*."""
    import pddattn
    data = Path(__file__).parent / "data"
    stored = torch.load(data / "release_4levels.pt", weights_only=True)["state"]
    assert "coarse_model.coarse_model.Q0" in stored
    model = pddattn.load(data / "release_4levels.pt")
    assert "coarse_levels.1.Q0" in dict(model.named_parameters())
    io = np.load(data / "release_4levels_io.npz")
    # the same code path, but another CPU's BLAS kernels may sum in another order (seen: 3.2e-16 relative on
    # an AMD EPYC, 0 where it was written): one DD application's rounding
    y = model(torch.from_numpy(io["x"])).detach().numpy()
    assert np.abs(y - io["y"]).max() <= applied() * np.abs(io["y"]).max()
