"""BSRN: blueprint separable residual network (XPixel, NTIRE 2022 ESR; ``RFDNFINALB5`` there).

Layout (names as in ofsoundof/NTIRE2022_ESR ``models/team18_bsrn.py``, conv='BSConvU',
upsampler='pixelshuffledirect')::

    x4 = cat(x, x, x, x) -> fea_conv (BSConvU) -> B1..Bn -> c1 (Linear over all block outputs)
    -> GELU -> c2 (BSConvU) + fea_conv output -> upsampler.upsampleOneStep (3x3 conv, PixelShuffle(s))

BSConvU = pointwise ``nn.Linear`` over channels (``pw``) then a depthwise 3x3 conv (``dw``). A block
is RFDN's distillation block with Linear 1x1 layers, GELU, a BSConvU ESA, a learned per-channel
weight ``cw``, a ``conv_out`` Linear and a block residual. Pixels in [0, 1].
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._distill import ESA_MIN_SIDE, HEAD, TAIL, esa_max_pool, numbered_blocks, resize_like
from ._shapes import StateDict, shuffle_factor
from .descriptor import ArchSpec

INPUT_COPIES = 4  # the network sees its input concatenated four times along channels


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


class BSConvU(nn.Module):
    """Blueprint separable conv (unconstrained): dw(pw(x)), pw a Linear over channels, dw depthwise k x k."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.pw = nn.Linear(cin, cout)
        self.dw = nn.Conv2d(cout, cout, kernel_size, padding=kernel_size // 2, groups=cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dw(_channels_first(self.pw(_channels_last(x))))


class ESA(nn.Module):
    """ESA with Linear 1x1 layers, BSConvU 3x3 layers and GELU (see rfdn.ESA for the formula)."""

    def __init__(self, num_feat: int, f: int) -> None:
        super().__init__()
        self.conv1 = nn.Linear(num_feat, f)
        self.conv_f = nn.Linear(f, f)
        self.conv_max = BSConvU(f, f)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2, padding=0)
        self.conv3 = BSConvU(f, f)
        self.conv3_ = BSConvU(f, f)
        self.conv4 = nn.Linear(f, num_feat)
        self.GELU = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1_ = self.conv1(_channels_last(x))
        v_max = esa_max_pool(self.conv2(_channels_first(c1_)))
        c3 = self.conv3_(self.GELU(self.conv3(self.GELU(self.conv_max(v_max)))))
        c4 = self.conv4(_channels_last(resize_like(c3, x)) + self.conv_f(c1_))
        return x * torch.sigmoid(_channels_first(c4))


class RFDB(nn.Module):
    """BSRN's block: three distil/refine steps, fusion, ESA, channel weights ``cw``, ``conv_out``, residual."""

    def __init__(self, nf: int, esa_channels: int) -> None:
        super().__init__()
        dc = nf // 2
        self.c1_d = nn.Linear(nf, dc)
        self.c1_r = BSConvU(nf, nf)
        self.c2_d = nn.Linear(nf, dc)
        self.c2_r = BSConvU(nf, nf)
        self.c3_d = nn.Linear(nf, dc)
        self.c3_r = BSConvU(nf, nf)
        self.c4 = BSConvU(nf, dc)
        self.act = nn.GELU()
        self.c5 = nn.Linear(dc * 4, nf)
        self.esa = ESA(nf, esa_channels)
        self.cw = nn.Parameter(torch.normal(mean=1.0, std=0.2, size=(1, nf)))
        self.conv_out = nn.Linear(nf, nf)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.act(self.c1_d(_channels_last(x)))
        r1 = self.act(self.c1_r(x) + x)
        d2 = self.act(self.c2_d(_channels_last(r1)))
        r2 = self.act(self.c2_r(r1) + r1)
        d3 = self.act(self.c3_d(_channels_last(r2)))
        r3 = self.act(self.c3_r(r2) + r2)
        r4 = self.act(self.c4(r3))
        fused = self.c5(torch.cat([d1, d2, d3, _channels_last(r4)], dim=3))
        out = _channels_last(self.esa(_channels_first(fused))) * self.cw
        return _channels_first(self.conv_out(out)) + x


