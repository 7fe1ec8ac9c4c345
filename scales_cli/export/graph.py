"""Torch modules that trace into the exported graphs: each binary layer with its core replaced.

:func:`export_network` deep-copies a student and wraps every binary layer in an :class:`ExportedLayer`
whose forward is ``layer.epilogue(core(x), x)``: the layer's own epilogue (BN, re-scaling, bias,
skip: :meth:`scales_cli.binary.layers.QuantizedLayer.epilogue`) runs as it is, only the core changes:

- ``core="float"``: the layer's own torch core, traced: ``alpha * sign(x - beta)`` (Sub,
  GreaterOrEqual, Where) convolved with the constant-folded ``weight_scale * sign(W)`` (Conv/MatMul),
  standard ONNX only;
- ``core="custom"``: one ``scales::BinaryConv2d`` / ``scales::BinaryLinear`` node (docs/onnx-ops.md)
  holding the packed sign bits; its torch forward is the layer's core, so tracing sees real values.

INT8 layers (:mod:`scales_cli.binary.int8`) are wrapped in :class:`Int8ExportedLayer`, the same in
every format: the core becomes QuantizeLinear -> DequantizeLinear on the input (uint8, per tensor,
the layer's step and zero point) and DequantizeLinear of an int8 weight initializer (per output
channel, zero point 0) feeding the float layer's Conv/MatMul; the epilogue (the bias) runs as it is.
onnxruntime runs the pairs as written; OpenVINO's ONNX frontend turns them into FakeQuantize
(levels 256) on the activation and an i8 Constant -> Convert -> Multiply on the weight, the pattern its
low-precision transformations run as an INT8 convolution.

So the layer's maths exists once in torch (NumPy's :mod:`.reference` is the independent spec of the
nodes), as Brevitas swaps only the quantizer at export.

``spatial_pointwise`` replaces a conv layer's spatial branch (conv C_in -> 1, k x k, then sigmoid) by
:class:`PointwiseSpatial`: a 1x1 conv C_in -> k*k followed by a fixed one-hot k x k conv k*k -> 1, the
same sum in another order (tap (i, j) of the kernel is channel i*k + j of the 1x1 output, and padding
zeros stay zeros through the 1x1 conv). OpenVINO's CPU plugin runs the single-output k x k conv
slowly; the pair is several times faster.
"""

from __future__ import annotations

import copy
import functools
import operator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ScalesError
from .view import BinaryConvView, Int8View, LayerView

DOMAIN = "scales"
DOMAIN_VERSION = 1


class _CoreNode(torch.autograd.Function):
    """One ``scales::<op>`` node (inputs X, bits, scale, alpha, beta, shift; integer ``attrs``) in the
    exported graph; when traced its value is ``z``, the layer's torch core of X computed just before.

    ``z`` is an input rather than computed inside (the tracer cannot follow parameters used in a
    Function's forward); the node does not read it, so the ops that made it leave the graph.
    """

    @staticmethod
    def forward(ctx, x, z, bits, scale, alpha, beta, shift, op, attrs):  # noqa: ANN001, ANN205
        return z.clone()

    @staticmethod
    def symbolic(g, x, z, bits, scale, alpha, beta, shift, op, attrs):  # noqa: ANN001, ANN205
        out = g.op(f"{DOMAIN}::{op}", x, bits, scale, alpha, beta, shift, **{f"{k}_i": v for k, v in attrs})
        # a conv changes every dim but the batch; a linear keeps the token dims (its feature dim is fixed)
        out.setType(x.type().with_sizes([None] * 4) if op == "BinaryConv2d" else x.type())
        return out


class _QuantizeDequantize(torch.autograd.Function):
    """QuantizeLinear(x, s, z) -> DequantizeLinear in the graph; in torch the layer's own activation quantizer.

    ONNX QuantizeLinear is saturate(round_half_even(x / s) + z) on uint8, DequantizeLinear (q - z) s:
    exactly :class:`scales_cli.binary.int8.ActInt8STE`'s forward, which ``quantized`` is.
    """

    @staticmethod
    def forward(ctx, x, quantized, scale, zero_point):  # noqa: ANN001, ANN205
        return quantized.clone()

    @staticmethod
    def symbolic(g, x, quantized, scale, zero_point):  # noqa: ANN001, ANN205
        return g.op("DequantizeLinear", g.op("QuantizeLinear", x, scale, zero_point), scale, zero_point)


class _DequantizeWeight(torch.autograd.Function):
    """DequantizeLinear(W_int8, s_w, 0, axis=0) of an int8 initializer: W_int8[o] * s_w[o]."""

    @staticmethod
    def forward(ctx, levels, scale, zero_point):  # noqa: ANN001, ANN205
        return levels.to(scale.dtype) * scale.reshape(-1, *([1] * (levels.dim() - 1)))

    @staticmethod
    def symbolic(g, levels, scale, zero_point):  # noqa: ANN001, ANN205
        return g.op("DequantizeLinear", levels, scale, zero_point, axis_i=0)


