"""Binary layers for SR networks: quantizers, SCALES re-scaling branches, BinaryConv2d/BinaryLinear;
and the 8-bit layers beside them (:mod:`scales_cli.binary.int8`).

Entry points: :func:`make_binary` (exact-type dispatch), ``BinaryConv2d.from_float``,
``BinaryLinear.from_float``, :data:`PRESETS`, :func:`calibrate`, :class:`LayerMode` and
:func:`layer_mode` (with :func:`quantizers_off` = ``layer_mode(model, LayerMode.OFF)``).
Equations and choices: docs/method.md.
"""

from __future__ import annotations

from scales_cli.binary.calibration import calibrate
from scales_cli.binary.int8 import INT8_LAYERS, Int8Conv2d, Int8Layer, Int8Linear, calibrate_int8, make_int8
from scales_cli.binary.layers import BINARY_LAYERS, BinaryConv2d, BinaryLayer, BinaryLinear, QuantizedLayer, make_binary
from scales_cli.binary.modes import LayerMode, layer_mode, quantizers_off
from scales_cli.binary.options import BinaryOptions
from scales_cli.binary.presets import PRESETS, preset
from scales_cli.binary.protocol import bit_widths, is_binary

__all__ = [
    "BINARY_LAYERS",
    "PRESETS",
    "BinaryConv2d",
    "BinaryLayer",
    "BinaryLinear",
    "BinaryOptions",
    "LayerMode",
    "QuantizedLayer",
    "INT8_LAYERS",
    "Int8Conv2d",
    "Int8Layer",
    "Int8Linear",
    "bit_widths",
    "calibrate",
    "calibrate_int8",
    "is_binary",
    "layer_mode",
    "make_binary",
    "make_int8",
    "preset",
    "quantizers_off",
]
