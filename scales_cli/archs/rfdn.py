"""RFDN: residual feature distillation network (Liu et al., AIM 2020 winner; NTIRE 2022 ESR baseline).

Layout (names as in ofsoundof/NTIRE2022_ESR ``models/rfdn_baseline``)::

    fea_conv (3x3) -> B1..Bn (RFDB) -> c (1x1 over all block outputs, LeakyReLU 0.05)
    -> LR_conv (3x3) + fea_conv output -> upsampler (3x3 conv to out_nc*s^2, PixelShuffle(s))

An RFDB runs three steps of {distil: 1x1 conv to nf/2 + LeakyReLU; refine: lrelu(3x3 conv(h) + h)},
a last 3x3 conv to nf/2, concatenates the four nf/2 parts, fuses them with a 1x1 conv and applies
ESA (no block-level residual). The NTIRE checkpoint works on pixels in [0, 255].
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._distill import ESA_MIN_SIDE, HEAD, SKELETON_KEYS, TAIL, DistillationNet, esa_max_pool, resize_like, same_conv, skeleton_hparams
from ._shapes import StateDict
from .descriptor import ArchSpec

LRELU_SLOPE = 0.05


class ESA(nn.Module):
    """Enhanced spatial attention: x * sigmoid(conv4(up(conv3_(relu(conv3(relu(conv_max(pool(conv2(c1))))))) + conv_f(c1)))
    with c1 = conv1(x) (1x1 to ``f`` channels)."""

    def __init__(self, n_feats: int, f: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(n_feats, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv_max = nn.Conv2d(f, f, 3, padding=1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2, padding=0)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv3_ = nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, n_feats, 1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1_ = self.conv1(x)
        v_max = esa_max_pool(self.conv2(c1_))
        c3 = self.conv3_(self.relu(self.conv3(self.relu(self.conv_max(v_max)))))
        mask = torch.sigmoid(self.conv4(resize_like(c3, x) + self.conv_f(c1_)))
        return x * mask


class RFDB(nn.Module):
    """Residual feature distillation block (nf/2 distilled channels per step)."""

    def __init__(self, nf: int, esa_channels: int) -> None:
        super().__init__()
        dc = nf // 2
        self.c1_d = same_conv(nf, dc, 1)
        self.c1_r = same_conv(nf, nf, 3)
        self.c2_d = same_conv(nf, dc, 1)
        self.c2_r = same_conv(nf, nf, 3)
        self.c3_d = same_conv(nf, dc, 1)
        self.c3_r = same_conv(nf, nf, 3)
        self.c4 = same_conv(nf, dc, 3)
        self.act = nn.LeakyReLU(LRELU_SLOPE)
        self.c5 = same_conv(dc * 4, nf, 1)
        self.esa = ESA(nf, esa_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.act(self.c1_d(x))
        r1 = self.act(self.c1_r(x) + x)
        d2 = self.act(self.c2_d(r1))
        r2 = self.act(self.c2_r(r1) + r1)
        d3 = self.act(self.c3_d(r2))
        r3 = self.act(self.c3_r(r2) + r2)
        r4 = self.act(self.c4(r3))
        return self.esa(self.c5(torch.cat([d1, d2, d3, r4], dim=1)))


class RFDN(DistillationNet):
    def __init__(
        self, scale: int = 4, in_nc: int = 3, nf: int = 50, num_modules: int = 4, out_nc: int = 3, esa_channels: int = 12
    ) -> None:
        blocks = [RFDB(nf, esa_channels) for _ in range(num_modules)]
        super().__init__("B", blocks, in_nc=in_nc, nf=nf, out_nc=out_nc, scale=scale, slope=LRELU_SLOPE)


def infer(sd: StateDict) -> dict[str, Any]:
    return {**skeleton_hparams(sd, "B", ".c1_d.weight"), "esa_channels": int(sd["B1.esa.conv1.weight"].shape[0])}


def build(*, input_range: float = 255.0, **hparams: Any) -> nn.Module:
    """``input_range`` only tells callers how to scale pixels; the network itself does not use it."""
    return RFDN(**hparams)


def _conv_distillers(sd: StateDict) -> bool:
    """RFDN's distillation layers are 1x1 convs; BSRN's same-named ones are Linear layers."""
    return sd["B1.c1_d.weight"].ndim == 4


SPEC = ArchSpec(
    min_size=ESA_MIN_SIDE,
    name="rfdn",
    required_keys=(
        *SKELETON_KEYS,
        "B1.c1_d.weight",
        "B1.c1_r.weight",
        "B1.c4.weight",
        "B1.c5.weight",
        "B1.esa.conv1.weight",
        "B1.esa.conv_max.weight",
        "B1.esa.conv3_.weight",
    ),
    infer=infer,
    build=build,
    head=HEAD,
    tail=TAIL,
    defaults={"input_range": 255.0},  # NTIRE 2022 ESR baseline; the AIM 2020 code uses [0, 1]
    input_range=255.0,
    accept=_conv_distillers,
    description="RFDN (AIM 2020 / NTIRE 2022 ESR baseline): residual feature distillation blocks with ESA",
    examples=(
        {"scale": 4, "in_nc": 3, "nf": 50, "num_modules": 4, "out_nc": 3, "esa_channels": 12},
        {"scale": 2, "in_nc": 3, "nf": 48, "num_modules": 6, "out_nc": 3, "esa_channels": 12},
        {"scale": 3, "in_nc": 3, "nf": 50, "num_modules": 4, "out_nc": 3, "esa_channels": 12},
        # tiny, for tests that run every architecture (export parity, rewrite): they pick the smallest
        {"scale": 2, "in_nc": 3, "nf": 16, "num_modules": 1, "out_nc": 3, "esa_channels": 8},
    ),
)