PAIR_SAFE_LEVEL = 64
"""Largest |weight level| for which two u8 x s8 products summed in int16 cannot saturate: 2 * 255 * 64 = 32640."""


def split_levels(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 levels in [-127, 127] as ``high + low``, each within [-64, 64] (:data:`PAIR_SAFE_LEVEL`).

    >>> high, low = split_levels(np.array([-127, -1, 0, 1, 127], dtype=np.int8))
    >>> high.tolist(), low.tolist()
    ([-64, -1, 0, 0, 63], [-63, 0, 0, 1, 64])
    """
    wide = levels.astype(np.int16)
    high = np.floor_divide(wide, 2)
    return high.astype(np.int8), (wide - high).astype(np.int8)


class Int8ExportedLayer(nn.Module):
    """An INT8 layer (``self.layer``, epilogue untouched) whose core is written as QDQ nodes (module docstring).

    ``split``: the core is written as two convolutions of the same quantized input, with weight levels
    ``high`` and ``low`` (:func:`split_levels`), summed. Why: without VNNI (AVX2, AVX-512 without VNNI)
    OpenVINO's INT8 kernels add each pair of u8 x s8 products in int16 with saturation (vpmaddubsw), so
    an input at level 255 against weights near 127 saturates: measured on an AVX2 EPYC, a 1x1 conv with
    inputs at the top level and positive weights came out 0.93-1.08 off outputs of about 5, and mixed students
    failed parity at 28-45 dB. With every |level| <= 64 no pair can saturate, and the integer sums, hence
    the outputs, are those of one convolution (up to the float rounding of one extra addition).
    """

    def __init__(self, layer: nn.Module, view: Int8View, split: bool = False) -> None:
        super().__init__()
        self.layer = layer
        self.register_buffer("act_scale", torch.tensor(view.act_scale, dtype=torch.float32))
        self.register_buffer("act_zero_point", torch.tensor(view.act_zero_point, dtype=torch.uint8))
        parts = split_levels(view.weight) if split else (view.weight,)
        self.level_buffers = tuple(f"weight_levels_{i}" for i in range(len(parts)))
        for name, part in zip(self.level_buffers, parts):
            self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(part)))
        self.register_buffer("weight_scale", torch.from_numpy(view.weight_scale))
        self.register_buffer("weight_zero_point", torch.zeros(view.weight_scale.shape, dtype=torch.int8))

    def core(self, x: Tensor) -> Tensor:
        a = _QuantizeDequantize.apply(x, self.layer.act(x), self.act_scale, self.act_zero_point)
        convs = [self.layer.main_op(a, _DequantizeWeight.apply(getattr(self, name), self.weight_scale, self.weight_zero_point))
                 for name in self.level_buffers]
        return functools.reduce(operator.add, convs)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer.epilogue(self.core(x), x)


def _conv_attrs(view: BinaryConvView) -> tuple[tuple[str, int], ...]:
    (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw) = view.kernel, view.stride, view.padding, view.dilation
    return (("kernel_h", kh), ("kernel_w", kw), ("stride_h", sh), ("stride_w", sw), ("pad_top", pt), ("pad_left", pl),
            ("pad_bottom", pb), ("pad_right", pr), ("dilation_h", dh), ("dilation_w", dw), ("group", view.groups))


@dataclass(frozen=True)
class GraphOptions:
    """How binary layers are written: ``core`` "float" or "custom"; the spatial-branch rewrite; whether INT8
    layers' weights are split into two halves that no int16 pair sum can saturate (:class:`Int8ExportedLayer`)."""

    core: str = "custom"
    spatial_pointwise: bool = False
    int8_split: bool = False


class PointwiseSpatial(nn.Module):
    """sigmoid(conv_{k*k -> 1}(onehot, conv1x1_{C_in -> k*k}(x)) + b): a k x k spatial branch, reordered."""

    def __init__(self, branch: nn.Conv2d) -> None:
        super().__init__()
        k, c_in = branch.kernel_size[0], branch.in_channels
        w = branch.weight.detach()
        # tap t = i * k + j of the 1x1 conv carries w[0, :, i, j]
        self.register_buffer("taps", w[0].reshape(c_in, k * k).T[:, :, None, None].contiguous())
        one_hot = torch.zeros(1, k * k, k, k, dtype=w.dtype)
        for tap in range(k * k):
            one_hot[0, tap, tap // k, tap % k] = 1.0
        self.register_buffer("one_hot", one_hot)
        self.register_buffer("bias", branch.bias.detach().clone())
        self.stride, self.padding = branch.stride, branch.padding

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(F.conv2d(F.conv2d(x, self.taps), self.one_hot, self.bias, self.stride, self.padding))


class ExportedLayer(nn.Module):
    """A binary layer (``self.layer``, its children and epilogue untouched) whose core the graph replaces."""

    def __init__(self, layer: nn.Module, view: LayerView, options: GraphOptions) -> None:
        super().__init__()
        from ..binary.rescale import SpatialRescale2d

        self.layer, self.options = layer, options
        if options.spatial_pointwise and isinstance(getattr(layer, "spatial", None), SpatialRescale2d):
            layer.spatial = PointwiseSpatial(layer.spatial)
        self.op = "BinaryConv2d" if isinstance(view, BinaryConvView) else "BinaryLinear"
        self.attrs = _conv_attrs(view) if isinstance(view, BinaryConvView) else ()
        for name, value in (("bits", view.bits), ("scale", view.weight_scale), ("alpha", np.array([view.alpha])),
                            ("beta", view.beta), ("shift", np.zeros_like(view.weight_scale))):
            dtype = np.uint8 if name == "bits" else np.float32
            self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(value, dtype=dtype)))
        # wbin(W) as a constant: the float graph holds the +-scale weights, not W and the ops that quantize it
        self.register_buffer("quantized_weight", layer.wbin(layer.weight).detach().clone())

    def core(self, x: Tensor) -> Tensor:
        z = self.layer.main_op(self.layer.act(x), self.quantized_weight)  # the layer's core, wbin(W) frozen
        if self.options.core == "float":
            return z
        return _CoreNode.apply(x, z, self.bits, self.scale, self.alpha, self.beta, self.shift, self.op, self.attrs)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer.epilogue(self.core(x), x)


