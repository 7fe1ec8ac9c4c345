"""Weight binarizers, registered by ``BinaryOptions.weight``; each gives Wb and its per-channel scale.

Both use :class:`WeightSignSTE` (clipped STE, gradient 1{|W| <= 1}) and differ only in the scale:
``channel_mean`` s_o = mean(|W_o|) over the o-th output channel (XNOR-Net / Bi-Real), ``sign`` s_o = 1.
The scale is detached: recomputed from W at every step, never trained on its own.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from scales_cli.binary._registry import lookup
from scales_cli.binary.ste import WeightSignSTE


class ChannelMeanWeight(nn.Module):
    """Wb[o] = mean(|W[o]|) * sign(W[o]); the scale is detached."""

    bits = 1

    def scale(self, w: Tensor) -> Tensor:
        """Per-output-channel scale, shape (C_out,)."""
        return w.detach().abs().reshape(w.shape[0], -1).mean(dim=1)

    def forward(self, w: Tensor) -> Tensor:
        return WeightSignSTE.apply(w, self.scale(w))


class SignWeight(ChannelMeanWeight):
    """Wb = sign(W) (scale 1)."""

    def scale(self, w: Tensor) -> Tensor:
        return torch.ones(w.shape[0], dtype=w.dtype, device=w.device)


WEIGHT_BINARIZERS: dict[str, Callable[[], nn.Module]] = {
    "channel_mean": ChannelMeanWeight,
    "sign": SignWeight,
}


def make_weight_binarizer(name: str) -> nn.Module:
    return lookup(WEIGHT_BINARIZERS, name, "weight binarizer (weight)")()
