"""Pieces shared by the distillation family (IMDN, RFDN, RLFN, BSRN, IMDTN).

The enhanced-spatial-attention (ESA) block of RFDN, RLFN and BSRN shrinks the feature map with a
stride-2 3x3 conv (no padding), then a 7x7/stride-3 max pool, works on that tiny map and stretches
it back bilinearly. On small inputs the official pooling fails (a map under 7 pixels has no 7x7
window); :func:`esa_max_pool` pools such a side over its whole length instead, so any input of at
least 3x3 pixels works and larger inputs give the official result.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._layers import same_conv
from ._shapes import StateDict, shuffle_factor

ESA_POOL_KERNEL = 7
ESA_POOL_STRIDE = 3
# ESA's stride-2 3x3 conv has no padding: an input side under 3 px leaves it nothing to convolve.
ESA_MIN_SIDE = 3


def esa_max_pool(x: torch.Tensor) -> torch.Tensor:
    """``max_pool2d(x, 7, stride=3)``; a side shorter than 7 pools over its whole length instead.

    A side ``s < 7`` is padded at its end with ``7 - s`` values of -inf: the one 7-wide window then
    covers the side and the padding, whose max is the side's max (pooling with kernel ``s``, one
    output), and -inf never wins a tie, so the gradient goes where it went with that kernel. A side of
    at least 7 gets no padding. The pad is ``max(0, 7 - s)`` from the tensor's shape: traced, it is
    Shape -> Sub -> Clip -> Pad in the graph, so one exported graph with a static 7x7 MaxPool is
    right at every input size (a Python ``min`` would freeze the traced size's kernel).

    >>> esa_max_pool(torch.arange(15.0).reshape(1, 1, 3, 5)).flatten().tolist()
    [14.0]
    """
    pad_h, pad_w = _pool_shortfall(x.shape[-2]), _pool_shortfall(x.shape[-1])
    if torch.jit.is_tracing() or pad_h or pad_w:  # traced, the pads are tensors: always pad
        x = F.pad(x, (0, pad_w, 0, pad_h), value=float("-inf"))
    return F.max_pool2d(x, kernel_size=ESA_POOL_KERNEL, stride=ESA_POOL_STRIDE)


def _pool_shortfall(side: int | torch.Tensor) -> int | torch.Tensor:
    """``max(0, 7 - side)``: a tensor while tracing (``side`` is then a graph value), else an int."""
    if isinstance(side, torch.Tensor):
        return (ESA_POOL_KERNEL - side).clamp(min=0)
    return max(0, ESA_POOL_KERNEL - side)


def resize_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear (align_corners=False) resize of ``x`` to ``ref``'s height and width."""
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


def numbered_blocks(sd: StateDict, prefix: str, suffix: str) -> int:
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


# Regions of the whole family (IMDN, RFDN, RLFN, BSRN, IMDTN): the first conv, and the upsampler.
HEAD: tuple[str, ...] = ("fea_conv",)
TAIL: tuple[str, ...] = ("upsampler",)
# Keys every DistillationNet checkpoint holds, whatever its blocks (specs add their block keys).
SKELETON_KEYS: tuple[str, ...] = ("fea_conv.weight", "c.0.weight", "LR_conv.weight", "upsampler.0.weight")


def skeleton_hparams(sd: StateDict, prefix: str, suffix: str) -> dict[str, int]:
    """Hyper-parameters of a :class:`DistillationNet` checkpoint, read off its shapes.

    ``nf, in_nc`` from ``fea_conv``; N blocks ``{prefix}1..N`` (counted by ``{prefix}i{suffix}``);
    the fusion conv ``c.0`` must take ``N * nf`` channels; ``upsampler.0`` has ``out_nc * s^2``
    outputs with ``out_nc = in_nc`` (RGB in, RGB out), which gives the scale s.
    """
    nf, in_nc = (int(n) for n in sd["fea_conv.weight"].shape[:2])
    num_modules = numbered_blocks(sd, prefix, suffix)
    fused_in = sd["c.0.weight"].shape[1]
    if fused_in != nf * num_modules:
        raise ValueError(f"c.0 takes {fused_in} channels, expected {num_modules} blocks x {nf}")
    scale = shuffle_factor(sd["upsampler.0.weight"].shape[0], in_nc)
    return {"scale": scale, "in_nc": in_nc, "nf": nf, "num_modules": num_modules, "out_nc": in_nc}


class DistillationNet(nn.Module):
    """The skeleton IMDN, RFDN and IMDTN share, with their official attribute names::

        fea = fea_conv(x);  h_i = {prefix}i(h_{i-1}), h_0 = fea
        out = upsampler(LR_conv(c(concat(h_1 .. h_N))) + fea)

    ``c`` is a 1x1 fusion conv + LeakyReLU; ``upsampler`` is a 3x3 conv + PixelShuffle. The blocks
    are attributes ``{prefix}1 .. {prefix}N`` (not a list), as in the official code, so the
    checkpoints' keys match. The upsampler is registered last: recipes treat the last conv as the
    network's output conv.
    """

    def __init__(
        self, prefix: str, blocks: Sequence[nn.Module], *, in_nc: int, nf: int, out_nc: int, scale: int, slope: float
    ) -> None:
        super().__init__()
        self.block_names = tuple(f"{prefix}{i}" for i in range(1, len(blocks) + 1))
        self.fea_conv = same_conv(in_nc, nf, 3)
        for name, block in zip(self.block_names, blocks):
            self.add_module(name, block)
        self.c = nn.Sequential(nn.Conv2d(nf * len(blocks), nf, 1), nn.LeakyReLU(slope))
        self.LR_conv = same_conv(nf, nf, 3)
        self.upsampler = nn.Sequential(same_conv(nf, out_nc * scale**2, 3), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.fea_conv(x)
        outs, h = [], fea
        for name in self.block_names:
            h = getattr(self, name)(h)
            outs.append(h)
        return self.upsampler(self.LR_conv(self.c(torch.cat(outs, dim=1))) + fea)
