"""IMDTN (team ZLZ, NTIRE 2022 efficient SR; ofsoundof/NTIRE2022_ESR ``models/team09_imdtn``).

IMDN with a Swin stage in every block: ``fea_conv`` -> ``IMDTB1..n`` -> ``c`` (1x1 over the
concatenated block outputs, LeakyReLU 0.05) -> ``LR_conv`` (+ ``fea_conv`` output) -> ``upsampler``
(conv to ``3 r^2`` channels + pixel shuffle).

Each IMDT block distils channels like IMDN (``c1``..``c3`` are grouped convs, groups 4, each followed
by a channel shuffle over 4 groups; a quarter of the channels is split off after each) and then runs
a conv-free SwinIR RSTB on the concatenation: ``out = unembed(blocks(embed(cat))) + x``.

Padding: the official forward always pads by ``w - H % w`` (1..w, never 0) with flipped copies of the
image (edge pixel repeated), and crops the output back; we do the same with ``w`` the window (6).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._distill import HEAD, SKELETON_KEYS, TAIL, DistillationNet
from ._shapes import count_keys, shuffle_factor, window_from_bias_table
from ._swin import SWIN_BUFFER_GLOBS, BasicLayer, PatchEmbed, PatchUnEmbed, crop_to, pad_to_multiple
from .descriptor import ArchSpec, StateDict

SHUFFLE_GROUPS = 4
LEAKY_SLOPE = 0.05


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle: view channels as (groups, C/groups), transpose, flatten."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ConvFreeRSTB(nn.Module):
    """IMDTN's RSTB variant on images: ``unembed(blocks(embed(x))) + x`` (no conv, no norm)."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float) -> None:
        super().__init__()
        self.residual_group = BasicLayer(dim, depth, num_heads, window_size, mlp_ratio)
        self.patch_embed = PatchEmbed(dim)
        self.patch_unembed = PatchUnEmbed()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_size = (x.shape[2], x.shape[3])
        return self.patch_unembed(self.residual_group(self.patch_embed(x), x_size), x_size) + x


class IMDTBlock(nn.Module):
    """Information multi-distillation + transformer block (distillation rate 1/4)."""

    def __init__(self, nf: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float) -> None:
        super().__init__()
        self.distilled = nf // 4
        self.remaining = nf - self.distilled
        self.c1 = nn.Conv2d(nf, nf, 3, 1, 1, groups=SHUFFLE_GROUPS)
        self.c2 = nn.Conv2d(self.remaining, nf, 3, 1, 1, groups=SHUFFLE_GROUPS)
        self.c3 = nn.Conv2d(self.remaining, nf, 3, 1, 1, groups=SHUFFLE_GROUPS)
        self.c4 = nn.Conv2d(self.remaining, self.distilled, 3, 1, 1)
        self.act = nn.LeakyReLU(LEAKY_SLOPE, inplace=False)
        self.transformer = ConvFreeRSTB(nf, depth, num_heads, window_size, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The official LeakyReLU is in-place, so each residual adds the *activated* previous output.
        split = (self.distilled, self.remaining)
        out = self.act(channel_shuffle(self.c1(x) + x, SHUFFLE_GROUPS))
        d1, r = torch.split(out, split, dim=1)
        out = self.act(channel_shuffle(self.c2(r) + out, SHUFFLE_GROUPS))
        d2, r = torch.split(out, split, dim=1)
        out = self.act(channel_shuffle(self.c3(r) + out, SHUFFLE_GROUPS))
        d3, r = torch.split(out, split, dim=1)
        return self.transformer(torch.cat([d1, d2, d3, self.c4(r)], dim=1)) + x


class IMDTN(DistillationNet):
    """The distillation skeleton around IMDT blocks; the input is padded (always by 1..window
    pixels, flipped copies, as the official code does) and the output cropped back."""

    def __init__(
        self,
        scale: int,
        nf: int = 64,
        num_modules: int = 3,
        depth: int = 2,
        num_heads: int = 2,
        window_size: int = 6,
        mlp_ratio: float = 2.0,
        in_nc: int = 3,
    ) -> None:
        blocks = [IMDTBlock(nf, depth, num_heads, window_size, mlp_ratio) for _ in range(num_modules)]
        super().__init__("IMDTB", blocks, in_nc=in_nc, nf=nf, out_nc=in_nc, scale=scale, slope=LEAKY_SLOPE)
        self.scale, self.window_size = scale, window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.window_size, always=True, mode="symmetric")
        return crop_to(super().forward(x), h * self.scale, w * self.scale)


def infer(sd: StateDict) -> dict[str, Any]:
    nf, in_nc = (int(n) for n in sd["fea_conv.weight"].shape[:2])
    rsb = "IMDTB1.transformer.residual_group.blocks."
    table = sd[rsb + "0.attn.relative_position_bias_table"]
    return {
        "scale": shuffle_factor(sd["upsampler.0.weight"].shape[0], in_nc),
        "nf": nf,
        "num_modules": count_keys(sd, r"IMDTB\d+\.c1\.weight"),
        "depth": count_keys(sd, r"IMDTB1\.transformer\.residual_group\.blocks\.\d+\.norm1\.weight"),
        "num_heads": int(table.shape[1]),
        "window_size": window_from_bias_table(table.shape[0]),
        "mlp_ratio": sd[rsb + "0.mlp.fc1.weight"].shape[0] / nf,
        "in_nc": in_nc,
    }



SPEC = ArchSpec(
    name="imdtn",
    required_keys=(
        *SKELETON_KEYS,
        "IMDTB1.c1.weight",
        "IMDTB1.c4.weight",
        "IMDTB1.transformer.residual_group.blocks.0.attn.relative_position_bias_table",
    ),
    infer=infer,
    build=IMDTN,
    head=HEAD,
    tail=TAIL,
    input_range=1.0,
    ignore_keys=SWIN_BUFFER_GLOBS,
    description="IMDTN: IMDN-style distillation blocks each followed by a conv-free Swin stage (NTIRE 2022 ESR)",
    examples=(
        {"scale": 4, "nf": 64, "num_modules": 3, "depth": 2, "num_heads": 2, "window_size": 6, "mlp_ratio": 2.0},
        {"scale": 2, "nf": 32, "num_modules": 2, "depth": 4, "num_heads": 4, "window_size": 8, "mlp_ratio": 4.0},
        # tiny, for tests that run every architecture (export parity, rewrite): they pick the smallest
        {"scale": 2, "nf": 16, "num_modules": 1, "depth": 2, "num_heads": 2, "window_size": 4, "mlp_ratio": 2.0},
    ),
)
