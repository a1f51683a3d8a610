"""The FNO paper's own Darcy model (pddattn/fno_paper.py): its spectral layer, normalisers and size."""
import pytest
import torch

from pddattn.fno_paper import PaperFNO2D, PaperSpectralConv2d, sized
from tolerances import rounding


def _by_fft(layer, x):
    """The paper's computation of the layer: an orthonormal rfft2, the corners multiplied, irfft2."""
    m, (s1, s2) = layer.modes, x.shape[-2:]
    w = layer.weights.to(torch.complex128)
    x_ft = torch.fft.rfft2(x, norm="ortho")
    out = torch.zeros(*x.shape[:2], s1, s2 // 2 + 1, dtype=x_ft.dtype)
    out[:, :, :m, :m] = torch.einsum("bixy,ioxy->boxy", x_ft[:, :, :m, :m], w[0])
    out[:, :, -m:, :m] = torch.einsum("bixy,ioxy->boxy", x_ft[:, :, -m:, :m], w[1])
    return torch.fft.irfft2(out, s=(s1, s2), norm="ortho")


@pytest.mark.parametrize("grid, modes", [((17, 17), 4), ((12, 8), 5), ((21, 10), 6)])
def test_the_truncated_dft_is_the_papers_fft_layer_to_rounding_values_and_gradients(grid, modes):
    """(12, 8) with 5 modes keeps the even grid's last column, which the inverse counts once."""
    torch.manual_seed(0)
    layer = PaperSpectralConv2d(3, modes).double()
    x = torch.randn(2, 3, *grid, dtype=torch.float64, requires_grad=True)
    want, got = _by_fft(layer, x), layer(x)
    # each output sums about s1 s2 + 2 m^2 c rounded products of unit-sized terms: relative to the largest
    # entry, a factor of their count
    terms = grid[0] * grid[1] + 2 * modes ** 2 * 3
    assert (got - want).abs().max() <= rounding(factor=terms) * want.abs().max()
    g_want = torch.autograd.grad(want.square().sum(), (x, layer.weights))
    g_got = torch.autograd.grad(got.square().sum(), (x, layer.weights))
    for a, b in zip(g_got, g_want):
        assert (a - b).abs().max() <= rounding(factor=4 * terms) * b.abs().max()


def test_modes_that_do_not_fit_the_grid_are_refused():
    with pytest.raises(ValueError, match="6 modes do not fit a 11 x 11 grid"):
        PaperSpectralConv2d(2, 6)(torch.zeros(1, 2, 11, 11))


def test_the_papers_darcy_configuration_has_its_parameter_count():
    w, m, layers = 32, 12, 4
    lift, project = 3 * w + w, w * 128 + 128 + 128 + 1
    per_layer = 2 * 2 * w * w * m * m + (w * w + w) + 2 * w  # two complex corners, the 1 x 1 conv, batch norm
    assert PaperFNO2D(85).num_parameters() == lift + layers * per_layer + project == 2_368_257
    # the paper counts a complex weight once: its 1.19M
    assert PaperFNO2D(85).num_parameters() - layers * 2 * w * w * m * m == 1_188_609


def test_the_pointwise_normalisers_are_the_training_fields_mean_and_deviation_and_transfer_bilinearly():
    torch.manual_seed(0)
    a, u = torch.rand(6, 9, 9) * 9 + 3, torch.rand(6, 9, 9)
    model = PaperFNO2D(9, width=4, modes=2).fit(a, u).eval()
    assert torch.equal(model.u_mean, u.mean(0)) and torch.equal(model.a_std, a.std(0))
    torch.nn.init.zeros_(model.project[2].weight)
    torch.nn.init.zeros_(model.project[2].bias)
    assert torch.equal(model(a[:2]), u.mean(0).expand(2, 9, 9))  # a zero network answers the mean field
    # on another grid the normalisers are interpolated: a field linear in x is carried over exactly
    x = torch.linspace(0, 1, 9)
    model.u_mean.copy_(2 * x[:, None] + 3 * x[None, :])
    fine = torch.linspace(0, 1, 17)
    want = 2 * fine[:, None] + 3 * fine[None, :]
    got = model(torch.rand(1, 17, 17) * 9 + 3)[0]
    assert (got - want).abs().max() <= rounding(factor=20, eps=torch.finfo(torch.float32).eps) * want.abs().max()
    # one number each instead: a by its mean and deviation over all points, u by its RMS
    model.fit(a, u, pointwise=False)
    assert torch.equal(model.a_mean, a.mean().expand(9, 9)) and torch.equal(model.u_mean, torch.zeros(9, 9))
    assert torch.allclose(model.u_std + 1e-5, u.pow(2).mean().sqrt().expand(9, 9))


def test_the_small_version_is_the_size_nearest_the_target():
    width, modes = sized(31_185, 85)
    count = PaperFNO2D(85, width, modes).num_parameters()
    assert abs(count - 31_185) <= min(abs(PaperFNO2D(85, w, modes).num_parameters() - 31_185)
                                      for w in (width - 1, width + 1))
    assert abs(count - 31_185) < 0.1 * 31_185


@pytest.mark.parametrize("layers, modes", [(2, 4), (3, 6)])
def test_a_given_depth_and_modes_get_the_width_nearest_the_target(layers, modes):
    width, chosen = sized(31_185, 85, layers, modes)
    assert chosen == modes

    def miss(w):
        return abs(PaperFNO2D(85, w, modes, layers).num_parameters() - 31_185)
    assert miss(width) <= min(miss(width - 1), miss(width + 1))
    with pytest.raises(ValueError, match="no modes of 12 fit a 21 x 21 grid"):
        sized(31_185, 21, layers, 12)
