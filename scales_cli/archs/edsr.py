"""EDSR (Lim et al., CVPR-W 2017) in its two published layouts.

* ``edsr`` — the authors' EDSR-PyTorch code (``src/model/edsr.py``): ``sub_mean`` → ``head`` →
  ``body`` (ResBlocks + one conv, global residual) → ``tail`` (upsampler + conv) → ``add_mean``.
  Input is RGB in ``[0, rgb_range]`` (255 for the released models); the mean shifts are frozen 1x1
  convs, ``sub_mean(x) = x - rgb_range * mean``, so ``rgb_range`` is read back from their bias.
* ``edsr_basicsr`` — BasicSR's re-implementation (``basicsr/archs/edsr_arch.py``): ``conv_first`` →
  ``body.N.conv1/conv2`` → ``conv_after_body`` → ``upsample`` → ``conv_last``; input in ``[0, 1]``,
  scaled internally by ``img_range`` (255) around a fixed DIV2K mean that is not saved.

Both ResBlocks compute ``x + res_scale * conv2(relu(conv1(x)))``. ``res_scale`` is not stored in the
weights: the official templates use 0.1 for the 32-block / 256-feature paper model and 1 otherwise,
so :func:`official_res_scale` picks that and ``--arch-opt res_scale=...`` overrides it.

The mean shift, upsampler and residual block live in :mod:`._layers` (shared with RCAN, CARN-M, MSRResNet
and SwinIR/HAT); reading ``rgb_range`` back from the mean shift lives here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._layers import DIV2K_MEAN, MeanShift, PixelShuffleUpsampler, ResidualBlockNoBN, same_conv
from ._shapes import StateDict, keys_fit, seq_len, upsampler_scale
from .descriptor import ArchSpec


def range_from_mean_shift(sd: StateDict, key: str = "sub_mean") -> float:
    """``rgb_range`` from a MeanShift: bias = -rgb_range * mean / std and weight = 1 / std on the diagonal."""
    inv_std = float(sd[f"{key}.weight"][0, 0, 0, 0])
    rgb_range = -float(sd[f"{key}.bias"][0]) / (inv_std * DIV2K_MEAN[0])
    return round(rgb_range, 3)


def official_res_scale(n_resblocks: int, n_feats: int) -> float:
    """Heuristic default (not in the weights): the EDSR paper template (32 blocks x 256) uses 0.1."""
    return 0.1 if (n_resblocks, n_feats) == (32, 256) else 1.0


# ---------------------------------------------------------------- EDSR-PyTorch layout


class ResBlock(nn.Module):
    """``x + res_scale * conv(relu(conv(x)))``; convs at ``body.0`` and ``body.2``."""

    def __init__(self, n_feats: int, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(same_conv(n_feats, n_feats), nn.ReLU(True), same_conv(n_feats, n_feats))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


class EDSR(nn.Module):
    """EDSR-PyTorch EDSR; forward takes RGB in ``[0, input_range]``."""

    def __init__(
        self, scale: int, n_resblocks: int = 16, n_feats: int = 64, res_scale: float = 1.0, input_range: float = 255.0
    ) -> None:
        super().__init__()
        self.sub_mean = MeanShift(input_range, sign=-1)
        self.add_mean = MeanShift(input_range, sign=1)
        self.head = nn.Sequential(same_conv(3, n_feats))
        self.body = nn.Sequential(*[ResBlock(n_feats, res_scale) for _ in range(n_resblocks)], same_conv(n_feats, n_feats))
        self.tail = nn.Sequential(PixelShuffleUpsampler(scale, n_feats), same_conv(n_feats, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x))
        return self.add_mean(self.tail(self.body(x) + x))


def infer_edsr(sd: StateDict) -> dict[str, Any]:
    n_feats = sd["head.0.weight"].shape[0]
    n_resblocks = seq_len(sd, "body.") - 1
    return {
        "scale": upsampler_scale(sd, "tail.0.", n_feats),
        "n_resblocks": n_resblocks,
        "n_feats": n_feats,
        "res_scale": official_res_scale(n_resblocks, n_feats),
        "input_range": range_from_mean_shift(sd),
    }


def _is_edsr(sd: StateDict) -> bool:
    # body holds only ResBlock convs (body.N.body.{0,2}) and the closing conv (body.N.weight/bias):
    # RCAN's nested groups and MDSR's extra branches fail this.
    return keys_fit(sd, "body.", r"body\.\d+\.(body\.[02]\.)?(weight|bias)")


SPEC_EDSR = ArchSpec(
    name="edsr",
    required_keys=(
        "sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias",
        "head.0.weight", "body.0.body.0.weight", "body.0.body.2.weight", "tail.0.0.weight", "tail.1.weight",
    ),
    infer=infer_edsr,
    build=EDSR,
    head=("sub_mean", "head"),
    tail=("tail", "add_mean"),
    defaults={"res_scale": 1.0},
    input_range=255.0,
    forbidden_keys=("body.*.body.*.body.*", "pre_process.*", "upsample.*", "SFENet1.*"),
    accept=_is_edsr,
    description="EDSR, EDSR-PyTorch layout (sub_mean/head/body/tail/add_mean), RGB in [0, 255]",
    examples=(
        {"scale": 4, "n_resblocks": 16, "n_feats": 64},  # EDSR baseline x4
        {"scale": 2, "n_resblocks": 16, "n_feats": 64},
        {"scale": 3, "n_resblocks": 16, "n_feats": 64},
        {"scale": 4, "n_resblocks": 32, "n_feats": 256, "res_scale": 0.1},  # EDSR paper model
        # tiny, for tests that run every architecture (export parity, rewrite): they pick the smallest
        {"scale": 2, "n_resblocks": 2, "n_feats": 16},
    ),
)


# ---------------------------------------------------------------- BasicSR layout


class EDSRBasicSR(nn.Module):
    """BasicSR EDSR; forward takes RGB in ``[0, 1]`` and works on ``(x - mean) * img_range`` inside."""

    mean: torch.Tensor

    def __init__(
        self, scale: int, num_feat: int = 64, num_block: int = 16, res_scale: float = 1.0, img_range: float = 255.0
    ) -> None:
        super().__init__()
        self.img_range = img_range
        # Not saved by BasicSR (a plain attribute there): non-persistent so it follows .to(device).
        self.register_buffer("mean", torch.tensor(DIV2K_MEAN).view(1, 3, 1, 1), persistent=False)
        self.conv_first = same_conv(3, num_feat)
        self.body = nn.Sequential(*[ResidualBlockNoBN(num_feat, res_scale) for _ in range(num_block)])
        self.conv_after_body = same_conv(num_feat, num_feat)
        self.upsample = PixelShuffleUpsampler(scale, num_feat)
        self.conv_last = same_conv(num_feat, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_first((x - self.mean) * self.img_range)
        x = self.conv_after_body(self.body(x)) + x
        return self.conv_last(self.upsample(x)) / self.img_range + self.mean


def infer_edsr_basicsr(sd: StateDict) -> dict[str, Any]:
    num_feat = sd["conv_first.weight"].shape[0]
    num_block = seq_len(sd, "body.")
    return {
        "scale": upsampler_scale(sd, "upsample.", num_feat),
        "num_feat": num_feat,
        "num_block": num_block,
        "res_scale": official_res_scale(num_block, num_feat),
    }


SPEC_EDSR_BASICSR = ArchSpec(
    name="edsr_basicsr",
    required_keys=(
        "conv_first.weight", "body.0.conv1.weight", "body.0.conv2.weight",
        "conv_after_body.weight", "upsample.0.weight", "conv_last.weight",
    ),
    infer=infer_edsr_basicsr,
    build=EDSRBasicSR,
    head=("conv_first",),
    tail=("upsample", "conv_last"),
    defaults={"res_scale": 1.0, "img_range": 255.0},
    input_range=1.0,
    forbidden_keys=("layers.*", "conv_before_upsample.*", "upconv1.*", "conv_hr.*"),
    # body holds nothing but conv1/conv2 pairs (BasicSR RCAN/others nest deeper under body.N).
    accept=lambda sd: keys_fit(sd, "body.", r"body\.\d+\.conv[12]\.(weight|bias)"),
    description="EDSR, BasicSR layout (conv_first/body/conv_after_body/upsample/conv_last), RGB in [0, 1]",
    examples=(
        {"scale": 4, "num_feat": 64, "num_block": 16},  # EDSR_Mx4
        {"scale": 2, "num_feat": 64, "num_block": 16},
        {"scale": 4, "num_feat": 256, "num_block": 32, "res_scale": 0.1},  # EDSR_Lx4
        # tiny, for tests that run every architecture (export parity, rewrite): they pick the smallest
        {"scale": 2, "num_feat": 16, "num_block": 2},
    ),
)

SPECS = (SPEC_EDSR, SPEC_EDSR_BASICSR)
