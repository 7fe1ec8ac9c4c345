"""SRGAN generator in the layout of leftthomas/SRGAN ``model.py`` (the ``Generator`` at commit b0323c6,
the one the released ``netG_epoch_{2,4,8}_100.pth`` files were trained with).

Blocks are numbered attributes, so the names shift with the residual-block count n (5 in the repo):

    block1        9x9 conv 3 -> C, PReLU                                   (head)
    block2..n+1   residual: x + BN(conv(PReLU(BN(conv(x)))))
    block{n+2}    3x3 conv + PReLU (b0323c6) or 3x3 conv + BN (the repo's later model.py)
    block{n+3}    log2(scale) x [conv C -> 4C, PixelShuffle(2), PReLU], then 9x9 conv C -> 3  (tail)

    y = (tanh(block{n+3}(block1 + block{n+2}(...))) + 1) / 2        input and output in [0, 1]

The files were saved with PyTorch < 0.4: their BatchNorm layers have running stats but no
``num_batches_tracked``. Our BN keeps that counter out of the state dict (it only matters when
``momentum=None``), and newer files that do carry it drop it through ``ignore_keys``.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from ..errors import DetectionError
from ._shapes import StateDict, count_keys, shuffle_factor
from .descriptor import ArchSpec

TRUNK_ENDS: tuple[str, ...] = ("prelu", "bn")  # what follows the conv of block{n+2}


class BatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose step counter is not persisted: pre-0.4 checkpoints never had one.

    PyTorch's BN would otherwise list ``num_batches_tracked`` as a state-dict entry (so a strict
    comparison against these files reports it missing) and, for state dicts without version
    metadata, inject it while loading (reported unexpected once it is not persistent).
    """

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        self._non_persistent_buffers_set.add("num_batches_tracked")

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):  # type: ignore[override]
        # version >= 2 tells BN not to add the counter that older state dicts lack.
        super()._load_from_state_dict(state_dict, prefix, {**local_metadata, "version": 2}, *args, **kwargs)


class ResidualBlock(nn.Module):
    """``x + bn2(conv2(prelu(bn1(conv1(x)))))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1 = BatchNorm2d(channels)
        self.prelu = nn.PReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(x)))))


class UpsampleBlock(nn.Module):
    """``prelu(pixel_shuffle_2(conv(x)))`` with conv C -> 4C."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 4, 3, padding=1)
        self.pixel_shuffle = nn.PixelShuffle(2)
        self.prelu = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.pixel_shuffle(self.conv(x)))


def block_names(num_block: int) -> tuple[str, str, str]:
    """(first residual block, trunk-end block, upsampler block) names for ``num_block`` residual blocks."""
    return "block2", f"block{num_block + 2}", f"block{num_block + 3}"


class SRGANGenerator(nn.Module):
    """The generator; children are registered under the official numbered names."""

    def __init__(self, scale: int = 4, num_feat: int = 64, num_block: int = 5, trunk_end: str = "prelu") -> None:
        super().__init__()
        steps = scale.bit_length() - 1
        if scale < 2 or 1 << steps != scale:
            raise DetectionError(f"SRGAN-G: scale {scale} is not a power of two (its upsampler doubles per block)")
        if trunk_end not in TRUNK_ENDS:
            raise DetectionError(f"SRGAN-G: trunk_end={trunk_end!r}, expected one of {', '.join(TRUNK_ENDS)}")
        self.scale = scale
        _, trunk_name, up_name = block_names(num_block)
        self.block1 = nn.Sequential(nn.Conv2d(3, num_feat, 9, padding=4), nn.PReLU())
        self.residual_names = tuple(f"block{i + 2}" for i in range(num_block))
        for name in self.residual_names:
            self.add_module(name, ResidualBlock(num_feat))
        after = nn.PReLU() if trunk_end == "prelu" else BatchNorm2d(num_feat)
        self.add_module(trunk_name, nn.Sequential(nn.Conv2d(num_feat, num_feat, 3, padding=1), after))
        ups: list[nn.Module] = [UpsampleBlock(num_feat) for _ in range(steps)]
        self.add_module(up_name, nn.Sequential(*ups, nn.Conv2d(num_feat, 3, 9, padding=4)))
        self.trunk_name, self.up_name = trunk_name, up_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.block1(x)
        feat = head
        for name in self.residual_names:
            feat = getattr(self, name)(feat)
        feat = getattr(self, self.trunk_name)(feat)
        out = getattr(self, self.up_name)(head + feat)
        return (torch.tanh(out) + 1) / 2


