"""RCAN (Zhang et al., ECCV 2018) in the EDSR-PyTorch layout (``src/model/rcan.py``).

``sub_mean`` → ``head`` → ``body`` (``n_resgroups`` residual groups + one conv, global residual) →
``tail`` (upsampler + conv) → ``add_mean``; RGB in ``[0, rgb_range]`` (255 as released).

A residual group is ``x + conv(RCAB_n(…RCAB_1(x)))``; an RCAB is ``x + CA(conv(relu(conv(x))))`` with
channel attention ``CA(f) = f * sigmoid(W2 relu(W1 avgpool(f)))``, ``W1: C → C/reduction``. The
official RCAB ignores ``res_scale`` (its multiplication is commented out), so there is none here.
Keys: ``body.G.body.B.body.{0,2}`` (convs), ``body.G.body.B.body.3.conv_du.{0,2}`` (CA),
``body.G.body.<n_resblocks>`` (group conv), ``body.<n_resgroups>`` (body conv).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._layers import MeanShift, PixelShuffleUpsampler, same_conv
from ._shapes import StateDict, keys_fit, seq_len, upsampler_scale
from .descriptor import ArchSpec
from .edsr import range_from_mean_shift


class CALayer(nn.Module):
    """Channel attention: ``f * sigmoid(conv_du(avgpool(f)))``."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(self.avg_pool(x))


class RCAB(nn.Module):
    """Residual channel-attention block: ``x + CA(conv(relu(conv(x))))``."""

    def __init__(self, n_feats: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            same_conv(n_feats, n_feats), nn.ReLU(True), same_conv(n_feats, n_feats), CALayer(n_feats, reduction)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualGroup(nn.Module):
    """``x + conv(RCAB_n(…RCAB_1(x)))``."""

    def __init__(self, n_feats: int, reduction: int, n_resblocks: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*[RCAB(n_feats, reduction) for _ in range(n_resblocks)], same_conv(n_feats, n_feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class RCAN(nn.Module):
    """EDSR-PyTorch RCAN; forward takes RGB in ``[0, input_range]``."""

    def __init__(
        self,
        scale: int,
        n_resgroups: int = 10,
        n_resblocks: int = 20,
        n_feats: int = 64,
        reduction: int = 16,
        input_range: float = 255.0,
    ) -> None:
        super().__init__()
        self.sub_mean = MeanShift(input_range, sign=-1)
        self.head = nn.Sequential(same_conv(3, n_feats))
        self.body = nn.Sequential(
            *[ResidualGroup(n_feats, reduction, n_resblocks) for _ in range(n_resgroups)], same_conv(n_feats, n_feats)
        )
        self.tail = nn.Sequential(PixelShuffleUpsampler(scale, n_feats), same_conv(n_feats, 3))
        self.add_mean = MeanShift(input_range, sign=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x))
        return self.add_mean(self.tail(self.body(x) + x))


def infer_rcan(sd: StateDict) -> dict[str, Any]:
    n_feats = sd["head.0.weight"].shape[0]
    squeezed = sd["body.0.body.0.body.3.conv_du.0.weight"].shape[0]
    return {
        "scale": upsampler_scale(sd, "tail.0.", n_feats),
        "n_resgroups": seq_len(sd, "body.") - 1,
        "n_resblocks": seq_len(sd, "body.0.body.") - 1,
        "n_feats": n_feats,
        "reduction": n_feats // squeezed,
        "input_range": range_from_mean_shift(sd),
    }


SPEC = ArchSpec(
    name="rcan",
    required_keys=(
        "sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias", "head.0.weight",
        "body.0.body.0.body.0.weight", "body.0.body.0.body.2.weight",
        "body.0.body.0.body.3.conv_du.0.weight", "body.0.body.0.body.3.conv_du.2.weight",
        "tail.0.0.weight", "tail.1.weight",
    ),
    infer=infer_rcan,
    build=RCAN,
    head=("sub_mean", "head"),
    tail=("tail", "add_mean"),
    input_range=255.0,
    forbidden_keys=("SFENet1.*", "pre_process.*"),
    # body: groups of RCABs + group conv, then the body conv — nothing else (e.g. no non-local blocks).
    accept=lambda sd: keys_fit(
        sd, "body.", r"body\.\d+\.((body\.\d+\.)(body\.([02]|3\.conv_du\.[02])\.)?)?(weight|bias)"
    ),
    description="RCAN, EDSR-PyTorch layout (residual groups of channel-attention blocks), RGB in [0, 255]",
    examples=(
        {"scale": 2, "n_resgroups": 2, "n_resblocks": 3, "n_feats": 32, "reduction": 8},  # small config
        {"scale": 4, "n_resgroups": 10, "n_resblocks": 20, "n_feats": 64, "reduction": 16},  # RCAN paper
        # tiny, for tests that run every architecture (export parity, rewrite): they pick the smallest
        {"scale": 2, "n_resgroups": 1, "n_resblocks": 2, "n_feats": 16, "reduction": 4},
    ),
)
