"""The exporters' view of binary layers: the frozen dataclasses live beside the layers that make them
(:mod:`scales_cli.binary.view`, so data flows from ``binary`` up to ``export``): this module is
where the exporters import them from."""

from __future__ import annotations

from ..binary.view import BinaryConvView, BinaryLinearView, Int8View, LayerView, unpack_rows

__all__ = ["BinaryConvView", "BinaryLinearView", "Int8View", "LayerView", "unpack_rows"]
