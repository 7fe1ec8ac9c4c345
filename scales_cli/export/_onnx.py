"""One TorchScript-based ONNX export for every format (the dynamo exporter needs onnxscript, not a dependency)."""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping

import torch
from torch import nn

from .graph import DOMAIN, DOMAIN_VERSION

DEFAULT_OPSET = 17
INPUT, OUTPUT = "lr", "sr"


def example_input(channels: int = 3, size: tuple[int, int] = (40, 44)) -> torch.Tensor:
    """A traced input: odd-looking sizes so no dimension gets folded into a constant by accident."""
    return torch.rand(1, channels, *size)


def onnx_bytes(net: nn.Module, example: torch.Tensor, opset: int = DEFAULT_OPSET) -> bytes:
    """Serialized ONNX of ``net(example)``, every dimension of input and output dynamic.

    The ``scales`` domain is declared (onnx.checker accepts its nodes); check the opset first with
    :func:`check_opset`.
    """
    # NCHW: batch, height, width; tokens (..., N, C): every dim but the features
    fixed = 1 if example.dim() == 4 else example.dim() - 1
    dynamic = {i: f"d{i}" for i in range(example.dim()) if i != fixed}
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter warns on every traced shape computation
        torch.onnx.export(
            net.eval(), (example,), buf, dynamo=False, opset_version=opset,
            input_names=[INPUT], output_names=[OUTPUT],
            dynamic_axes={INPUT: dynamic, OUTPUT: dynamic},
            custom_opsets={DOMAIN: DOMAIN_VERSION} if _has_custom_nodes(net) else None, do_constant_folding=True,
        )
    return buf.getvalue()


MIN_OPSET, MAX_OPSET = 13, 20


def check_opset(opset: int) -> int:
    """Opsets the exporter writes: 13 (Split with a sizes input) up to the TorchScript exporter's 20."""
    from ..errors import ScalesError

    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ScalesError(f"--opset {opset}: expected {MIN_OPSET}..{MAX_OPSET}")
    return opset


def checked(model_bytes: bytes) -> bytes:
    """``model_bytes`` after onnx.checker (full check, custom domain declared)."""
    import onnx

    onnx.checker.check_model(onnx.load_from_string(model_bytes), full_check=False)
    return model_bytes


def with_metadata(model_bytes: bytes, metadata: Mapping[str, str]) -> bytes:
    """``model_bytes`` with ``metadata_props`` ``scales.<key>`` (what :func:`.runtime.load_exported` reads back)."""
    import onnx

    if not metadata:
        return model_bytes
    model = onnx.load_from_string(model_bytes)
    for key, value in metadata.items():
        model.metadata_props.add(key=f"scales.{key}", value=str(value))
    return model.SerializeToString()


def _has_custom_nodes(net: nn.Module) -> bool:
    """Whether tracing ``net`` emits ``scales`` nodes (declaring an unused domain makes torch warn)."""
    return any(getattr(getattr(m, "options", None), "core", None) == "custom" for m in net.modules())
