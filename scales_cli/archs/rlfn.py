"""RLFN_cut: residual local feature network (ByteESR, NTIRE 2022 ESR winner).

Layout (names as in ofsoundof/NTIRE2022_ESR ``models/team04_rlfn.py``)::

    fea_conv (3x3) -> B1..Bn (RLFB) -> LR_conv (3x3) + fea_conv output
    -> upsampler (3x3 conv to out_nc*s^2, PixelShuffle(s))

An RLFB is three 3x3 convs nf->mf->mf->nf each followed by LeakyReLU 0.05, plus the block input,
then a 1x1 conv and a light ESA (no conv_max/conv3_, no ReLU inside). Unlike RFDN there is no
concatenation of block outputs. The NTIRE checkpoint works on pixels in [0, 255].
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._distill import ESA_MIN_SIDE, HEAD, TAIL, esa_max_pool, numbered_blocks, resize_like, same_conv
from ._shapes import StateDict, shuffle_factor
from .descriptor import ArchSpec

LRELU_SLOPE = 0.05


class ESA(nn.Module):
    """Light ESA: x * sigmoid(conv4(up(conv3(pool(conv2(c1)))) + conv_f(c1))), c1 = conv1(x)."""

    def __init__(self, esa_channels: int, n_feats: int) -> None:
        super().__init__()
        f = esa_channels
        self.conv1 = nn.Conv2d(n_feats, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2, padding=0)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, n_feats, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1_ = self.conv1(x)
        c3 = self.conv3(esa_max_pool(self.conv2(c1_)))
        return x * torch.sigmoid(self.conv4(resize_like(c3, x) + self.conv_f(c1_)))


class RLFB(nn.Module):
    def __init__(self, nf: int, mf: int, esa_channels: int) -> None:
        super().__init__()
        self.c1_r = same_conv(nf, mf, 3)
        self.c2_r = same_conv(mf, mf, 3)
        self.c3_r = same_conv(mf, nf, 3)
        self.c5 = same_conv(nf, nf, 1)
        self.esa = ESA(esa_channels, nf)
        self.act = nn.LeakyReLU(LRELU_SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.c3_r(self.act(self.c2_r(self.act(self.c1_r(x))))))
        return self.esa(self.c5(out + x))


class RLFN(nn.Module):
    """``RLFN_cut`` of the NTIRE code, with the block count and ESA width as arguments."""

    def __init__(
        self, scale: int = 4, in_nc: int = 3, nf: int = 46, mf: int = 48, num_blocks: int = 4, out_nc: int = 3,
        esa_channels: int = 16,
    ) -> None:
        super().__init__()
        self.num_blocks = num_blocks
        self.fea_conv = same_conv(in_nc, nf, 3)
        for i in range(1, num_blocks + 1):
            self.add_module(f"B{i}", RLFB(nf, mf, esa_channels))
        self.LR_conv = same_conv(nf, nf, 3)
        self.upsampler = nn.Sequential(same_conv(nf, out_nc * scale**2, 3), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.fea_conv(x)
        h = fea
        for i in range(1, self.num_blocks + 1):
            h = getattr(self, f"B{i}")(h)
        return self.upsampler(self.LR_conv(h) + fea)


def infer(sd: StateDict) -> dict[str, Any]:
    nf, in_nc = sd["fea_conv.weight"].shape[:2]
    out_nc = in_nc
    return {
        "scale": shuffle_factor(sd["upsampler.0.weight"].shape[0], out_nc),
        "in_nc": int(in_nc),
        "nf": int(nf),
        "mf": int(sd["B1.c1_r.weight"].shape[0]),
        "num_blocks": numbered_blocks(sd, "B", ".c1_r.weight"),
        "out_nc": int(out_nc),
        "esa_channels": int(sd["B1.esa.conv1.weight"].shape[0]),
    }


def build(*, input_range: float = 255.0, **hparams: Any) -> nn.Module:
    """``input_range`` only tells callers how to scale pixels; the network itself does not use it."""
    return RLFN(**hparams)


SPEC = ArchSpec(
    min_size=ESA_MIN_SIDE,
    name="rlfn",
    required_keys=(
        "fea_conv.weight",
        "B1.c1_r.weight",
        "B1.c2_r.weight",
        "B1.c3_r.weight",
        "B1.c5.weight",
        "B1.esa.conv1.weight",
        "B1.esa.conv_f.weight",
        "B1.esa.conv2.weight",
        "B1.esa.conv3.weight",
        "B1.esa.conv4.weight",
        "LR_conv.weight",
        "upsampler.0.weight",
    ),
    infer=infer,
    build=build,
    head=HEAD,
    tail=TAIL,
    defaults={"input_range": 255.0},  # NTIRE 2022 test code; other RLFN releases may use [0, 1]
    input_range=255.0,
    # RFDN shares the B*.c*_r / esa names but also has distillers, the full ESA and the c fusion conv.
    forbidden_keys=("B*.c1_d.*", "B*.esa.conv_max.*", "B*.esa.conv3_.*", "c.0.*"),
    description="RLFN_cut (ByteESR, NTIRE 2022 ESR): residual local feature blocks with light ESA",
    examples=(
        {"scale": 4, "in_nc": 3, "nf": 46, "mf": 48, "num_blocks": 4, "out_nc": 3, "esa_channels": 16},
        {"scale": 2, "in_nc": 3, "nf": 52, "mf": 48, "num_blocks": 6, "out_nc": 3, "esa_channels": 16},
        {"scale": 3, "in_nc": 3, "nf": 46, "mf": 48, "num_blocks": 4, "out_nc": 3, "esa_channels": 16},
        # tiny, for tests that run every architecture (export parity, rewrite): they pick the smallest
        {"scale": 2, "in_nc": 3, "nf": 16, "mf": 16, "num_blocks": 1, "out_nc": 3, "esa_channels": 8},
    ),
)
