"""SCALES re-scaling branches: small FP predictors of input-dependent factors for a binary output.

All three read the *FP* input x of the binary layer (before binarization) and end in a sigmoid, so
each factor lies in (0, 1) and multiplies the binary conv/linear output by broadcasting.

- :class:`SpatialRescale2d` (CNN, paper eq. 4): s = sigmoid(Conv2d_{C_in -> 1, k x k}(x)), one factor
  per output pixel, shape (B, 1, H', W'). Parameters: C_in * k * k + 1.
- :class:`TokenSpatialRescale` (Transformer, eq. 4): s = sigmoid(Linear_{C -> 1}(x)), one factor per
  token, shape (..., N, 1). Parameters: C + 1.
- :class:`ChannelRescale` (CNN, eq. 5): c = sigmoid(Conv1d_{1 -> 1, k}(GAP(t))), one factor per
  channel, shape (B, C, 1, 1), where t is the FP input (or, when C_in != C_out, the binary output:
  the factors must have C_out entries). Conv1d slides over the channel axis, zero padding k // 2,
  no bias. Parameters: k (5 by default).

They subclass the torch layer they wrap so their state-dict keys are ``spatial.weight``,
``spatial.bias`` and ``channel.weight``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SpatialRescale2d(nn.Conv2d):
    """Per-pixel factor sigmoid(conv(x)), conv C_in -> 1 with the binary conv's stride.

    ``padding`` is chosen by the owning layer so the factor map has the binary output's size.
    """

    def __init__(self, in_channels: int, kernel_size: int, stride: tuple[int, int], padding: tuple[int, int]) -> None:
        super().__init__(in_channels, 1, kernel_size, stride=stride, padding=padding, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(super().forward(x))


class TokenSpatialRescale(nn.Linear):
    """Per-token factor sigmoid(w . x_n + b), shape (..., N, 1)."""

    def __init__(self, in_features: int) -> None:
        super().__init__(in_features, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(super().forward(x))


class ChannelRescale(nn.Conv1d):
    """Per-channel factor sigmoid(conv1d_k(GAP(t))) for an NCHW tensor t, shape (B, C, 1, 1)."""

    def __init__(self, kernel_size: int = 5) -> None:
        super().__init__(1, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, t: Tensor) -> Tensor:
        pooled = t.mean(dim=(2, 3)).unsqueeze(1)  # (B, 1, C): channels are the Conv1d's length axis
        return torch.sigmoid(super().forward(pooled)).reshape(t.shape[0], -1, 1, 1)
