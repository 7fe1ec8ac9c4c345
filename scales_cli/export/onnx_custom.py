"""``scales`` format: ONNX where each binary layer's core is one node of the custom domain ``scales``.

``scales::BinaryConv2d`` / ``scales::BinaryLinear`` (specified in docs/onnx-ops.md) take the FP
input, the packed sign bits (uint8, 1 bit per weight), the per-output-channel multiplier, alpha,
the per-input-channel threshold beta and a per-output-channel shift. Re-scaling branches, the bias
after them and the skip are standard nodes around it, so any runtime that implements the two ops
runs the whole graph; :mod:`.reference` does that for onnxruntime.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ._onnx import checked, example_input, onnx_bytes, with_metadata
from .graph import GraphOptions, export_network

OPTIONS = GraphOptions(core="custom")


def graph_bytes(net: nn.Module, example: torch.Tensor, opset: int) -> bytes:
    return checked(onnx_bytes(net, example, opset))


def write(model: nn.Module, target: Path, opset: int, metadata: Mapping[str, str] | None = None) -> list[Path]:
    target.write_bytes(with_metadata(graph_bytes(export_network(model, OPTIONS), example_input(), opset), metadata or {}))
    return [target]