class UpsampleOneStep(nn.Sequential):
    def __init__(self, scale: int, num_feat: int, num_out_ch: int) -> None:
        super().__init__(nn.Conv2d(num_feat, num_out_ch * scale**2, 3, padding=1), nn.PixelShuffle(scale))


class PixelShuffleDirect(nn.Module):
    def __init__(self, scale: int, num_feat: int, num_out_ch: int) -> None:
        super().__init__()
        self.upsampleOneStep = UpsampleOneStep(scale, num_feat, num_out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsampleOneStep(x)


class BSRN(nn.Module):
    def __init__(
        self, scale: int = 4, num_in_ch: int = 3, num_feat: int = 48, num_block: int = 5, num_out_ch: int = 3,
        esa_channels: int = 12,
    ) -> None:
        super().__init__()
        self.num_block = num_block
        self.fea_conv = BSConvU(num_in_ch * INPUT_COPIES, num_feat)
        for i in range(1, num_block + 1):
            self.add_module(f"B{i}", RFDB(num_feat, esa_channels))
        self.c1 = nn.Linear(num_feat * num_block, num_feat)
        self.GELU = nn.GELU()
        self.c2 = BSConvU(num_feat, num_feat)
        self.upsampler = PixelShuffleDirect(scale, num_feat, num_out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.fea_conv(torch.cat([x] * INPUT_COPIES, dim=1))
        outs = []
        h = fea
        for i in range(1, self.num_block + 1):
            h = getattr(self, f"B{i}")(h)
            outs.append(h)
        trunk = self.GELU(_channels_first(self.c1(_channels_last(torch.cat(outs, dim=1)))))
        return self.upsampler(self.c2(trunk) + fea)


def infer(sd: StateDict) -> dict[str, Any]:
    num_feat, in_copies = sd["fea_conv.pw.weight"].shape
    if in_copies % INPUT_COPIES:
        raise ValueError(f"fea_conv.pw takes {in_copies} channels, not {INPUT_COPIES} copies of the input")
    num_in_ch = in_copies // INPUT_COPIES
    num_block = numbered_blocks(sd, "B", ".cw")
    fused_in = sd["c1.weight"].shape[1]
    if fused_in != num_feat * num_block:
        raise ValueError(f"c1 takes {fused_in} channels, expected {num_block} blocks x {num_feat}")
    return {
        "scale": shuffle_factor(sd["upsampler.upsampleOneStep.0.weight"].shape[0], num_in_ch),
        "num_in_ch": int(num_in_ch),
        "num_feat": int(num_feat),
        "num_block": num_block,
        "num_out_ch": int(num_in_ch),
        "esa_channels": int(sd["B1.esa.conv1.weight"].shape[0]),
    }



SPEC = ArchSpec(
    min_size=ESA_MIN_SIDE,
    name="bsrn",
    required_keys=(
        "fea_conv.pw.weight",
        "fea_conv.dw.weight",
        "B1.cw",
        "B1.c1_d.weight",
        "B1.c1_r.pw.weight",
        "B1.esa.conv_max.pw.weight",
        "B1.conv_out.weight",
        "c1.weight",
        "c2.pw.weight",
        "upsampler.upsampleOneStep.0.weight",
    ),
    infer=infer,
    build=BSRN,
    head=HEAD,
    tail=TAIL,
    input_range=1.0,
    description="BSRN (XPixel, NTIRE 2022 ESR): blueprint-separable distillation blocks, pixel-shuffle-direct",
    examples=(
        {"scale": 4, "num_in_ch": 3, "num_feat": 48, "num_block": 5, "num_out_ch": 3, "esa_channels": 12},
        {"scale": 2, "num_in_ch": 3, "num_feat": 64, "num_block": 8, "num_out_ch": 3, "esa_channels": 16},
        {"scale": 3, "num_in_ch": 3, "num_feat": 48, "num_block": 5, "num_out_ch": 3, "esa_channels": 12},
        # tiny, for tests that run every architecture (export parity, rewrite): they pick the smallest
        {"scale": 2, "num_in_ch": 3, "num_feat": 16, "num_block": 1, "num_out_ch": 3, "esa_channels": 8},
    ),
)
