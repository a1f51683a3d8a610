import numpy as np
import pytest
import torch

import reference as ref
from pddattn.decomposition import intervals as Decomposition
from pddattn.operators import DDAttention, GlobalAttention
from tolerances import APPLY, REORDERED, cond, rounding

# Uneven cores (n not divisible by N), overlaps wider than a core, boundary clipping.
CASES = [(23, 4, 2), (40, 7, 6), (31, 3, 0), (12, 1, 3)]


def unpadded(model):
    d = model.decomposition
    Q, K, Q0, K0 = (t.detach().numpy() if t is not None else None for t in model.factors())
    Qs = [Q[i, : d.sizes[i]] for i in range(d.N)]
    Ks = [K[i, : d.sizes[i]] for i in range(d.N)]
    return Qs, Ks, Q0, K0


@pytest.mark.parametrize("n,N,delta", CASES)
@pytest.mark.parametrize("pou", ["count", "smooth"])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("coarse", [True, False])
def test_dd_equals_independent_dense_construction(n, N, delta, pou, symmetric, coarse):
    d = Decomposition(n, N, delta, pou, coarse="hat" if coarse else "none")
    model = DDAttention(d, r=3, r0=2, symmetric=symmetric, seed=7, init_scale=30.0)
    Qs, Ks, Q0, K0 = unpadded(model)
    M_ref = ref.dd_matrix(n, N, delta, pou, Qs, Ks, Q0 if coarse else None, K0)
    M = model.dense().numpy()
    assert np.abs(M - M_ref).max() <= APPLY * np.abs(M_ref).max()  # random factors, sums reordered
    f = torch.randn(5, n)
    scale = np.abs(M_ref).max() * n * f.abs().max().item()  # |M| |f| bounds each entry of M f
    assert torch.allclose(model(f), f @ torch.as_tensor(M_ref).T, rtol=0, atol=APPLY * scale)
    assert torch.allclose(model(f, transpose=True), f @ torch.as_tensor(M_ref), rtol=0, atol=APPLY * scale)
    if symmetric:  # Q K^T with K = Q: symmetric up to the order of each entry's sums
        assert np.abs(M - M.T).max() <= APPLY * np.abs(M).max()


@pytest.mark.parametrize("n,N,delta", CASES)
@pytest.mark.parametrize("pou", ["count", "smooth"])
def test_schwarz_init_is_two_level_additive_schwarz(n, N, delta, pou):
    d = Decomposition(n, N, delta, pou)
    model = DDAttention(d, r=d.max_size, init="schwarz")
    M_ref = ref.schwarz_matrix(n, N, delta, pou)
    # Schwarz factors from an eigendecomposition against dense inverses: kappa(A) eps (factor 100).
    assert np.abs(model.dense().numpy() - M_ref).max() <= rounding(cond(ref.laplacian(n)), factor=100) * \
        np.abs(M_ref).max()


def test_truncated_schwarz_keeps_the_smoothest_modes():
    d = Decomposition(60, 4, 2)
    full = DDAttention(d, r=d.max_size, init="schwarz").dense().numpy()
    low = DDAttention(d, r=4, r0=2, init="schwarz").dense().numpy()
    assert np.linalg.matrix_rank(low) <= 4 * 4 + 2
    x = np.sin(np.pi * np.arange(1, 61) / 61)  # the smoothest mode: captured almost fully
    assert np.linalg.norm((full - low) @ x) < 0.05 * np.linalg.norm(full @ x)


def test_dd_with_enough_rank_represents_the_exact_inverse():
    """The 1D oracle: put A_j^-1 of the between-coarse-node blocks in the local blocks."""
    n, N, delta = 30, 5, 2
    d = Decomposition(n, N, delta)
    A = ref.laplacian(n)
    model = DDAttention(d, r=d.max_size, init="schwarz")
    ref.set_exact_blocks(model, A)
    Ainv = np.linalg.inv(A)
    assert np.abs(model.dense().numpy() - Ainv).max() <= rounding(cond(A), factor=100) * np.abs(Ainv).max()


def test_global_attention():
    model = GlobalAttention(9, 2, seed=1)
    M = (model.Q @ model.K.T).detach()
    assert torch.allclose(model.dense(), M, rtol=0, atol=REORDERED * M.abs().max().item())  # Q K^T two ways
    assert model.num_parameters() == 2 * 9 * 2
    assert GlobalAttention(9, 2, symmetric=True).num_parameters() == 9 * 2
    f = torch.randn(9)
    assert model(f).shape == (9,)


def test_parameter_counts_exclude_padding():
    d = Decomposition(23, 4, 2)
    m = DDAttention(d, r=3, r0=2)
    assert m.num_parameters() == 2 * (int(d.sizes.sum()) * 3 + 3 * 2)
    assert DDAttention(d, r=3, r0=2, symmetric=True).num_parameters() == m.num_parameters() // 2
    assert DDAttention(Decomposition(23, 4, 2, coarse="none"), r=3).num_parameters() == 2 * int(d.sizes.sum()) * 3
    assert m.num_parameters() < GlobalAttention(23, 8).num_parameters()


@pytest.mark.parametrize("symmetric", [False, True])
def test_gradcheck(symmetric):
    d = Decomposition(13, 3, 2, "smooth")
    model = DDAttention(d, r=2, r0=2, symmetric=symmetric, seed=3, init_scale=50.0)
    f = torch.randn(4, 13)
    names, values = zip(*model.named_parameters())
    inputs = (f.requires_grad_(),) + tuple(v.detach().clone().requires_grad_() for v in values)

    def functional(x, *params):
        return torch.func.functional_call(model, dict(zip(names, params)), (x,))

    assert torch.autograd.gradcheck(functional, inputs)


def test_padding_rows_stay_zero_under_training():
    d = Decomposition(23, 4, 2)
    model = DDAttention(d, r=2, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 23)).square().sum().backward()
        opt.step()
    pad = torch.as_tensor(np.arange(d.max_size)[None, :] >= d.sizes[:, None])
    assert (model.Q[pad] == 0).all() and (model.K[pad] == 0).all()


def test_dtype_and_device_arguments():
    d = Decomposition(16, 2, 1)
    m = DDAttention(d, r=2, dtype=torch.float32, device="cpu")
    assert m.Q.dtype == torch.float32 and m.weight.dtype == torch.float32
    assert m(torch.randn(3, 16, dtype=torch.float32)).dtype == torch.float32


@pytest.mark.parametrize("kwargs,match", [
    (dict(r=0), "local rank r must be a positive integer"),
    (dict(r=2, r0=-1), "coarse rank r0 must be a positive integer"),
    (dict(r=2, init="zeros"), "unknown init 'zeros'"),
])
def test_bad_operator_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DDAttention(Decomposition(10, 2, 1), **kwargs)


def test_wrong_input_size():
    with pytest.raises(ValueError, match="expected inputs with 10 nodes"):
        DDAttention(Decomposition(10, 2, 1), r=2)(torch.randn(3, 11))
