"""Frozen export views of binary layers: everything an exporter needs, as NumPy arrays and ints.

A binary layer describes itself through ``export_view()`` (see :mod:`scales_cli.binary.layers`), so
exporters never read loose attributes (``skip``, ``spatial.padding``, ``act.beta`` ...). A view is the
eval-mode computation of one layer, in this order (``ORDER``)::

    z = alpha * weight_scale[o] * conv(sign(x - beta), signs(bits))    binary core, zero padding
    z = z * bn_scale[o] + bn_shift[o]                                  eval BatchNorm, folded
    c = sigmoid(conv1d_k(GAP(x if channel.from_input else z)))         channel factor (B, C_out, 1, 1)
    z = z * sigmoid(conv_{C_in->1}(x; spatial))                        spatial factor (B, 1, H', W')
    z = z * c
    y = z + bias[o] (+ x when skip)

``sign(0) = +1`` everywhere: the binarized input is ``+1`` where ``x - beta >= 0``. Padding adds
``pad_value = 0.0`` in the binarized domain, i.e. padded taps contribute nothing, exactly like torch's
zero padding of the ``+-alpha`` map. ``bits`` use the layout of :mod:`scales_cli.binary.packing`
(row per output channel, MSB first). Imports NumPy only, so it is cheap to import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

ORDER: tuple[str, ...] = ("binary", "bn", "channel", "spatial", "bias", "skip")


def unpack_rows(bits: np.ndarray, k: int) -> np.ndarray:
    """``(C_out, ceil(k/8))`` uint8 MSB-first rows -> ``(C_out, k)`` float32 of +-1."""
    flat = np.unpackbits(bits, axis=1, bitorder="big")[:, :k]
    return flat.astype(np.float32) * 2 - 1


@dataclass(frozen=True)
class SpatialBranch:
    """Spatial re-scaling s = sigmoid(conv(x) + bias): conv weight (1, C_in, k, k) or, for tokens, (1, C)."""

    weight: np.ndarray
    bias: np.ndarray  # (1,)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)  # symmetric (rows, cols); tokens: unused

    @property
    def kernel(self) -> int:
        return int(self.weight.shape[-1])


@dataclass(frozen=True)
class ChannelBranch:
    """Channel re-scaling c = sigmoid(conv1d_k(GAP(t))), zero padding k // 2, no bias.

    ``from_input``: t is the FP input x (C_in == C_out), otherwise the pre-spatial binary output z.
    """

    weight: np.ndarray  # (k,)
    from_input: bool

    @property
    def kernel(self) -> int:
        return int(self.weight.shape[0])


@dataclass(frozen=True)
class BinaryConvView:
    """One eval-mode BinaryConv2d (module docstring gives the equations)."""

    kind: ClassVar[str] = "conv2d"
    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]  # top, left, bottom, right
    dilation: tuple[int, int]
    groups: int
    bits: np.ndarray  # uint8 (C_out, ceil(C_in / groups * kh * kw / 8))
    weight_scale: np.ndarray  # (C_out,)
    alpha: float
    beta: np.ndarray  # (C_in,)
    bias: np.ndarray | None
    bn_scale: np.ndarray | None = None
    bn_shift: np.ndarray | None = None
    spatial: SpatialBranch | None = None
    channel: ChannelBranch | None = None
    skip: bool = False
    pad_value: float = 0.0

    @property
    def fan_in(self) -> int:
        return self.in_channels // self.groups * self.kernel[0] * self.kernel[1]

    def signs(self) -> np.ndarray:
        """The +-1 weights, (C_out, C_in / groups, kh, kw) float32."""
        return unpack_rows(self.bits, self.fan_in).reshape(self.out_channels, -1, *self.kernel)


@dataclass(frozen=True)
class BinaryLinearView:
    """One eval-mode BinaryLinear over (..., N, C) tokens: channel and skip do not apply."""

    kind: ClassVar[str] = "linear"
    in_features: int
    out_features: int
    bits: np.ndarray  # uint8 (out, ceil(in / 8))
    weight_scale: np.ndarray
    alpha: float
    beta: np.ndarray
    bias: np.ndarray | None
    bn_scale: np.ndarray | None = None
    bn_shift: np.ndarray | None = None
    spatial: SpatialBranch | None = None
    channel: None = None
    skip: bool = False

    @property
    def fan_in(self) -> int:
        return self.in_features

    def signs(self) -> np.ndarray:
        """The +-1 weights, (out, in) float32."""
        return unpack_rows(self.bits, self.in_features)


LayerView = BinaryConvView | BinaryLinearView
