"""Pieces shared by the distillation family (IMDN, RFDN, RLFN, BSRN).

The enhanced-spatial-attention (ESA) block of RFDN, RLFN and BSRN shrinks the feature map with a
stride-2 3x3 conv (no padding), then a 7x7/stride-3 max pool, works on that tiny map and stretches
it back bilinearly. On small inputs the official pooling fails (a map under 7 pixels has no 7x7
window); :func:`esa_max_pool` shrinks the window to the map there, so any input of at least 3x3
pixels works and larger inputs give the official result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ESA_POOL_KERNEL = 7
ESA_POOL_STRIDE = 3


def same_conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    """k x k conv with bias and padding k//2, so the output keeps the input's size (official conv_layer)."""
    return nn.Conv2d(cin, cout, k, padding=k // 2)


def esa_max_pool(x: torch.Tensor) -> torch.Tensor:
    """``max_pool2d(x, 7, stride=3)``; a side shorter than 7 pools over its whole length instead."""
    kernel = (min(ESA_POOL_KERNEL, x.shape[-2]), min(ESA_POOL_KERNEL, x.shape[-1]))
    return F.max_pool2d(x, kernel_size=kernel, stride=ESA_POOL_STRIDE)


def resize_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear (align_corners=False) resize of ``x`` to ``ref``'s height and width."""
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


def numbered_blocks(sd: dict[str, torch.Tensor], prefix: str, suffix: str) -> int:
    """How many blocks ``{prefix}1{suffix}``, ``{prefix}2{suffix}``, ... exist (1-based, no gaps).

    The official code names its blocks B1..B4 / IMDB1..IMDB6 as separate attributes, not a list.
    """
    n = 0
    while f"{prefix}{n + 1}{suffix}" in sd:
        n += 1
    if n == 0:
        raise KeyError(f"{prefix}1{suffix}")
    if f"{prefix}{n + 2}{suffix}" in sd:
        raise ValueError(f"block {prefix}{n + 1} is missing between {prefix}1 and {prefix}{n + 2}")
    return n
