"""CARN-M (Ahn et al., ECCV 2018, "Fast, Accurate, and Lightweight Super-Resolution with Cascading
Residual Network"), in the layout of nmhkahn/CARN-pytorch ``carn/model/carn_m.py``.

Structure (C = ``num_feat`` = 64, g = ``group`` = 4 in the released CARN-M):

    x -> sub_mean (1x1 conv holding -mean) -> entry (3x3) -> 3 cascading blocks b1..b3 -> upsample -> exit -> add_mean

Cascading, at both levels: ``o_i = c_i(cat[c_0, y_1, ..., y_i])`` with ``c_i`` a 1x1 conv ((i+1)C -> C)
+ ReLU and ``y_i`` the i-th inner unit applied to ``o_{i-1}``. Inside a block the inner unit is ONE
efficient residual block ``b1`` (grouped 3x3, ReLU, grouped 3x3, ReLU, 1x1; ``relu(x + body(x))``)
used three times with shared weights; at the top level the units are the blocks b1, b2, b3.

The released checkpoint is multi-scale: ``upsample.up2/up3/up4`` all live in one file and the official
``forward(x, scale)`` picks one, so the scale cannot be read off its shapes — it comes from
``defaults`` (4) or ``--arch-opt scale=2``. Our network fixes the scale at build time and keeps every
branch so the file still loads strictly. A single-scale CARN-M (``upsample.up.*``) states its scale
through its pixel-shuffle convs: ``scale = prod_i r_i``, conv i having ``C r_i^2`` output channels.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import DetectionError
from . import _layers
from ._layers import pixel_shuffle_steps
from ._shapes import StateDict, upsampler_scale
from .descriptor import ArchSpec

BRANCH_SCALES: tuple[int, ...] = (2, 3, 4)  # the multi-scale upsampler's branches


class MeanShift(nn.Module):
    """``y = x + sign * mean`` (DIV2K mean, [0, 1] range) as a frozen 1x1 conv under CARN's name ``shifter``."""

    def __init__(self, sign: float) -> None:
        super().__init__()
        self.shifter = _layers.MeanShift(1.0, sign)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shifter(x)


class ConvReLU(nn.Module):
    """``relu(conv(x))`` under the official name ``body`` (CARN's ``BasicBlock``)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, kernel, 1, kernel // 2), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class EResidualBlock(nn.Module):
    """Efficient residual block: ``relu(x + conv1x1(relu(gconv(relu(gconv(x))))))``."""

    def __init__(self, channels: int, group: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, groups=group),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, groups=group),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + x)


def cascade(x: torch.Tensor, units: list[nn.Module], fusers: list[nn.Module]) -> torch.Tensor:
    """CARN's cascading connection: ``o_i = fuser_i(cat[x, unit_1(o_0), ..., unit_i(o_{i-1})])``."""
    concat, out = x, x
    for unit, fuse in zip(units, fusers, strict=True):
        concat = torch.cat([concat, unit(out)], dim=1)
        out = fuse(concat)
    return out


