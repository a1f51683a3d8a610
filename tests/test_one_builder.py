"""Serial is the share builder's one-rank case: its whole decompositions against the former whole builders.

pddattn.intervals / boxes / algebraic wrap parallel/setup.one_rank; the
oracle (tests/whole_builders.py) grows node masks by graph products and
normalises the weights over all subdomains at once. Index sets, weights,
Phi and the interface are equal to the last bit: both sum the same numbers
in the same order, so any difference is a construction error, not rounding.
"""
import itertools
import subprocess
import sys

import numpy as np
import pytest

import whole_builders as oracle
from pddattn import decomposition as one
from pddattn.parallel.share import DecompositionShare
from pddattn.parallel.setup import one_rank
from pddattn.problems import make_problem


def _same(a, b):
    assert (a.n, a.N, a.spec) == (b.n, b.N, b.spec)
    for x, y in itertools.chain(zip(a.cores, b.cores), zip(a.subdomains, b.subdomains)):
        assert np.array_equal(x, y)
    assert np.array_equal(a.pou_weights(), b.pou_weights())
    p, q = a.phi.tocsr(), b.phi.tocsr()
    p.sort_indices()
    q.sort_indices()
    assert p.shape == q.shape and np.array_equal(p.indptr, q.indptr) and np.array_equal(p.indices, q.indices)
    assert np.array_equal(p.data, q.data)
    assert np.array_equal(a.interface, b.interface)
    for key in ("core_bounds", "starts", "stops", "grid", "layout"):
        if hasattr(b, key):
            assert np.array_equal(np.asarray(getattr(a, key)), np.asarray(getattr(b, key)))


def _both(build, *args):
    """Both builders' results, or both their errors (ValueError) alike."""
    try:
        expected = getattr(oracle, build)(*args)
    except ValueError:
        with pytest.raises(ValueError):
            getattr(one, build)(*args)
        return
    _same(getattr(one, build)(*args), expected)


@pytest.fixture(scope="module")
def line():
    return make_problem("diffusion1d", (61,), "lognormal:1", seed=3).A


@pytest.fixture(scope="module")
def grid():
    return make_problem("diffusion2d", (17, 13), "lognormal:1", seed=3).A


@pytest.mark.parametrize("N,delta", [(1, 0), (2, 1), (5, 3), (8, 0), (4, 20)])
@pytest.mark.parametrize("pou", ["count", "smooth"])
@pytest.mark.parametrize("coarse", ["hat", "harmonic", "nicolaides", "none"])
def test_intervals(line, N, delta, pou, coarse):
    _both("intervals", 61, N, delta, pou, coarse, line)


@pytest.mark.parametrize("layout,delta", [((1, 1), 0), ((2, 3), 1), ((4, 4), 2), ((5, 2), 9)])
@pytest.mark.parametrize("pou", ["count", "smooth"])
@pytest.mark.parametrize("coarse", ["q1", "harmonic", "nicolaides", "none"])
def test_boxes(grid, layout, delta, pou, coarse):
    _both("boxes", (17, 13), layout, delta, pou, coarse, grid)


@pytest.mark.parametrize("A", ["line", "grid"])
@pytest.mark.parametrize("N,delta", [(1, 1), (3, 1), (7, 2)])
@pytest.mark.parametrize("pou", ["count", "smooth"])
@pytest.mark.parametrize("coarse,partition", [("harmonic", "blocks"), ("harmonic", "graph"),
                                              ("nicolaides", "blocks"), ("none", "graph")])
def test_algebraic(request, A, N, delta, pou, coarse, partition):
    _both("algebraic", request.getfixturevalue(A), N, delta, pou, coarse, partition)


def test_algebraic_tiles(grid):
    cores = [np.arange(a, min(a + 40, 221)) for a in range(0, 221, 40)]
    _same(one.algebraic(grid, None, 1, "count", "harmonic", "tiles", cores),
          oracle.algebraic(grid, None, 1, "count", "harmonic", "tiles", cores))


def test_the_whole_is_a_one_rank_share(grid):
    """What the whole decomposition holds is the share's: no second construction of weights or Phi."""
    spec = {"kind": "boxes", "N": [3, 2], "delta": 1, "pou": "smooth", "coarse": "harmonic"}
    share = one_rank(spec, 17 * 13, (17, 13), grid.tocsr())
    assert isinstance(share, DecompositionShare) and share.comm.Get_size() == 1 and share.held.tolist() == list(range(6))
    d = one.Decomposition.of_share(share)
    assert d.phi is not None and abs(d.phi - share.phi).max() == 0
    assert all(np.array_equal(w, v[: len(w)]) for w, v in zip(share.weights, d.pou_weights()))


def test_a_part_of_the_subdomains_is_no_whole_decomposition():
    spec = {"kind": "boxes", "N": [3, 2], "delta": 1, "pou": "count", "coarse": "none"}
    share = one_rank(spec, 17 * 13, (17, 13))
    share.held = share.held[:3]
    with pytest.raises(ValueError, match="every subdomain"):
        one.Decomposition.of_share(share)


def test_the_one_rank_case_starts_no_mpi():
    """The serial build answers the builder's collectives itself (parallel/comm.OneRank)."""
    code = ("import sys; from pddattn import boxes, algebraic; from pddattn.problems import make_problem; "
            "A = make_problem('diffusion2d', (9, 9), 'lognormal:1', seed=1).A; "
            "boxes((9, 9), (3, 3), 1, 'smooth', 'harmonic', A); algebraic(A, 4, 1, 'smooth'); "
            "print('mpi4py' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
