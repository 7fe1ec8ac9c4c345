"""Weight binarizers, registered by ``BinaryOptions.weight``; each gives Wb and its per-channel scale.

All use :class:`WeightSignSTE` (clipped STE, gradient 1{|W| <= 1}) and differ only in the scale s_o:

- ``channel_mean``: s_o = mean(|W_o|) over the o-th output channel (XNOR-Net / Bi-Real), detached:
  recomputed from W at every step, never trained on its own. The magnitude of the latent weights then
  *is* the layer's output scale, so a run that needs a larger scale must push every weight away from 0,
  which also makes its signs harder to flip.
- ``channel_learned``: s_o is a parameter of its own (``wbin.log_scale`` = log s, shape (C_out,), started
  at mean(|W_o|) of the float weights and trained with the activation scales), so the sign of W and the
  size of the output are learned apart.
- ``sign``: s_o = 1.

Calibration's per-channel gain (:mod:`scales_cli.binary.calibration`) goes through :meth:`apply_gain`:
into W for ``channel_mean`` (s scales with W), into the parameter for ``channel_learned``, nowhere for
``sign`` (which has no scale to carry it).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from scales_cli.binary._registry import lookup
from scales_cli.binary.ste import WeightSignSTE, channel_view

SCALE_FLOOR = 1e-8
"""A learned scale starts at max(mean|W_o|, SCALE_FLOOR): an all-zero channel still has a finite log."""


def channel_mean_abs(w: Tensor) -> Tensor:
    """mean(|W_o|) per output channel, shape (C_out,), detached."""
    return w.detach().abs().reshape(w.shape[0], -1).mean(dim=1)


def log_channel_mean(w: Tensor) -> Tensor:
    """log max(mean(|W_o|), SCALE_FLOOR): the ``channel_learned`` log-scale that reproduces ``channel_mean``."""
    return channel_mean_abs(w).clamp_min(SCALE_FLOOR).log()


class ChannelMeanWeight(nn.Module):
    """Wb[o] = mean(|W[o]|) * sign(W[o]); the scale is detached."""

    bits = 1
    carries_gain = True

    def scale(self, w: Tensor) -> Tensor:
        """Per-output-channel scale, shape (C_out,)."""
        return channel_mean_abs(w)

    def forward(self, w: Tensor) -> Tensor:
        return WeightSignSTE.apply(w, self.scale(w))

    def start_from(self, w: Tensor) -> None:
        """Take the float weights a layer was built from (``from_float``); nothing to set for a derived scale."""

    @torch.no_grad()
    def apply_gain(self, w: nn.Parameter, gain: Tensor) -> None:
        """Multiply channel o's binary output by gain[o] (only where ``carries_gain``)."""
        w.mul_(channel_view(gain, w.ndim, 0))


class LearnedChannelWeight(nn.Module):
    """Wb[o] = s[o] * sign(W[o]) with s = exp(log_scale) a trained parameter (module doc).

    Stored as its log so that an optimizer step changes the scale by a *relative* amount whatever its size
    (Adam moves a parameter by about lr per step: 1e-2 on a raw scale of 0.1 would be 10 %), and so it stays
    positive without a floor. Forward and W's gradient are :class:`WeightSignSTE`'s; the scale's gradient is
    the exact one of s[o] * sign(W[o]).
    """

    bits = 1
    carries_gain = True

    def __init__(self, w: Tensor) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.empty(w.shape[0], dtype=w.dtype, device=w.device))
        self.start_from(w)

    @torch.no_grad()
    def start_from(self, w: Tensor) -> None:
        """s_o = mean(|W_o|) of the float weights: the binarized layer starts as ``channel_mean`` would."""
        self.log_scale.copy_(log_channel_mean(w))

    def scale(self, w: Tensor) -> Tensor:
        return self.log_scale.exp().to(w.dtype)

    def forward(self, w: Tensor) -> Tensor:
        signs = WeightSignSTE.apply(w, torch.ones_like(self.log_scale, dtype=w.dtype))
        return signs * channel_view(self.scale(w), w.ndim, 0)

    @torch.no_grad()
    def apply_gain(self, w: nn.Parameter, gain: Tensor) -> None:
        self.log_scale.add_(gain.to(self.log_scale).log())


class SignWeight(ChannelMeanWeight):
    """Wb = sign(W) (scale 1): no scale, so no calibration gain (``carries_gain`` False)."""

    carries_gain = False

    def scale(self, w: Tensor) -> Tensor:
        return torch.ones(w.shape[0], dtype=w.dtype, device=w.device)


WEIGHT_BINARIZERS: dict[str, Callable[[Tensor], nn.Module]] = {
    "channel_mean": lambda w: ChannelMeanWeight(),
    "channel_learned": LearnedChannelWeight,
    "sign": lambda w: SignWeight(),
}
"""name -> factory of the binarizer for one layer, given that layer's float weight (for a learned scale's start)."""


def make_weight_binarizer(name: str, w: Tensor) -> nn.Module:
    return lookup(WEIGHT_BINARIZERS, name, "weight binarizer (weight)")(w)