class CascadingBlock(nn.Module):
    """One local cascading block: a single weight-shared ``b1`` applied three times."""

    def __init__(self, channels: int, group: int) -> None:
        super().__init__()
        self.b1 = EResidualBlock(channels, group)
        self.c1 = ConvReLU(2 * channels, channels)
        self.c2 = ConvReLU(3 * channels, channels)
        self.c3 = ConvReLU(4 * channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cascade(x, [self.b1] * 3, [self.c1, self.c2, self.c3])


class ShuffleUpsampler(nn.Module):
    """``body`` = [grouped conv C -> C r^2, ReLU, PixelShuffle(r)] per factor r (2,2 for x4; 3 for x3)."""

    def __init__(self, channels: int, scale: int, group: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for r in _factors(scale):
            layers += [nn.Conv2d(channels, channels * r * r, 3, 1, 1, groups=group), nn.ReLU(inplace=True)]
            layers.append(nn.PixelShuffle(r))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _factors(scale: int) -> list[int]:
    """Pixel-shuffle steps: 2^k -> k twos, 3 -> one three (what the official upsampler supports)."""
    try:
        return pixel_shuffle_steps(scale)
    except ValueError:
        raise DetectionError(f"CARN-M: scale {scale} is not supported (expected 2, 3, 4 or 8)") from None


class Upsampler(nn.Module):
    """Multi-scale: branches ``up2/up3/up4`` (all kept, one used); single-scale: ``up``."""

    def __init__(self, channels: int, scale: int, multi_scale: bool, group: int) -> None:
        super().__init__()
        if multi_scale:
            if scale not in BRANCH_SCALES:
                raise DetectionError(
                    f"CARN-M multi-scale checkpoint: scale={scale} has no branch (choose --arch-opt scale=2, 3 or 4)"
                )
            for s in BRANCH_SCALES:
                self.add_module(f"up{s}", ShuffleUpsampler(channels, s, group))
            self.branch = f"up{scale}"
        else:
            self.up = ShuffleUpsampler(channels, scale, group)
            self.branch = "up"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self.branch)(x)


class CARNM(nn.Module):
    """CARN-M with the scale fixed at build time; ``forward(x)`` maps [0,1] RGB to [0,1] RGB."""

    def __init__(self, scale: int = 4, num_feat: int = 64, group: int = 4, multi_scale: bool = True) -> None:
        super().__init__()
        self.scale = scale
        self.sub_mean = MeanShift(-1.0)
        self.add_mean = MeanShift(1.0)
        self.entry = nn.Conv2d(3, num_feat, 3, 1, 1)
        self.b1 = CascadingBlock(num_feat, group)
        self.b2 = CascadingBlock(num_feat, group)
        self.b3 = CascadingBlock(num_feat, group)
        self.c1 = ConvReLU(2 * num_feat, num_feat)
        self.c2 = ConvReLU(3 * num_feat, num_feat)
        self.c3 = ConvReLU(4 * num_feat, num_feat)
        self.upsample = Upsampler(num_feat, scale, multi_scale, group)
        self.exit = nn.Conv2d(num_feat, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.entry(self.sub_mean(x))
        feat = cascade(feat, [self.b1, self.b2, self.b3], [self.c1, self.c2, self.c3])
        return self.add_mean(self.exit(self.upsample(feat)))


def infer(sd: StateDict) -> dict[str, Any]:
    """Width from ``entry``; group from the grouped conv's input slice (C / (C/g)); scale only when
    the upsampler is single-scale (product of its pixel-shuffle factors)."""
    num_feat = int(sd["entry.weight"].shape[0])
    group = num_feat // int(sd["b1.b1.body.0.weight"].shape[1])
    multi_scale = "upsample.up2.body.0.weight" in sd
    out: dict[str, Any] = {"num_feat": num_feat, "group": group, "multi_scale": multi_scale}
    if not multi_scale:
        out["scale"] = upsampler_scale(sd, "upsample.up.body.", num_feat)
    return out


def build(scale: int, num_feat: int = 64, group: int = 4, multi_scale: bool = True) -> CARNM:
    return CARNM(scale=int(scale), num_feat=num_feat, group=group, multi_scale=bool(multi_scale))


SPEC = ArchSpec(
    name="carn-m",
    required_keys=(
        "sub_mean.shifter.weight",
        "add_mean.shifter.weight",
        "entry.weight",
        "b1.b1.body.4.weight",  # the 1x1 of the efficient residual block: full CARN has no body.4
        "b3.c3.body.0.weight",
        "c3.body.0.weight",
        "exit.weight",
    ),
    forbidden_keys=("b1.b2.*",),  # full CARN has three distinct residual blocks per cascading block
    infer=infer,
    build=build,
    head=("sub_mean", "entry"),
    tail=("upsample", "exit", "add_mean"),
    defaults={"scale": 4},  # a multi-scale file holds every branch: the scale is the user's choice
    ambiguous_scales=BRANCH_SCALES,  # only when infer() leaves scale out (the multi-scale file)
    input_range=1.0,
    description="CARN-M (nmhkahn/CARN-pytorch carn_m.py), multi-scale x2/x3/x4 or single-scale",
    examples=(
        {"scale": 4, "num_feat": 64, "group": 4, "multi_scale": True},  # the released carn_m.pth
        {"scale": 2, "num_feat": 64, "group": 4, "multi_scale": False},
        {"scale": 3, "num_feat": 64, "group": 4, "multi_scale": False},
        {"scale": 8, "num_feat": 32, "group": 2, "multi_scale": False},
        # tiny, for tests that run every architecture (export parity, rewrite): they pick the smallest
        {"scale": 2, "num_feat": 16, "group": 2, "multi_scale": False},
    ),
)
