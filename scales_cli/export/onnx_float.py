"""``float`` format: standard ONNX only (binary layers as +-1 float convolutions); any ONNX runtime runs it.

Binary layers are written with their arithmetic spelled out, ``alpha * sign(x - beta)`` (Sub,
GreaterOrEqual, Cast, Mul) into a Conv/MatMul with ``weight_scale * sign(W)`` float weights, so the
file holds 32-bit weights: this is the comparison point for the 1-bit formats, not a deployment one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ._onnx import checked, example_input, onnx_bytes, with_metadata
from .graph import GraphOptions, export_network

OPTIONS = GraphOptions(core="float")


def graph_bytes(net: nn.Module, example: torch.Tensor, opset: int) -> bytes:
    """ONNX of an already converted network or single export module."""
    return checked(onnx_bytes(net, example, opset))


def write(model: nn.Module, target: Path, opset: int, metadata: Mapping[str, str] | None = None) -> list[Path]:
    target.write_bytes(with_metadata(graph_bytes(export_network(model, OPTIONS), example_input(), opset), metadata or {}))
    return [target]
