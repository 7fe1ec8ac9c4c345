"""IMDN: information multi-distillation network (Hui et al., ACM MM 2019; Zheng222/IMDN).

Layout (parameter names as in ``model/architecture.py``)::

    fea_conv (3x3) -> IMDB1..IMDBn -> c (1x1 over the concatenated block outputs, LeakyReLU 0.05)
    -> LR_conv (3x3) + fea_conv output -> upsampler (3x3 conv to out_nc*s^2, PixelShuffle(s))

Each IMDB splits its features after every 3x3 conv: d = int(nf/4) channels are "distilled"
(kept), the remaining nf-d go on; the four distilled parts pass contrast-aware channel attention
(mean + std per channel -> 1x1 -> ReLU -> 1x1 -> sigmoid, reduction 16) and a 1x1 conv, plus the
block input. The official class hard-codes six blocks; here there are ``num_modules`` of them,
numbered from 1 as in the checkpoints.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._distill import HEAD, SKELETON_KEYS, TAIL, DistillationNet, same_conv, skeleton_hparams
from ._shapes import StateDict
from .descriptor import ArchSpec

DISTILLATION_RATE = 0.25
CCA_REDUCTION = 16
LRELU_SLOPE = 0.05


def _sqrt(v: torch.Tensor) -> torch.Tensor:
    """sqrt(v) with a zero gradient where v = 0 (a constant channel) instead of sqrt's inf, which would
    turn the step NaN; such channels are rare in float32 and common once bf16 autocast rounds a
    low-contrast channel flat. Same values; inference (no grad, as exported) keeps the plain sqrt."""
    if not torch.is_grad_enabled():
        return v.sqrt()
    flat = v <= 0
    return torch.where(flat, 0.0, torch.where(flat, 1.0, v).sqrt())


class CCALayer(nn.Module):
    """Contrast-aware channel attention: x * sigmoid(W2 relu(W1 (std(x) + mean(x))))."""

    def __init__(self, channels: int, reduction: int = CCA_REDUCTION) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = _sqrt((x - mean).pow(2).mean(dim=(2, 3), keepdim=True))  # population std, as official
        return x * self.conv_du(std + mean)


class IMDModule(nn.Module):
    """One information multi-distillation block (residual)."""

    def __init__(self, nf: int) -> None:
        super().__init__()
        self.distilled = int(nf * DISTILLATION_RATE)
        self.remaining = nf - self.distilled
        self.c1 = same_conv(nf, nf, 3)
        self.c2 = same_conv(self.remaining, nf, 3)
        self.c3 = same_conv(self.remaining, nf, 3)
        self.c4 = same_conv(self.remaining, self.distilled, 3)
        self.act = nn.LeakyReLU(LRELU_SLOPE)
        self.c5 = same_conv(nf, nf, 1)
        self.cca = CCALayer(self.distilled * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = (self.distilled, self.remaining)
        d1, r1 = torch.split(self.act(self.c1(x)), split, dim=1)
        d2, r2 = torch.split(self.act(self.c2(r1)), split, dim=1)
        d3, r3 = torch.split(self.act(self.c3(r2)), split, dim=1)
        out = torch.cat([d1, d2, d3, self.c4(r3)], dim=1)
        return self.c5(self.cca(out)) + x


class IMDN(DistillationNet):
    def __init__(self, scale: int = 4, in_nc: int = 3, nf: int = 64, num_modules: int = 6, out_nc: int = 3) -> None:
        blocks = [IMDModule(nf) for _ in range(num_modules)]
        super().__init__("IMDB", blocks, in_nc=in_nc, nf=nf, out_nc=out_nc, scale=scale, slope=LRELU_SLOPE)


def infer(sd: StateDict) -> dict[str, Any]:
    return skeleton_hparams(sd, "IMDB", ".c1.weight")



SPEC = ArchSpec(
    name="imdn",
    required_keys=(
        *SKELETON_KEYS,
        "IMDB1.c1.weight",
        "IMDB1.c4.weight",
        "IMDB1.c5.weight",
        "IMDB1.cca.conv_du.0.weight",
    ),
    infer=infer,
    build=IMDN,
    head=HEAD,
    tail=TAIL,
    input_range=1.0,
    description="IMDN (Zheng222/IMDN): information multi-distillation blocks with contrast-aware attention",
    examples=(
        {"scale": 2, "in_nc": 3, "nf": 64, "num_modules": 6, "out_nc": 3},
        {"scale": 3, "in_nc": 3, "nf": 64, "num_modules": 6, "out_nc": 3},
        {"scale": 4, "in_nc": 3, "nf": 64, "num_modules": 6, "out_nc": 3},
        {"scale": 3, "in_nc": 3, "nf": 32, "num_modules": 4, "out_nc": 3},
        # tiny, for tests that run every architecture (export parity, rewrite): they pick the smallest
        {"scale": 2, "in_nc": 3, "nf": 16, "num_modules": 1, "out_nc": 3},
    ),
)
