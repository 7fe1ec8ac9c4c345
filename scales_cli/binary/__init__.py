"""Binary layers for SR networks: quantizers, SCALES re-scaling branches, BinaryConv2d/BinaryLinear.

Entry points: :func:`make_binary` (exact-type dispatch), ``BinaryConv2d.from_float``,
``BinaryLinear.from_float``, :data:`PRESETS`, :func:`calibrate`, :class:`LayerMode` and
:func:`layer_mode` (with :func:`quantizers_off` = ``layer_mode(model, LayerMode.OFF)``).
Equations and choices: docs/method.md.
"""

from __future__ import annotations

from scales_cli.binary.calibration import calibrate
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
    "bit_widths",
    "calibrate",
    "is_binary",
    "layer_mode",
    "make_binary",
    "preset",
    "quantizers_off",
]