def quantized_views(model: nn.Module) -> list[tuple[str, LayerView | Int8View]]:
    """(module path, core view) of every quantized layer (binary and INT8), in registration order.

    A layer that is not fully quantized (``LayerMode.BINARY``: inside ``quantizers_off`` or a training
    stage) is refused: writing it quantized, or silently as float, would not be the network the user has.
    """
    from ..binary.layers import QuantizedLayer
    from ..binary.modes import LayerMode

    views = []
    for path, module in model.named_modules():
        if isinstance(module, QuantizedLayer):
            if module.mode is not LayerMode.BINARY:
                raise ScalesError(
                    f"layer {path or '(the model)'}: mode {module.mode.value}, export writes quantized layers in mode "
                    "binary only (export outside quantizers_off / layer_mode blocks and training stages)"
                )
            views.append((path, module.export_view()))
    return views


def binary_views(views: list[tuple[str, LayerView | Int8View]]) -> list[tuple[str, LayerView]]:
    """The binary layers' entries of :func:`quantized_views`' result (what BinaryConvolution limits apply to)."""
    return [(p, v) for p, v in views if not isinstance(v, Int8View)]  # type: ignore[misc]


def _wrap(layer: nn.Module, view: LayerView | Int8View, options: GraphOptions) -> nn.Module:
    if isinstance(view, Int8View):
        return Int8ExportedLayer(layer, view, options.int8_split)
    return ExportedLayer(layer, view, options)


def export_network(model: nn.Module, options: GraphOptions) -> nn.Module:
    """An eval-mode copy of ``model`` whose quantized layers' cores are export cores (the input is untouched)."""
    net = copy.deepcopy(model).eval()
    for path, view in quantized_views(net):
        exported = _wrap(net.get_submodule(path), view, options)
        if not path:  # the model is itself one quantized layer
            return exported
        net.set_submodule(path, exported)
    return net


class Probed(nn.Module):
    """``net(x)`` followed by the input and output of each listed layer, in call order (parity diagnosis).

    The same wrapper around the torch student and around the export network traces to graphs whose
    extra outputs line up one for one with torch's.
    """

    def __init__(self, net: nn.Module, paths: list[str]) -> None:
        super().__init__()
        self.net, self.paths = net, list(paths)
        self.calls: list[str] = []  # path of each recorded call, in order (a shared layer appears once per call)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        records: list[Tensor] = []
        self.calls = []

        def hook_for(path: str):  # noqa: ANN202
            def hook(module: nn.Module, args: tuple, out: Tensor) -> None:
                # copies: an in-place op after the layer (CARN-M's ReLU(inplace=True)) would otherwise
                # change the recorded tensor, in eager mode and in the traced graph alike
                records.extend((args[0].clone(), out.clone()))
                self.calls.append(path)

            return hook

        handles = [self.net.get_submodule(p).register_forward_hook(hook_for(p)) for p in self.paths]
        try:
            y = self.net(x)
        finally:
            for h in handles:
                h.remove()
        return (y, *records)
