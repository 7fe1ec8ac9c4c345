"""Layers several architecture families share, written once with their official parameter names.

The EDSR-PyTorch code base (EDSR, RCAN, CARN-M's port), BasicSR (EDSR, MSRResNet) and SwinIR/HAT all
use the same 'same'-padded conv, DIV2K mean and sub-pixel upsampler; only the attribute that holds
them differs, so the module paths (and state-dict keys) stay those of each official network.
"""

from __future__ import annotations

import torch
from torch import nn

# DIV2K RGB mean in [0, 1], subtracted by EDSR-PyTorch models, BasicSR's EDSR, CARN, SwinIR and HAT.
DIV2K_MEAN: tuple[float, float, float] = (0.4488, 0.4371, 0.4040)


def same_conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    """k x k conv with bias and padding k//2: odd kernels keep the input's size (EDSR ``default_conv``)."""
    return nn.Conv2d(cin, cout, k, padding=k // 2)


class MeanShift(nn.Conv2d):
    """Frozen 1x1 conv ``y = x + sign * rgb_range * mean`` (identity weight, std = 1 as released).

    Official checkpoints save its weight and bias (EDSR ``sub_mean.*``, CARN ``sub_mean.shifter.*``);
    ``requires_grad=False`` keeps them out of the trainable count, as in the original code.
    """

    def __init__(self, rgb_range: float, sign: float, mean: tuple[float, float, float] = DIV2K_MEAN) -> None:
        super().__init__(3, 3, kernel_size=1)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.bias.copy_(sign * rgb_range * torch.tensor(mean))
        self.requires_grad_(False)


def pixel_shuffle_steps(scale: int) -> list[int]:
    """Pixel-shuffle factors of the usual sub-pixel upsampler: ``2^n -> [2] * n``, ``3 -> [3]``.

    Raises ``ValueError`` for any other scale (callers word it for their architecture).
    """
    if scale == 3:
        return [3]
    if scale >= 2 and scale & (scale - 1) == 0:
        return [2] * (scale.bit_length() - 1)
    raise ValueError(f"scale {scale} is not supported by the sub-pixel upsampler (2^n or 3)")


class PixelShuffleUpsampler(nn.Sequential):
    """``[conv3x3(C -> r^2 C), PixelShuffle(r)]`` per step r of :func:`pixel_shuffle_steps`.

    Convs sit at even indices (``0.weight``, ``2.weight`` ...), the layout of EDSR-PyTorch ``tail.0``,
    BasicSR ``upsample`` and SwinIR/HAT ``upsample``; :func:`._shapes.upsampler_scale` reads it back.
    """

    def __init__(self, scale: int, num_feat: int) -> None:
        layers: list[nn.Module] = []
        for r in pixel_shuffle_steps(scale):
            layers += [same_conv(num_feat, r * r * num_feat), nn.PixelShuffle(r)]
        super().__init__(*layers)


class ResidualBlockNoBN(nn.Module):
    """BasicSR residual block: ``x + res_scale * conv2(relu(conv1(x)))`` (keys ``conv1``/``conv2``)."""

    def __init__(self, num_feat: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.conv1 = same_conv(num_feat, num_feat)
        self.conv2 = same_conv(num_feat, num_feat)
        self.relu = nn.ReLU(inplace=True)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x))) * self.res_scale
