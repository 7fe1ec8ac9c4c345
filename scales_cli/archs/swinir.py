"""SwinIR (Liang et al., 2021; JingyunLiang/SwinIR ``models/network_swinir.py``) for image SR.

Layout: ``conv_first`` -> ``patch_embed`` (LayerNorm) -> RSTB ``layers`` -> ``norm`` -> unembed ->
``conv_after_body`` (+ shallow features) -> reconstruction, which is one of

- ``pixelshuffle`` (classical SR): ``conv_before_upsample`` -> ``upsample`` (conv+shuffle per x2) -> ``conv_last``
- ``pixelshuffledirect`` (lightweight SR): ``upsample.0`` conv to ``3 * r^2`` channels + shuffle
- ``nearest+conv`` (real-world SR): ``conv_before_upsample`` -> (nearest x2 -> ``conv_up1``/``conv_up2``) ->
  ``conv_hr`` -> ``conv_last``

The input is padded (reflect) to a multiple of the window and the output cropped back, as the
official test script does. Official configs: classical ``embed_dim=180, depths=(6,)*6, heads=(6,)*6,
window 8, mlp_ratio 2``; lightweight ``embed_dim=60, depths=(6,)*4, heads=(6,)*4, window 8, mlp_ratio 2``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._layers import PixelShuffleUpsampler
from ._shapes import seq_len, shuffle_factor, upsampler_scale, window_from_bias_table
from ._swin import (
    RSTB,
    SWIN_BUFFER_GLOBS,
    PatchEmbed,
    PatchUnEmbed,
    SwinBackbone,
    drop_path_rates,
    resi_conv,
)
from .descriptor import ArchSpec, StateDict

UPSAMPLERS: tuple[str, ...] = ("pixelshuffle", "pixelshuffledirect", "nearest+conv")


class SwinIR(SwinBackbone):
    def __init__(
        self,
        scale: int,
        embed_dim: int = 60,
        depths: tuple[int, ...] = (6, 6, 6, 6),
        num_heads: tuple[int, ...] = (6, 6, 6, 6),
        window_size: int = 8,
        mlp_ratio: float = 2.0,
        upsampler: str = "pixelshuffledirect",
        resi_connection: str = "1conv",
        num_feat: int = 64,
        in_chans: int = 3,
        img_range: float = 1.0,
        patch_norm: bool = True,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
    ) -> None:
        if upsampler not in UPSAMPLERS:
            raise ValueError(f"upsampler {upsampler!r}: expected one of {UPSAMPLERS}")
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {depths} and num_heads {num_heads} differ in length")
        super().__init__(scale, window_size, img_range, in_chans)
        self.upsampler = upsampler
        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim, norm=patch_norm)
        self.patch_unembed = PatchUnEmbed()
        rates = drop_path_rates(drop_path_rate, tuple(depths))
        self.layers = nn.ModuleList(
            RSTB(embed_dim, d, h, window_size, mlp_ratio, qkv_bias, r, resi_connection)
            for d, h, r in zip(depths, num_heads, rates)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = resi_conv(embed_dim, resi_connection)
        if upsampler == "pixelshuffle":
            self.conv_before_upsample = _conv_lrelu(embed_dim, num_feat)
            self.upsample = PixelShuffleUpsampler(scale, num_feat)
            self.conv_last = nn.Conv2d(num_feat, in_chans, 3, 1, 1)
        elif upsampler == "pixelshuffledirect":
            self.upsample = nn.Sequential(nn.Conv2d(embed_dim, in_chans * scale**2, 3, 1, 1), nn.PixelShuffle(scale))
        else:
            if scale not in (2, 4):
                raise ValueError(f"scale {scale}: 'nearest+conv' supports 2 and 4")
            self.conv_before_upsample = _conv_lrelu(embed_dim, num_feat)
            self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            if scale == 4:
                self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_last = nn.Conv2d(num_feat, in_chans, 3, 1, 1)
            self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def reconstruct(self, feat: torch.Tensor) -> torch.Tensor:
        if self.upsampler == "pixelshuffle":
            return self.conv_last(self.upsample(self.conv_before_upsample(feat)))
        if self.upsampler == "pixelshuffledirect":
            return self.upsample(feat)
        y = self.conv_before_upsample(feat)
        y = self.lrelu(self.conv_up1(F.interpolate(y, scale_factor=2, mode="nearest")))
        if self.scale == 4:
            y = self.lrelu(self.conv_up2(F.interpolate(y, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(y)))


def _conv_lrelu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.LeakyReLU(inplace=True))


def _upsampler_of(sd: StateDict) -> str:
    if "conv_up1.weight" in sd:
        return "nearest+conv"
    if "conv_before_upsample.0.weight" in sd:
        return "pixelshuffle"
    if "upsample.0.weight" in sd:
        return "pixelshuffledirect"
    raise KeyError("no SR reconstruction (conv_before_upsample / upsample.0): denoising/JPEG SwinIR is not SR")


def infer(sd: StateDict) -> dict[str, Any]:
    embed_dim, in_chans = sd["conv_first.weight"].shape[:2]
    n_layers = seq_len(sd, "layers.")
    depths = tuple(seq_len(sd, f"layers.{i}.residual_group.blocks.") for i in range(n_layers))
    tables = [sd[f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table"] for i in range(n_layers)]
    upsampler = _upsampler_of(sd)
    hp: dict[str, Any] = {
        "embed_dim": int(embed_dim),
        "depths": depths,
        "num_heads": tuple(int(t.shape[1]) for t in tables),
        "window_size": window_from_bias_table(tables[0].shape[0]),
        "mlp_ratio": sd["layers.0.residual_group.blocks.0.mlp.fc1.weight"].shape[0] / embed_dim,
        "upsampler": upsampler,
        "resi_connection": "3conv" if "conv_after_body.0.weight" in sd else "1conv",
        "in_chans": int(in_chans),
        "patch_norm": "patch_embed.norm.weight" in sd,
    }
    if upsampler == "pixelshuffledirect":
        hp["scale"] = shuffle_factor(sd["upsample.0.weight"].shape[0], int(in_chans))
        return hp
    num_feat = int(sd["conv_before_upsample.0.weight"].shape[0])
    hp["num_feat"] = num_feat
    if upsampler == "pixelshuffle":
        hp["scale"] = upsampler_scale(sd, "upsample.", num_feat)
    else:
        hp["scale"] = 4 if "conv_up2.weight" in sd else 2
    return hp



_LIGHT = {"embed_dim": 60, "depths": (6,) * 4, "num_heads": (6,) * 4, "window_size": 8, "mlp_ratio": 2.0,
          "upsampler": "pixelshuffledirect"}
_CLASSICAL = {"embed_dim": 180, "depths": (6,) * 6, "num_heads": (6,) * 6, "window_size": 8, "mlp_ratio": 2.0,
              "upsampler": "pixelshuffle", "num_feat": 64}

SPEC = ArchSpec(
    window_hparam="window_size",
    name="swinir",
    required_keys=(
        "conv_first.weight",
        "layers.0.residual_group.blocks.0.attn.relative_position_bias_table",
        "layers.0.residual_group.blocks.0.mlp.fc1.weight",
        "norm.weight",
    ),
    infer=infer,
    build=SwinIR,
    head=("conv_first",),
    tail=("conv_before_upsample", "upsample", "conv_up1", "conv_up2", "conv_hr", "conv_last"),
    defaults={"img_range": 1.0},
    input_range=1.0,
    # HAT shares SwinIR's skeleton but adds overlapping cross-attention and conv blocks.
    forbidden_keys=("layers.*.residual_group.overlap_attn.*", "layers.*.residual_group.blocks.*.conv_block.*"),
    ignore_keys=SWIN_BUFFER_GLOBS,
    description="SwinIR: residual Swin Transformer blocks (classical / lightweight / real-world SR)",
    examples=(
        {"scale": 2, **_LIGHT},
        {"scale": 4, **_LIGHT},
        {"scale": 4, **_CLASSICAL},
        {"scale": 3, "embed_dim": 48, "depths": (2, 2), "num_heads": (3, 3), "window_size": 4, "mlp_ratio": 2.0,
         "upsampler": "pixelshuffle", "num_feat": 32, "resi_connection": "3conv"},
        {"scale": 4, "embed_dim": 32, "depths": (2,), "num_heads": (2,), "window_size": 8, "mlp_ratio": 4.0,
         "upsampler": "nearest+conv", "num_feat": 16},
        # tiny, for tests that run every architecture (export parity, rewrite): they pick the smallest
        {"scale": 2, "embed_dim": 16, "depths": (2,), "num_heads": (2,), "window_size": 4, "mlp_ratio": 2.0,
         "upsampler": "pixelshuffledirect"},
    ),
)
