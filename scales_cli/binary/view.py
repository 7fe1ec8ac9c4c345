"""Frozen views of binary layers' cores: what an exporter needs to replace a core, as NumPy arrays and ints.

A binary layer describes its core through ``export_view()`` (see :mod:`scales_cli.binary.layers`), so
exporters never read loose attributes (``act.beta``, ``padding`` ...). A view is the eval-mode core of
one layer, the ``z`` that its epilogue (BN, re-scaling, bias, skip: run by torch in every export) takes::

    z = alpha * weight_scale[o] * conv(sign(x - beta), signs(bits))    zero padding

``sign(0) = +1`` everywhere: the binarized input is ``+1`` where ``x - beta >= 0``. Padding adds
``pad_value = 0.0`` in the binarized domain, i.e. padded taps contribute nothing, exactly like torch's
zero padding of the ``+-alpha`` map. ``bits`` use the layout of :mod:`scales_cli.binary.packing`
(row per output channel, MSB first). Imports NumPy only, so it is cheap to import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np


def unpack_rows(bits: np.ndarray, k: int) -> np.ndarray:
    """``(C_out, ceil(k/8))`` uint8 MSB-first rows -> ``(C_out, k)`` float32 of +-1."""
    flat = np.unpackbits(bits, axis=1, bitorder="big")[:, :k]
    return flat.astype(np.float32) * 2 - 1


@dataclass(frozen=True)
class BinaryConvView:
    """The core of one eval-mode BinaryConv2d (module docstring gives the equation)."""

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
    pad_value: float = 0.0

    @property
    def fan_in(self) -> int:
        return self.in_channels // self.groups * self.kernel[0] * self.kernel[1]

    def signs(self) -> np.ndarray:
        """The +-1 weights, (C_out, C_in / groups, kh, kw) float32."""
        return unpack_rows(self.bits, self.fan_in).reshape(self.out_channels, -1, *self.kernel)


@dataclass(frozen=True)
class BinaryLinearView:
    """The core of one eval-mode BinaryLinear over (..., N, C) tokens."""

    kind: ClassVar[str] = "linear"
    in_features: int
    out_features: int
    bits: np.ndarray  # uint8 (out, ceil(in / 8))
    weight_scale: np.ndarray
    alpha: float
    beta: np.ndarray

    @property
    def fan_in(self) -> int:
        return self.in_features

    def signs(self) -> np.ndarray:
        """The +-1 weights, (out, in) float32."""
        return unpack_rows(self.bits, self.in_features)


@dataclass(frozen=True)
class Int8View:
    """The core of one eval-mode INT8 layer (conv or linear: the geometry stays with the float op)::

        z = op((q_x - act_zero_point) * act_scale, weight * weight_scale[o])
        q_x = clamp(round_half_even(x / act_scale) + act_zero_point, 0, 255)

    ``weight`` int8 in [-127, 127], the float layer's weight shape; ``weight_scale`` (C_out,).
    """

    kind: ClassVar[str] = "int8"
    weight: np.ndarray
    weight_scale: np.ndarray
    act_scale: float
    act_zero_point: int


LayerView = BinaryConvView | BinaryLinearView
