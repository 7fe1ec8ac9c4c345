"""PAN: pixel attention network (Zhao et al., ECCVW 2020; zhaohengyuan1/PAN).

Layout (names as in ``codes/models/archs/PAN_arch.py``)::

    conv_first (3x3) -> SCPA_trunk.0..nb-1 -> trunk_conv (3x3) + conv_first output
    x2/x3: nearest up by s -> upconv1 -> lrelu(att1) -> lrelu(HRconv1)
    x4:    the same twice by 2 (upconv1/att1/HRconv1, then upconv2/att2/HRconv2)
    -> conv_last (3x3, unf -> out_nc) + bilinear(x, s)

A SCPA block splits nf into two nf/2 paths (1x1 convs, LeakyReLU 0.2): a plain 3x3 conv, and a
pixel-attention conv k4(k3(h) * sigmoid(k2(h))); a 1x1 conv fuses them, plus the block input. PA
is x * sigmoid(conv1x1(x)).

Scale: x4 has a second upsampling stage (``upconv2``); x2 and x3 have the same tensors (the factor
only enters the nearest-neighbour interpolation), so the scale of a checkpoint without
``upconv2`` cannot be read off it: it defaults to 2, and x3 checkpoints need ``--arch-opt scale=3``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._shapes import StateDict, seq_len
from .descriptor import ArchSpec

LRELU_SLOPE = 0.2
SCPA_REDUCTION = 2
TWO_STAGE_SCALE = 4  # the only scale with two upsampling stages
SINGLE_STAGE_SCALES = (2, 3)


class PA(nn.Module):
    """Pixel attention: x * sigmoid(conv1x1(x))."""

    def __init__(self, nf: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(nf, nf, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x))


class PAConv(nn.Module):
    """k4(k3(x) * sigmoid(k2(x))): a 3x3 conv gated per pixel, then another 3x3 conv."""

    def __init__(self, nf: int, k_size: int = 3) -> None:
        super().__init__()
        self.k2 = nn.Conv2d(nf, nf, 1)
        self.k3 = nn.Conv2d(nf, nf, k_size, padding=k_size // 2, bias=False)
        self.k4 = nn.Conv2d(nf, nf, k_size, padding=k_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.k4(self.k3(x) * torch.sigmoid(self.k2(x)))


class SCPA(nn.Module):
    """Self-calibrated block with pixel attention (residual)."""

    def __init__(self, nf: int, reduction: int = SCPA_REDUCTION) -> None:
        super().__init__()
        gw = nf // reduction
        self.conv1_a = nn.Conv2d(nf, gw, 1, bias=False)
        self.conv1_b = nn.Conv2d(nf, gw, 1, bias=False)
        self.k1 = nn.Sequential(nn.Conv2d(gw, gw, 3, padding=1, bias=False))
        self.PAConv = PAConv(gw)
        self.conv3 = nn.Conv2d(gw * reduction, nf, 1, bias=False)
        self.lrelu = nn.LeakyReLU(LRELU_SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.lrelu(self.k1(self.lrelu(self.conv1_a(x))))
        b = self.lrelu(self.PAConv(self.lrelu(self.conv1_b(x))))
        return self.conv3(torch.cat([a, b], dim=1)) + x


class PAN(nn.Module):
    def __init__(self, scale: int = 4, in_nc: int = 3, out_nc: int = 3, nf: int = 40, unf: int = 24, nb: int = 16) -> None:
        super().__init__()
        if scale not in (*SINGLE_STAGE_SCALES, TWO_STAGE_SCALE):
            raise TypeError(f"PAN supports scales 2, 3 and 4, not {scale}")
        self.scale = scale
        self.conv_first = nn.Conv2d(in_nc, nf, 3, padding=1)
        self.SCPA_trunk = nn.Sequential(*(SCPA(nf) for _ in range(nb)))
        self.trunk_conv = nn.Conv2d(nf, nf, 3, padding=1)
        self.upconv1 = nn.Conv2d(nf, unf, 3, padding=1)
        self.att1 = PA(unf)
        self.HRconv1 = nn.Conv2d(unf, unf, 3, padding=1)
        if scale == TWO_STAGE_SCALE:
            self.upconv2 = nn.Conv2d(unf, unf, 3, padding=1)
            self.att2 = PA(unf)
            self.HRconv2 = nn.Conv2d(unf, unf, 3, padding=1)
        self.conv_last = nn.Conv2d(unf, out_nc, 3, padding=1)
        self.lrelu = nn.LeakyReLU(LRELU_SLOPE)

    def _stage(self, fea: torch.Tensor, factor: int, up: nn.Module, att: nn.Module, hr: nn.Module) -> torch.Tensor:
        fea = up(F.interpolate(fea, scale_factor=factor, mode="nearest"))
        return self.lrelu(hr(self.lrelu(att(fea))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.conv_first(x)
        fea = fea + self.trunk_conv(self.SCPA_trunk(fea))
        if self.scale == TWO_STAGE_SCALE:
            fea = self._stage(fea, 2, self.upconv1, self.att1, self.HRconv1)
            fea = self._stage(fea, 2, self.upconv2, self.att2, self.HRconv2)
        else:
            fea = self._stage(fea, self.scale, self.upconv1, self.att1, self.HRconv1)
        skip = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return self.conv_last(fea) + skip


def infer(sd: StateDict) -> dict[str, Any]:
    nf, in_nc = sd["conv_first.weight"].shape[:2]
    hp: dict[str, Any] = {
        "in_nc": int(in_nc),
        "out_nc": int(sd["conv_last.weight"].shape[0]),
        "nf": int(nf),
        "unf": int(sd["upconv1.weight"].shape[0]),
        "nb": seq_len(sd, "SCPA_trunk."),
    }
    if "upconv2.weight" in sd:
        hp["scale"] = TWO_STAGE_SCALE  # otherwise x2 or x3: shape-identical, left to defaults/--arch-opt
    return hp



SPEC = ArchSpec(
    name="pan",
    required_keys=(
        "conv_first.weight",
        "SCPA_trunk.0.conv1_a.weight",
        "SCPA_trunk.0.conv1_b.weight",
        "SCPA_trunk.0.PAConv.k2.weight",
        "trunk_conv.weight",
        "upconv1.weight",
        "att1.conv.weight",
        "HRconv1.weight",
        "conv_last.weight",
    ),
    infer=infer,
    build=PAN,
    head=("conv_first",),
    tail=("upconv1", "att1", "HRconv1", "upconv2", "att2", "HRconv2", "conv_last"),
    # Inferred (4) when upconv2 exists; x2 and x3 checkpoints are identical in shape: pass scale=3.
    defaults={"scale": SINGLE_STAGE_SCALES[0]},
    ambiguous_scales=SINGLE_STAGE_SCALES,  # settled by running the weights at each (loading.scale)
    input_range=1.0,
    description="PAN (zhaohengyuan1/PAN): SCPA blocks and pixel-attention upsampling with a bilinear skip",
    examples=(
        {"scale": 4, "in_nc": 3, "out_nc": 3, "nf": 40, "unf": 24, "nb": 16},
        {"scale": 2, "in_nc": 3, "out_nc": 3, "nf": 40, "unf": 24, "nb": 16},
        {"scale": 3, "in_nc": 3, "out_nc": 3, "nf": 40, "unf": 24, "nb": 16},
        {"scale": 2, "in_nc": 3, "out_nc": 3, "nf": 32, "unf": 16, "nb": 8},
        # tiny, for tests that run every architecture (export parity, rewrite): they pick the smallest
        {"scale": 2, "in_nc": 3, "out_nc": 3, "nf": 16, "unf": 8, "nb": 2},
    ),
)
