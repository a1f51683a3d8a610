"""The Galerkin Transformer baseline (Cao 2021), implemented here from the paper.

Cao's softmax-free "Galerkin-type" attention,

    z = Q (K~^T V~) / n,   K~ = LayerNorm(K), V~ = LayerNorm(V)   (per head),

costs O(n d^2) and is the attention pddattn's own operator is closest to.
Two baselines use it:

- ``CaoGalerkinTransformer2D``: the ``galerkin-transformer`` package's own
  Darcy model (0.2.1, 2022) with its authors' configuration. The package
  installs beside torch 2.13 and numpy < 2 but imports only with IPython
  and pandas, which its ``__init__`` needs and it does not declare: the
  ``gt`` extra adds both, pinned.
- ``GalerkinTransformer2D``: the layer written here from the paper, in a
  reduced model with no other dependency (the test suite's): a pointwise
  lift of (a, x, y) to d channels, L encoder layers (Galerkin attention with
  the node coordinates concatenated to Q and K, then a feed-forward layer,
  each residual), and a spectral regressor (two Fourier layers, FNO-style,
  ``modes`` per axis) with a pointwise projection to u. No down- and
  up-sampling CNNs (the grid is attended to directly, which linear attention
  affords), so it answers on any grid.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from .fno import default_dtype
from .normalisers import PointwiseNormalised

__all__ = ["GalerkinAttention", "SpectralConv2d", "GalerkinTransformer2D", "CaoGalerkinTransformer2D", "CaoDarcy",
           "sized_cao", "deterministic_attention"]

# The package's Darcy model as its authors ran it (config.yml, ex2_darcy, galerkin-transformer 0.2.1): the
# file is not installed with the package, so its entries are copied here
CAO_DARCY = dict(node_feats=1, pos_dim=2, n_targets=1, n_hidden=128, num_feat_layers=0, num_encoder_layers=6,
                 n_head=4, dim_feedforward=256, feat_extract_type=None, attention_type="galerkin", xavier_init=0.01,
                 diagonal_weight=0.01, symmetric_init=False, layer_norm=False, attn_norm=True, norm_eps=1e-7,
                 batch_norm=False, return_attn_weight=False, return_latent=False, decoder_type="ifft2",
                 spacial_dim=2, spacial_fc=True, upsample_mode="interp", downsample_mode="interp", freq_dim=32,
                 boundary_condition="dirichlet", num_regressor_layers=2, fourier_modes=12,
                 regressor_activation="silu", downscaler_activation="relu", upscaler_activation="silu",
                 last_activation=True, dropout=0.0, downscaler_dropout=0.05, upscaler_dropout=0.0, ffn_dropout=0.05,
                 encoder_dropout=0.05, decoder_dropout=0, debug=False, normalizer=None)


class GalerkinAttention(nn.Module):
    """Multi-head Galerkin attention on (B, n, d) tokens with positions (B, n, p) added to Q and K."""

    def __init__(self, d, heads=4, positions=2):
        super().__init__()
        if d % heads:
            raise ValueError(f"d = {d} is not a multiple of heads = {heads}")
        self.heads, self.dh = heads, d // heads
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.norm_k, self.norm_v = nn.LayerNorm(self.dh), nn.LayerNorm(self.dh)
        self.out = nn.Linear(d + heads * positions, d)
        self.positions = positions

    def _split(self, x):
        B, n, _ = x.shape
        return x.reshape(B, n, self.heads, -1).transpose(1, 2)  # (B, h, n, dh)

    def forward(self, x, pos):
        B, n, _ = x.shape
        q, k, v = self._split(self.q(x)), self.norm_k(self._split(self.k(x))), self.norm_v(self._split(self.v(x)))
        p = pos[:, None].expand(B, self.heads, n, self.positions)
        q, k = torch.cat([q, p], dim=-1), torch.cat([k, p], dim=-1)
        v = torch.cat([v, p], dim=-1)
        z = q @ (k.transpose(-2, -1) @ v) / n                       # (B, h, n, dh + p): no softmax
        return self.out(z.transpose(1, 2).reshape(B, n, -1))


class SpectralConv2d(nn.Module):
    """A Fourier layer's spectral convolution: the lowest ``modes`` frequencies per axis, learned weights."""

    def __init__(self, channels, modes):
        super().__init__()
        self.modes = modes
        scale = 1.0 / (channels * channels)
        self.w1 = nn.Parameter(scale * torch.randn(channels, channels, modes, modes, dtype=torch.cfloat))
        self.w2 = nn.Parameter(scale * torch.randn(channels, channels, modes, modes, dtype=torch.cfloat))

    def forward(self, x):
        B, C, H, W = x.shape
        m1, m2 = min(self.modes, H // 2), min(self.modes, W // 2 + 1)
        X = torch.fft.rfft2(x)
        Y = torch.zeros_like(X)
        w1, w2 = self.w1.to(X.dtype), self.w2.to(X.dtype)
        Y[:, :, :m1, :m2] = torch.einsum("bixy,ioxy->boxy", X[:, :, :m1, :m2], w1[:, :, :m1, :m2])
        Y[:, :, -m1:, :m2] = torch.einsum("bixy,ioxy->boxy", X[:, :, -m1:, :m2], w2[:, :, :m1, :m2])
        return torch.fft.irfft2(Y, s=(H, W))


class GalerkinTransformer2D(nn.Module):
    """a (B, s, s) on the full grid -> u (B, s, s): lift, Galerkin encoder layers, spectral regressor."""

    def __init__(self, d=64, layers=4, heads=4, modes=12, seed=0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.lift = nn.Linear(3, d)
            self.attention = nn.ModuleList([GalerkinAttention(d, heads) for _ in range(layers)])
            self.ffn = nn.ModuleList([nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
                                      for _ in range(layers)])
            self.spectral = nn.ModuleList([SpectralConv2d(d, modes) for _ in range(2)])
            self.pointwise = nn.ModuleList([nn.Conv2d(d, d, 1) for _ in range(2)])
            self.project = nn.Sequential(nn.Conv2d(d, 2 * d, 1), nn.GELU(), nn.Conv2d(2 * d, 1, 1))

    def forward(self, a):
        B, s, _ = a.shape
        x = torch.linspace(0, 1, s, dtype=a.dtype, device=a.device)
        Y, X = torch.meshgrid(x, x, indexing="ij")
        pos = torch.stack([X, Y], dim=-1).reshape(1, s * s, 2).expand(B, -1, -1)
        h = self.lift(torch.cat([a.reshape(B, s * s, 1), pos], dim=-1))
        for attention, ffn in zip(self.attention, self.ffn):
            h = h + attention(h, pos)
            h = h + ffn(h)
        h = h.transpose(1, 2).reshape(B, -1, s, s)
        for k, (spectral, pointwise) in enumerate(zip(self.spectral, self.pointwise)):
            h = spectral(h) + pointwise(h)
            if k == 0:
                h = nn.functional.gelu(h)
        return self.project(h)[:, 0]

    def num_parameters(self):
        return sum(p.numel() * (2 if p.is_complex() else 1) for p in self.parameters())


def _unit_grid(n):
    """(n, n, 2): the (x, y) coordinates of an n x n grid on the unit square, x fastest (Cao's get_grid)."""
    x = torch.linspace(0, 1, n, dtype=torch.float32)
    Y, X = torch.meshgrid(x, x, indexing="ij")
    return torch.stack([X, Y], dim=-1)


class CaoGalerkinTransformer2D(nn.Module):
    """The ``galerkin-transformer`` package's own Darcy model (FourierTransformer2D, Galerkin attention).

    Its ex2_darcy set-up at ``side`` x ``side``: an interpolating CNN down to a ``coarse`` x ``coarse`` grid
    (29 at 85: ``--subsample-nodes 5 --subsample-attn 15``), 6 Galerkin attention layers of width 128 there,
    an interpolating CNN back up and two Fourier layers (12 modes), dropout 0.05 (2.2M parameters; ``config``
    overrides entries of ``CAO_DARCY``). Its
    upsampler's sizes are fixed to ``side``: it answers on that grid only (no resolution transfer). Needs the
    ``gt`` extra (the package, and the IPython and pandas its ``__init__`` imports).
    """

    transfers = False  # to another grid

    def __init__(self, side, coarse=29, seed=0, **config):
        super().__init__()
        from galerkin_transformer.ft import DarcyDataset
        from galerkin_transformer.model import FourierTransformer2D
        down, up = DarcyDataset.get_scaler_sizes(side, coarse)
        with torch.random.fork_rng(devices=[]), default_dtype(torch.float32):  # as its authors trained it
            torch.manual_seed(seed)
            self.net = FourierTransformer2D(**{**CAO_DARCY, **config}, downscaler_size=down, upscaler_size=up)
        self.side, self.coarse = int(side), int(coarse)
        self.register_buffer("pos", _unit_grid(coarse).reshape(1, -1, 2), persistent=False)
        self.register_buffer("grid", _unit_grid(side)[None], persistent=False)

    def forward(self, a):
        B, s, _ = a.shape
        if s != self.side:
            raise ValueError(f"this model answers on its {self.side} x {self.side} grid only (its upsampler's "
                             f"sizes are fixed), not on {s} x {s}")
        with default_dtype(torch.float32):
            out = self.net(a[..., None].float(), torch.ones(1, device=a.device), pos=self.pos.expand(B, -1, -1),
                           grid=self.grid.expand(B, -1, -1, -1))
        return out["preds"][..., 0]


class CaoDarcy(PointwiseNormalised):
    """a (B, s, s) -> u: the package's Darcy model between its script's normalisers, as ex2_darcy.py ran it.

    Its DarcyDataset normalises a and u pointwise over the training fields (``fit``; the model answers a
    normalised u and un-normalises it), and the script's argument defaults override config.yml's
    ``ffn_dropout`` (0.1, not 0.05). The rest of its recipe (batches of 4, one-cycle learning rate, an H1
    term in the loss, gradient clipping) is the trainer's (benchmarks/darcy_recipe.py). ``config``: as for
    ``CaoGalerkinTransformer2D``.
    """

    transfers = False

    def __init__(self, side, coarse=29, seed=0, **config):
        super().__init__(side)
        self.net = CaoGalerkinTransformer2D(side, coarse, seed, **{"ffn_dropout": 0.1, **config})

    def network(self, x):
        return self.net(x)


def sized_cao(target, side, layers=6, modes=(12, 8, 6, 4)):
    """``CaoDarcy`` config entries of the package's model at about ``target`` parameters on a ``side`` grid.

    Its shape is kept (4 heads, attention on 29 x 29, the feed-forward width twice the width and the
    regressor's frequency channels a quarter of it, as config.yml has them at 128), with ``layers`` attention
    layers (its 6 by default); the width (a multiple of 4, 8 to 64) and the regressor's modes (one of
    ``modes``; an int: that one) are chosen, the count nearest ``target``."""
    best = None
    for m in (modes,) if isinstance(modes, int) else modes:
        for d in range(8, 65, 4):
            config = dict(n_hidden=d, dim_feedforward=2 * d, freq_dim=max(4, d // 4), fourier_modes=m,
                          num_encoder_layers=layers)
            count = CaoDarcy(side, **config).num_parameters()
            if best is None or abs(count - target) < abs(best[0] - target):
                best = (count, config)
    return best[1]


@contextlib.contextmanager
def deterministic_attention():
    """The package's Galerkin attention without the dropout it applies at test time too.

    Its ``linear_attention`` (galerkin-transformer 0.2.1, and its authors' code since its first commit) calls
    ``F.dropout(p_attn)`` with PyTorch's defaults, p = 0.5 and training=True: half of every head's K^T V / n
    is dropped (the rest doubled) in eval mode as well, so each evaluation is a random draw. Inside this
    context that call is skipped; the model's other dropouts follow its train/eval mode as usual.
    """
    from galerkin_transformer import layers
    original = layers.linear_attention

    def linear_attention(query, key, value, mask=None, dropout=None, attention_type="galerkin"):
        return original(query, key, value, mask=mask, dropout=None, attention_type=attention_type)
    layers.linear_attention = linear_attention
    try:
        yield
    finally:
        layers.linear_attention = original