def infer(sd: StateDict) -> dict[str, Any]:
    """n = number of ``block*.conv1`` residual blocks; block{n+3} holds log2(scale) upsample blocks
    (each conv C -> 4C, i.e. shuffle factor 2) before its final conv; a BN after the trunk-end conv
    shows as running stats at ``block{n+2}.1``."""
    num_feat = int(sd["block1.0.weight"].shape[0])
    num_block = count_keys(sd, r"block\d+\.conv1\.weight")
    _, trunk_name, up_name = block_names(num_block)
    if f"{trunk_name}.0.weight" not in sd:
        raise KeyError(f"{trunk_name}.0.weight (the conv after {num_block} residual blocks)")
    scale = 1
    for i in range(count_keys(sd, re.escape(up_name) + r"\.\d+\.conv\.weight")):
        scale *= shuffle_factor(int(sd[f"{up_name}.{i}.conv.weight"].shape[0]), num_feat)
    trunk_end = "bn" if f"{trunk_name}.1.running_mean" in sd else "prelu"
    return {"scale": scale, "num_feat": num_feat, "num_block": num_block, "trunk_end": trunk_end}


def build(scale: int, num_feat: int = 64, num_block: int = 5, trunk_end: str = "prelu") -> SRGANGenerator:
    return SRGANGenerator(scale=int(scale), num_feat=num_feat, num_block=num_block, trunk_end=trunk_end)


def regions(hparams: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Head = block1; tail = the upsampler block, whose number follows the residual-block count."""
    _, _, up_name = block_names(int(hparams.get("num_block", 5)))
    return ("block1",), (up_name,)


SPEC = ArchSpec(
    name="srgan-g",
    required_keys=(
        "block1.0.weight",
        "block1.1.weight",  # PReLU slope
        "block2.conv1.weight",
        "block2.bn1.running_var",
        "block2.prelu.weight",
        "block2.conv2.weight",
        "block2.bn2.running_var",
    ),
    infer=infer,
    build=build,
    head=("block1",),
    tail=("block8",),  # for the repo's 5 residual blocks; ``regions`` renumbers it for other counts
    regions_for=regions,
    input_range=1.0,
    ignore_keys=("*.num_batches_tracked",),
    description="SRGAN generator (leftthomas/SRGAN model.py @b0323c6), (tanh+1)/2 output",
    examples=(
        {"scale": 4, "num_feat": 64, "num_block": 5, "trunk_end": "prelu"},  # netG_epoch_4_100.pth
        {"scale": 2, "num_feat": 64, "num_block": 5, "trunk_end": "prelu"},  # netG_epoch_2_100.pth
        {"scale": 8, "num_feat": 64, "num_block": 5, "trunk_end": "prelu"},  # netG_epoch_8_100.pth
        {"scale": 4, "num_feat": 64, "num_block": 5, "trunk_end": "bn"},  # the repo's later model.py
        {"scale": 4, "num_feat": 32, "num_block": 8, "trunk_end": "prelu"},
        {"scale": 2, "num_feat": 48, "num_block": 1, "trunk_end": "prelu"},
        # tiny, for tests that run every architecture (export parity, rewrite): they pick the smallest
        {"scale": 2, "num_feat": 16, "num_block": 1, "trunk_end": "prelu"},
    ),
)
