"""RDN (Zhang et al., CVPR 2018) in the EDSR-PyTorch layout (``src/model/rdn.py``).

``F_-1 = SFENet1(x)``, ``F_0 = SFENet2(F_-1)``, ``F_d = RDB_d(F_{d-1})`` for d = 1..D,
``F_GF = GFF(concat(F_1..F_D))`` (1x1 conv D*G0 → G0, then a kxk conv), output ``UPNet(F_GF + F_-1)``.
An RDB with C layers concatenates ``relu(conv(·))`` outputs of growth G onto its G0-channel input
(channels G0 + c*G before layer c) and fuses back with a 1x1 ``LFF``: ``RDB(x) = x + LFF(dense(x))``.
UPNet is conv(G0 → G r²) + PixelShuffle(r) + conv(G → 3) for r = 2, 3 and two x2 stages for r = 4.

There is no mean shift: the network takes RGB in ``[0, 255]`` as EDSR-PyTorch trains it
(``rgb_range`` 255), which ``--arch-opt input_range=1`` can change for models trained otherwise.
Official configs: 'B' = D16 C8 G64 (the paper's RDN), 'A' = D20 C6 G32; G0 = 64, kernel 3.

Regions: the shallow feature the global residual returns to (``SFENet1``) is the head; ``SFENet2``
sits inside that residual with the RDBs and GFF, so it is body.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._shapes import StateDict, keys_fit, seq_len, shuffle_factor
from .descriptor import ArchSpec


def _conv(in_ch: int, out_ch: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, k, padding=(k - 1) // 2)


class RDBConv(nn.Module):
    """One dense layer: ``concat(x, relu(conv(x)))`` (keys ``conv.0.*``)."""

    def __init__(self, in_ch: int, growth: int, k: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv(in_ch, growth, k), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.conv(x)), 1)


class RDB(nn.Module):
    """Residual dense block: ``x + LFF(dense_C(x))``."""

    def __init__(self, G0: int, G: int, C: int, k: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(*[RDBConv(G0 + c * G, G, k) for c in range(C)])
        self.LFF = nn.Conv2d(G0 + C * G, G0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.LFF(self.convs(x))


def _upnet(scale: int, G0: int, G: int, k: int) -> nn.Sequential:
    if scale in (2, 3):
        return nn.Sequential(_conv(G0, G * scale * scale, k), nn.PixelShuffle(scale), _conv(G, 3, k))
    if scale == 4:
        return nn.Sequential(
            _conv(G0, G * 4, k), nn.PixelShuffle(2), _conv(G, G * 4, k), nn.PixelShuffle(2), _conv(G, 3, k)
        )
    raise ValueError(f"RDN supports scale 2, 3 or 4, not {scale}")


class RDN(nn.Module):
    """EDSR-PyTorch RDN; forward takes RGB in ``[0, input_range]`` (no normalisation inside)."""

    def __init__(
        self,
        scale: int,
        G0: int = 64,
        D: int = 16,
        C: int = 8,
        G: int = 64,
        kernel_size: int = 3,
        input_range: float = 255.0,
    ) -> None:
        super().__init__()
        self.input_range = input_range  # documents the training range; the network does not use it
        self.SFENet1 = _conv(3, G0, kernel_size)
        self.SFENet2 = _conv(G0, G0, kernel_size)
        self.RDBs = nn.ModuleList([RDB(G0, G, C, kernel_size) for _ in range(D)])
        self.GFF = nn.Sequential(nn.Conv2d(D * G0, G0, 1), _conv(G0, G0, kernel_size))
        self.UPNet = _upnet(scale, G0, G, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shallow = self.SFENet1(x)
        x = self.SFENet2(shallow)
        outs = []
        for block in self.RDBs:
            x = block(x)
            outs.append(x)
        return self.UPNet(self.GFF(torch.cat(outs, 1)) + shallow)


def infer_rdn(sd: StateDict) -> dict[str, Any]:
    G0, _, kernel_size, _ = sd["SFENet1.weight"].shape
    G = sd["RDBs.0.convs.0.conv.0.weight"].shape[0]
    if "UPNet.4.weight" in sd:  # two x2 stages
        scale = shuffle_factor(sd["UPNet.0.weight"].shape[0], G) * shuffle_factor(sd["UPNet.2.weight"].shape[0], G)
    else:
        scale = shuffle_factor(sd["UPNet.0.weight"].shape[0], G)
    return {
        "scale": scale,
        "G0": G0,
        "D": seq_len(sd, "RDBs."),
        "C": seq_len(sd, "RDBs.0.convs."),
        "G": G,
        "kernel_size": kernel_size,
    }


SPEC = ArchSpec(
    name="rdn",
    required_keys=(
        "SFENet1.weight", "SFENet2.weight", "RDBs.0.convs.0.conv.0.weight", "RDBs.0.LFF.weight",
        "GFF.0.weight", "GFF.1.weight", "UPNet.0.weight", "UPNet.2.weight",
    ),
    infer=infer_rdn,
    build=RDN,
    head=("SFENet1",),
    tail=("UPNet",),
    defaults={"input_range": 255.0},
    input_range=255.0,
    forbidden_keys=("SFENet3.*", "RDB3Ds.*", "P2W.*", "tail.*", "sub_mean.*"),
    accept=lambda sd: keys_fit(sd, "RDBs.", r"RDBs\.\d+\.(convs\.\d+\.conv\.0|LFF)\.(weight|bias)"),
    description="RDN, EDSR-PyTorch layout (SFENet/RDBs/GFF/UPNet), RGB in [0, 255]",
    examples=(
        {"scale": 2, "G0": 16, "D": 3, "C": 2, "G": 8, "kernel_size": 3},  # small config
        {"scale": 4, "G0": 64, "D": 16, "C": 8, "G": 64, "kernel_size": 3},  # RDN paper (config 'B')
        {"scale": 3, "G0": 64, "D": 20, "C": 6, "G": 32, "kernel_size": 3},  # config 'A'
        # tiny, for tests that run every architecture (export parity, rewrite): they pick the smallest
        {"scale": 2, "G0": 16, "D": 2, "C": 2, "G": 8, "kernel_size": 3},
    ),
)
