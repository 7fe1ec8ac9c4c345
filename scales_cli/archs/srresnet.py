"""MSRResNet ("modified SRResNet": SRResNet without BN) in the BasicSR layout
(XPixelGroup/BasicSR ``basicsr/archs/srresnet_arch.py``).

    feat = lrelu(conv_first(x));  out = body(feat)            body = n x [x + conv2(relu(conv1(x)))] (res_scale 1)
    x2/x3: out = lrelu(shuffle_s(upconv1(out)))             upconv1: C -> C s^2
    x4:    out = lrelu(shuffle_2(upconv2(lrelu(shuffle_2(upconv1(out))))))
    y = conv_last(lrelu(conv_hr(out))) + bilinear_s(x)        lrelu slope 0.1; RGB in [0, 1]

Note the trunk has no long skip from ``feat``: the global residual is the bilinear-upsampled input.
BasicSR's EDSR shares ``conv_first``/``body.N.conv1``/``conv_last`` but has ``conv_after_body`` and
``upsample.*`` instead of ``upconv1``/``conv_hr``: the required keys tell them apart.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import DetectionError
from ._layers import ResidualBlockNoBN
from ._shapes import StateDict, seq_len, shuffle_factor
from .descriptor import ArchSpec

SCALES: tuple[int, ...] = (2, 3, 4)


class MSRResNet(nn.Module):
    """x2/x3: one ``upconv1`` + PixelShuffle(s); x4: ``upconv1`` and ``upconv2``, each x2."""

    def __init__(self, scale: int = 4, num_feat: int = 64, num_block: int = 16) -> None:
        super().__init__()
        if scale not in SCALES:
            raise DetectionError(f"MSRResNet: scale {scale} is not supported (expected 2, 3 or 4)")
        self.scale = scale
        step = 2 if scale == 4 else scale
        self.conv_first = nn.Conv2d(3, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(ResidualBlockNoBN(num_feat) for _ in range(num_block)))
        self.upconv1 = nn.Conv2d(num_feat, num_feat * step * step, 3, 1, 1)
        if scale == 4:
            self.upconv2 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(step)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, 3, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(self.lrelu(self.conv_first(x)))
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        if self.scale == 4:
            out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        return out + F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)


def infer(sd: StateDict) -> dict[str, Any]:
    """Width from ``conv_first``; blocks = length of ``body``; scale = 4 when ``upconv2`` exists,
    else the shuffle factor of ``upconv1`` (C s^2 outputs)."""
    num_feat = int(sd["conv_first.weight"].shape[0])
    if "upconv2.weight" in sd:
        scale = 4
    else:
        scale = shuffle_factor(int(sd["upconv1.weight"].shape[0]), num_feat)
    return {"scale": scale, "num_feat": num_feat, "num_block": seq_len(sd, "body.")}


def build(scale: int, num_feat: int = 64, num_block: int = 16) -> MSRResNet:
    return MSRResNet(scale=int(scale), num_feat=num_feat, num_block=num_block)


SPEC = ArchSpec(
    name="msrresnet",
    required_keys=(
        "conv_first.weight",
        "body.0.conv1.weight",
        "body.0.conv2.weight",
        "upconv1.weight",
        "conv_hr.weight",
        "conv_last.weight",
    ),
    forbidden_keys=("conv_after_body.*", "upsample.*"),  # BasicSR EDSR
    infer=infer,
    build=build,
    head=("conv_first",),
    tail=("upconv1", "upconv2", "conv_hr", "conv_last"),
    input_range=1.0,
    description="MSRResNet (BasicSR srresnet_arch.py): SRResNet without BN, bilinear global skip",
    examples=(
        {"scale": 4, "num_feat": 64, "num_block": 16},  # BasicSR MSRResNet_x4 (1,517,571 params)
        {"scale": 2, "num_feat": 64, "num_block": 16},
        {"scale": 3, "num_feat": 64, "num_block": 16},
        {"scale": 4, "num_feat": 32, "num_block": 4},
        # tiny, for tests that run every architecture (export parity, rewrite): they pick the smallest
        {"scale": 2, "num_feat": 16, "num_block": 2},
    ),
)
