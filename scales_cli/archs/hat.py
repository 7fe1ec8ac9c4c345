"""HAT, the Hybrid Attention Transformer (Chen et al., 2023; XPixelGroup/HAT ``hat/archs/hat_arch.py``).

SwinIR's skeleton where each residual group (``RHAG``) holds hybrid attention blocks (``HAB``:
shifted-window attention plus a channel-attention conv branch ``CAB`` scaled by ``conv_scale``) and
ends with one overlapping cross-attention block (``OCAB``: queries from ``w x w`` windows, keys and
values from the surrounding ``o x o`` patch, ``o = w + int(w * overlap_ratio)``).

The official network registers the window index tables as top-level buffers
(``relative_position_index_SA``/``_OCA``) and pads in its test wrapper; here each attention module
holds its own non-persistent index and ``forward`` pads (reflect) to a multiple of the window.
Official configs (x4): HAT-S ``embed_dim=144, compress_ratio=24, squeeze_factor=24``; HAT
``embed_dim=180, compress_ratio=3, squeeze_factor=30``; both ``depths=(6,)*6, heads=(6,)*6,
window 16, overlap_ratio 0.5, mlp_ratio 2, conv_scale 0.01``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._layers import PixelShuffleUpsampler
from ._shapes import seq_len, upsampler_scale, window_from_bias_table
from ._swin import (
    SWIN_BUFFER_GLOBS,
    Mlp,
    PatchEmbed,
    PatchUnEmbed,
    SwinBackbone,
    SwinTransformerBlock,
    drop_path_rates,
    overlap_offsets_index,
    window_partition,
    window_reverse,
)
from .descriptor import ArchSpec, StateDict


class ChannelAttention(nn.Module):
    """RCAN channel attention: ``x * sigmoid(W2 relu(W1 avgpool(x)))`` with ``C/squeeze`` hidden channels."""

    def __init__(self, num_feat: int, squeeze_factor: int) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(num_feat, num_feat // squeeze_factor, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(num_feat // squeeze_factor, num_feat, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class CAB(nn.Module):
    """Channel attention block: conv3x3 (C -> C/compress) -> GELU -> conv3x3 (-> C) -> channel attention."""

    def __init__(self, num_feat: int, compress_ratio: int, squeeze_factor: int) -> None:
        super().__init__()
        self.cab = nn.Sequential(
            nn.Conv2d(num_feat, num_feat // compress_ratio, 3, 1, 1),
            nn.GELU(),
            nn.Conv2d(num_feat // compress_ratio, num_feat, 3, 1, 1),
            ChannelAttention(num_feat, squeeze_factor),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cab(x)


class HAB(SwinTransformerBlock):
    """Hybrid attention block: ``x + WA(LN x) + conv_scale * CAB(LN x)``, then ``+ MLP(LN x)``."""

    def __init__(
        self, dim: int, num_heads: int, window_size: int, shift_size: int, compress_ratio: int,
        squeeze_factor: int, conv_scale: float, mlp_ratio: float, qkv_bias: bool = True, drop_path: float = 0.0,
    ) -> None:
        super().__init__(dim, num_heads, window_size, shift_size, mlp_ratio, qkv_bias, drop_path)
        self.conv_scale = conv_scale
        self.conv_block = CAB(dim, compress_ratio, squeeze_factor)

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        b, _, c = x.shape
        y = self.norm1(x).view(b, *x_size, c)
        conv_x = self.conv_block(y.permute(0, 3, 1, 2)).flatten(2).transpose(1, 2)
        x = x + self.drop_path(self.window_attention(y)) + conv_x * self.conv_scale
        return x + self.drop_path(self.mlp(self.norm2(x)))


class OCAB(nn.Module):
    """Overlapping cross-attention: each ``w x w`` query window attends to its ``o x o`` neighbourhood.

    Keys/values are gathered with ``Unfold(o, stride=w, padding=(o-w)/2)`` (zero padding at borders);
    bias table rows ``(w + o - 1)^2``. Then ``x + proj(attn)`` and ``+ MLP(LN x)``.
    """

    def __init__(
        self, dim: int, window_size: int, overlap_ratio: float, num_heads: int, mlp_ratio: float,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.overlap_win_size = int(window_size * overlap_ratio) + window_size
        ows = self.overlap_win_size
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.unfold = nn.Unfold(kernel_size=(ows, ows), stride=window_size, padding=(ows - window_size) // 2)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((window_size + ows - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", overlap_offsets_index(window_size, ows), persistent=False)
        self.softmax = nn.Softmax(dim=-1)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        h, w = x_size
        b, _, c = x.shape
        ws, ows, heads = self.window_size, self.overlap_win_size, self.num_heads
        d = c // heads
        qkv = self.qkv(self.norm1(x)).reshape(b, h, w, 3, c).permute(3, 0, 4, 1, 2)  # 3, b, c, h, w
        q = window_partition(qkv[0].permute(0, 2, 3, 1), ws).reshape(-1, ws * ws, c)
        kv = self.unfold(torch.cat((qkv[1], qkv[2]), dim=1))  # b, 2*c*o*o, nW
        kv = kv.view(b, 2, c, ows * ows, -1).permute(1, 0, 4, 3, 2).reshape(2, -1, ows * ows, c)
        b_ = q.shape[0]
        q = q.reshape(b_, ws * ws, heads, d).permute(0, 2, 1, 3) * self.scale
        k = kv[0].reshape(b_, ows * ows, heads, d).permute(0, 2, 1, 3)
        v = kv[1].reshape(b_, ows * ows, heads, d).permute(0, 2, 1, 3)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(ws * ws, ows * ows, -1)
        attn = self.softmax(q @ k.transpose(-2, -1) + bias.permute(2, 0, 1).unsqueeze(0))
        out = (attn @ v).transpose(1, 2).reshape(b_, ws, ws, c)
        x = self.proj(window_reverse(out, ws, h, w).reshape(b, h * w, c)) + x
        return x + self.mlp(self.norm2(x))

    def extra_macs(self, inputs: tuple, output: torch.Tensor) -> int:
        """``q @ k^T`` and ``attn @ v``: every one of the ``B*H*W`` queries meets ``o^2`` keys in C dims, twice."""
        b, length, c = inputs[0].shape
        return 2 * b * length * self.overlap_win_size**2 * c


class AttenBlocks(nn.Module):
    """``depth`` HABs (odd ones shifted by ``w/2``) followed by one OCAB (``overlap_attn``)."""

    def __init__(
        self, dim: int, depth: int, num_heads: int, window_size: int, compress_ratio: int, squeeze_factor: int,
        conv_scale: float, overlap_ratio: float, mlp_ratio: float, qkv_bias: bool, drop_path: list[float],
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            HAB(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2, compress_ratio,
                squeeze_factor, conv_scale, mlp_ratio, qkv_bias, drop_path[i])
            for i in range(depth)
        )
        self.overlap_attn = OCAB(dim, window_size, overlap_ratio, num_heads, mlp_ratio, qkv_bias)

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x, x_size)
        return self.overlap_attn(x, x_size)


class RHAG(nn.Module):
    """Residual hybrid attention group: ``x + embed(conv(unembed(blocks(x))))``."""

    def __init__(self, dim: int, depth: int, num_heads: int, **kw: Any) -> None:
        super().__init__()
        self.residual_group = AttenBlocks(dim, depth, num_heads, **kw)
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(dim)
        self.patch_unembed = PatchUnEmbed()

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        return self.patch_embed(self.conv(self.patch_unembed(self.residual_group(x, x_size), x_size))) + x


class HAT(SwinBackbone):
    def __init__(
        self,
        scale: int,
        embed_dim: int = 180,
        depths: tuple[int, ...] = (6,) * 6,
        num_heads: tuple[int, ...] = (6,) * 6,
        window_size: int = 16,
        compress_ratio: int = 3,
        squeeze_factor: int = 30,
        conv_scale: float = 0.01,
        overlap_ratio: float = 0.5,
        mlp_ratio: float = 2.0,
        num_feat: int = 64,
        in_chans: int = 3,
        img_range: float = 1.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
    ) -> None:
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {depths} and num_heads {num_heads} differ in length")
        super().__init__(scale, window_size, img_range, in_chans)
        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim, norm=True)
        self.patch_unembed = PatchUnEmbed()
        rates = drop_path_rates(drop_path_rate, tuple(depths))
        self.layers = nn.ModuleList(
            RHAG(embed_dim, d, h, window_size=window_size, compress_ratio=compress_ratio,
                 squeeze_factor=squeeze_factor, conv_scale=conv_scale, overlap_ratio=overlap_ratio,
                 mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path=r)
            for d, h, r in zip(depths, num_heads, rates)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1), nn.LeakyReLU(inplace=True))
        self.upsample = PixelShuffleUpsampler(scale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, in_chans, 3, 1, 1)

    def reconstruct(self, feat: torch.Tensor) -> torch.Tensor:
        return self.conv_last(self.upsample(self.conv_before_upsample(feat)))


def _ratio(dim: int, reduced: int, what: str) -> int:
    """``r`` such that ``dim // r == reduced`` (the official layers store ``dim // r`` channels)."""
    r = dim // reduced
    if r < 1 or dim // r != reduced:
        raise ValueError(f"{what}: {reduced} channels is not {dim} // r")
    return r


