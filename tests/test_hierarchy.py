"""The Hierarchy: structure built once, values recomputed for new operators of the same pattern.

Every check compares an update (or a batch of values) with a hierarchy
built afresh on the new operator: the same formula on the same values, so
they differ by the rounding of the factorizations' different histories only
(a numeric refactorization against a fresh one): the harmonic extensions'
conditioning kappa(A) x eps x 10 (a few triangular sweeps and sums).
"""
import numpy as np
import pytest
import scipy.sparse as sp

from pddattn.hierarchy import Hierarchy, build_hierarchy
from pddattn.models import schwarz_operator
from pddattn.problems import make_problem
from tolerances import cond, rounding

BOXES = {"kind": "boxes", "N": [4, 4], "delta": 1, "pou": "count", "coarse": "harmonic"}
CASES = [  # (family, grid, coefficient, spec, levels)
    ("diffusion2d", (31, 31), "lognormal:1", BOXES, 2),
    ("diffusion2d", (31, 31), "jump:1e3", BOXES, 3),
    ("diffusion2d", (31, 31), "lognormal:1", dict(BOXES, coarse="q1"), 2),
    ("diffusion1d", (200,), "jump:100", {"kind": "intervals", "N": 8, "delta": 2, "pou": "smooth",
                                          "coarse": "harmonic"}, 3),
    ("diffusion2d", (23, 19), "lognormal:1", {"kind": "algebraic", "N": 9, "delta": 1, "pou": "count",
                                               "coarse": "harmonic"}, 2),
]


def _problems(family, grid, coefficient, count=3):
    return [make_problem(family, grid, coefficient, seed=s) for s in range(1, count + 1)]


def _relative(a, b):
    a, b = sp.csr_matrix(a), sp.csr_matrix(b)
    scale = abs(b).max() if b.nnz else 1.0
    return abs(a - b).max() / scale if (a - b).nnz else 0.0


def _bound(problems):
    return rounding(max(cond(p.A) for p in problems), factor=10)


@pytest.mark.parametrize("family,grid,coefficient,spec,levels", CASES)
def test_an_update_equals_a_hierarchy_built_on_the_new_operator(family, grid, coefficient, spec, levels):
    problems = _problems(family, grid, coefficient)
    h, bound = build_hierarchy(problems[0], spec, levels, top_size=8), _bound(problems)
    structure = [(level.decomposition.subdomains, level.plan) for level in h.levels]
    for p in problems[1:]:  # twice: the second update reuses the first's factorizations
        h.update(p.A, p)
        fresh = build_hierarchy(p, spec, levels, top_size=8)
        assert len(h.levels) == len(fresh.levels) == levels - 1
        for mine, theirs in zip(h.levels, fresh.levels):
            assert _relative(mine.A, theirs.A) <= bound
            assert _relative(mine.decomposition.phi, theirs.decomposition.phi) <= bound
        assert _relative(h.top, fresh.top) <= bound
    assert h.problem is problems[-1]
    assert all(level.decomposition.subdomains is subdomains and level.plan is plan  # the structure is kept
               for level, (subdomains, plan) in zip(h.levels, structure))


@pytest.mark.parametrize("family,grid,coefficient,spec,levels", CASES[:2] + CASES[3:4])
def test_batched_values_equal_one_update_each(family, grid, coefficient, spec, levels):
    problems = _problems(family, grid, coefficient, count=4)
    h, bound = build_hierarchy(problems[0], spec, levels, top_size=8), _bound(problems)
    values = h.values([p.A for p in problems[1:]])
    assert values.count == 3 and values.top.shape == (3, h.top.nnz)
    for b, p in enumerate(problems[1:]):
        h.update(p.A)
        for depth, level in enumerate(h.levels):
            assert values.A[depth].shape == (3, level.A.nnz)
            assert np.abs(values.A[depth][b] - level.A.data).max() <= bound * abs(level.A).max()
            if values.phi[depth] is not None:
                phi = level.decomposition.phi
                assert np.abs(values.phi[depth][b] - phi.data).max() <= bound * abs(phi).max()
        assert np.abs(values.top[b] - h.top.data).max() <= bound * abs(h.top).max()


def test_the_exact_operators_factorizations_follow_the_update():
    """One owner of the factorizations: the exact parametrization, refactored numerically when the operator
    takes the hierarchy's new values, equals the exact operator built afresh on the new operator."""
    p, q = _problems("diffusion2d", (31, 31), "lognormal:1", count=2)
    h = build_hierarchy(p, BOXES, 3, top_size=8)
    model = schwarz_operator(h)
    before = model.dense()
    h.update(q.A)
    assert model.refactor(h.decomposition, h.problem, h.below)
    fresh = schwarz_operator(build_hierarchy(q, BOXES, 3, top_size=8))
    after, expected = model.dense(), fresh.dense()
    bound = rounding(cond(q.A.toarray()), 10)
    assert np.abs(after - expected).max() <= bound * np.abs(expected).max()
    assert np.abs(after - before).max() > 1e3 * bound * np.abs(expected).max()  # the values did change
    model.free()
    fresh.free()
    h.free()


def test_another_pattern_is_refused_in_one_line():
    p = make_problem("diffusion2d", (31, 31), "lognormal:1", seed=1)
    h = build_hierarchy(p, BOXES)
    other = make_problem("diffusion2d", (31, 33), "lognormal:1", seed=1)
    assert not h.same_structure(other.A)
    with pytest.raises(ValueError, match="another sparsity pattern than the one the hierarchy was built on"):
        h.update(other.A)
    dropped = p.A.tolil()
    dropped[0, 1] = dropped[1, 0] = 0
    dropped = dropped.tocsr()
    dropped.eliminate_zeros()
    with pytest.raises(ValueError, match="another sparsity pattern"):
        h.values([p.A, dropped])


def test_building_changes_nothing_it_is_given():
    """No cache in the problem and no field set on it: two builds are two hierarchies of equal values."""
    p = make_problem("diffusion2d", (31, 31), "lognormal:1", seed=1)
    before = dict(p.__dict__)
    a, b = build_hierarchy(p, BOXES, 3, top_size=8), build_hierarchy(p, BOXES, 3, top_size=8)
    assert p.__dict__.keys() == before.keys() and p.stencil is before["stencil"]
    assert a is not b and a.decomposition is not b.decomposition
    assert _relative(a.top, b.top) == 0.0


def test_a_model_takes_the_hierarchy_it_is_given():
    """The model's levels are the hierarchy's objects: nothing rebuilt between them."""
    import torch
    from pddattn.models import architecture, hierarchy_of, model_from_architecture
    from pddattn.train import TrainConfig
    cfg = TrainConfig.of(problem="diffusion2d", grid="31x31", coefficient="lognormal:1", subdomains="4x4", overlap=1,
                      rank=4, levels=3, top_size=8).validate().to_dict()
    p = make_problem("diffusion2d", (31, 31), "lognormal:1")
    h = hierarchy_of(cfg, p)
    assert isinstance(h, Hierarchy)
    model = model_from_architecture(architecture(cfg, p, h), problem=p, dtype=torch.float64, hierarchy=h)
    assert [m.decomposition for m in model.level_operators] == [level.decomposition for level in h.levels]
    assert all(m.decomposition is level.decomposition for m, level in zip(model.level_operators, h.levels))
