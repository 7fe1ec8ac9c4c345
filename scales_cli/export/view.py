"""The exporters' view of binary layers: the frozen dataclasses live beside the layers that make them
(:mod:`scales_cli.binary.view`, so data flows from ``binary`` up to ``export``): this module is
where the exporters import them from."""

from __future__ import annotations

from ..binary.view import ORDER, BinaryConvView, BinaryLinearView, ChannelBranch, LayerView, SpatialBranch, unpack_rows

__all__ = ["ORDER", "BinaryConvView", "BinaryLinearView", "ChannelBranch", "LayerView", "SpatialBranch", "unpack_rows"]