def infer(sd: StateDict) -> dict[str, Any]:
    embed_dim, in_chans = (int(n) for n in sd["conv_first.weight"].shape[:2])
    n_layers = seq_len(sd, "layers.")
    group = "layers.{}.residual_group."
    depths = tuple(seq_len(sd, group.format(i) + "blocks.") for i in range(n_layers))
    blk = group.format(0) + "blocks.0."
    window = window_from_bias_table(sd[blk + "attn.relative_position_bias_table"].shape[0])
    # OCAB table has (w + o - 1)^2 rows with o = w + int(w * overlap_ratio)
    oca_rows = sd[group.format(0) + "overlap_attn.relative_position_bias_table"].shape[0]
    side = round(oca_rows**0.5)
    if side * side != oca_rows or side < 2 * window - 1:
        raise ValueError(f"overlap bias table with {oca_rows} rows is not (w + o - 1)^2 for window {window}")
    num_feat = int(sd["conv_before_upsample.0.weight"].shape[0])
    return {
        "scale": upsampler_scale(sd, "upsample.", num_feat),
        "embed_dim": embed_dim,
        "depths": depths,
        "num_heads": tuple(
            int(sd[group.format(i) + "blocks.0.attn.relative_position_bias_table"].shape[1]) for i in range(n_layers)
        ),
        "window_size": window,
        "compress_ratio": _ratio(embed_dim, sd[blk + "conv_block.cab.0.weight"].shape[0], "compress_ratio"),
        "squeeze_factor": _ratio(embed_dim, sd[blk + "conv_block.cab.3.attention.1.weight"].shape[0], "squeeze_factor"),
        "overlap_ratio": (side + 1 - 2 * window) / window,
        "mlp_ratio": sd[blk + "mlp.fc1.weight"].shape[0] / embed_dim,
        "num_feat": num_feat,
        "in_chans": in_chans,
    }



_COMMON = {"depths": (6,) * 6, "num_heads": (6,) * 6, "window_size": 16, "overlap_ratio": 0.5, "mlp_ratio": 2.0}

SPEC = ArchSpec(
    window_hparam="window_size",
    name="hat",
    required_keys=(
        "conv_first.weight",
        "layers.0.residual_group.blocks.0.attn.relative_position_bias_table",
        "layers.0.residual_group.blocks.0.conv_block.cab.0.weight",
        "layers.0.residual_group.overlap_attn.relative_position_bias_table",
        "conv_before_upsample.0.weight",
        "conv_last.weight",
    ),
    infer=infer,
    build=HAT,
    head=("conv_first",),
    tail=("conv_before_upsample", "upsample", "conv_last"),
    # conv_scale multiplies the CAB branch and leaves no trace in the weights
    defaults={"conv_scale": 0.01, "img_range": 1.0},
    input_range=1.0,
    ignore_keys=SWIN_BUFFER_GLOBS + ("relative_position_index_SA", "relative_position_index_OCA"),
    description="HAT: hybrid (window + channel) attention transformer with overlapping cross-attention",
    examples=(
        # a small generalisation config first: the contract test runs one forward on examples[0]
        {"scale": 2, "embed_dim": 48, "depths": (2, 2), "num_heads": (3, 3), "window_size": 8, "compress_ratio": 6,
         "squeeze_factor": 8, "overlap_ratio": 0.25, "mlp_ratio": 4.0},
        {"scale": 4, "embed_dim": 144, "compress_ratio": 24, "squeeze_factor": 24, **_COMMON},  # HAT-S x4
        {"scale": 4, "embed_dim": 180, "compress_ratio": 3, "squeeze_factor": 30, **_COMMON},  # HAT x4
        # tiny, for tests that run every architecture (export parity, rewrite): they pick the smallest
        {"scale": 2, "embed_dim": 16, "depths": (2,), "num_heads": (2,), "window_size": 4, "compress_ratio": 4,
         "squeeze_factor": 4, "overlap_ratio": 0.5, "mlp_ratio": 2.0},
    ),
)
