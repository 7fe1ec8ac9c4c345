"""Torch modules that trace into the exported graphs: each binary layer rebuilt from its export view.

:func:`export_network` deep-copies a student and swaps every binary layer for an
:class:`ExportBinaryConv2d` / :class:`ExportBinaryLinear` whose forward uses only ops that the
TorchScript ONNX exporter maps to standard nodes, except for the binary core, which is either

- ``core="float"``: ``alpha * sign(x - beta)`` convolved with the ``weight_scale * sign(W)`` floats
  (standard ONNX: Sub, GreaterOrEqual, Cast, Mul, Conv/MatMul), the same arithmetic as the torch layer;
- ``core="custom"``: one ``scales::BinaryConv2d`` / ``scales::BinaryLinear`` node (docs/onnx-ops.md)
  holding the packed sign bits; its torch forward is the float core, so tracing sees real values.

``spatial_pointwise`` rewrites the spatial branch conv (C_in -> 1, k x k) as a 1x1 conv C_in -> k*k
followed by a fixed one-hot k x k conv k*k -> 1: the same sum in another order (tap (i, j) of the
kernel is channel i*k + j of the 1x1 output, and padding zeros stay zeros through the 1x1 conv).
OpenVINO's CPU plugin runs the single-output k x k conv slowly; the pair is several times faster.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .view import BinaryConvView, BinaryLinearView, LayerView

DOMAIN = "scales"
DOMAIN_VERSION = 1


def _buffer(module: nn.Module, name: str, value: np.ndarray | None) -> None:
    module.register_buffer(name, None if value is None else torch.from_numpy(np.ascontiguousarray(value)))


def folded_shift(view: LayerView) -> tuple[np.ndarray, np.ndarray, bool]:
    """(weight_scale', shift, bias_folded): the core's per-output-channel multiplier and addend.

    BatchNorm folds into the core (scale * bn_scale, shift bn_shift); the layer bias is folded into
    the shift only when no re-scaling branch multiplies after it.
    """
    scale = view.weight_scale.astype(np.float32)
    shift = np.zeros_like(scale)
    if view.bn_scale is not None and view.bn_shift is not None:
        scale = scale * view.bn_scale
        shift = view.bn_shift.astype(np.float32)
    fold_bias = view.bias is not None and view.spatial is None and view.channel is None
    if fold_bias:
        shift = shift + view.bias
    return scale.astype(np.float32), shift.astype(np.float32), fold_bias


class _BinaryConvCore(torch.autograd.Function):
    """Float evaluation of scales::BinaryConv2d when traced; one custom node when exported."""

    @staticmethod
    def forward(ctx, x, bits, signs, scale, alpha, beta, shift, geometry):  # noqa: ANN001, ANN205
        _kernel, stride, padding, dilation, groups = geometry
        xb = _binarize(x, beta.reshape(1, -1, 1, 1))
        xb = F.pad(xb, (padding[1], padding[3], padding[0], padding[2]))
        z = F.conv2d(xb, signs, None, stride, 0, dilation, groups)
        return z * (alpha * scale).reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)

    @staticmethod
    def symbolic(g, x, bits, signs, scale, alpha, beta, shift, geometry):  # noqa: ANN001, ANN205
        kernel, (sh, sw), (pt, pl, pb, pr), (dh, dw), groups = geometry
        out = g.op(
            f"{DOMAIN}::BinaryConv2d", x, bits, scale, alpha, beta, shift,
            kernel_h_i=kernel[0], kernel_w_i=kernel[1], stride_h_i=sh, stride_w_i=sw,
            pad_top_i=pt, pad_left_i=pl, pad_bottom_i=pb, pad_right_i=pr,
            dilation_h_i=dh, dilation_w_i=dw, group_i=groups,
        )
        out.setType(x.type().with_sizes([None] * 4))
        return out


class _BinaryLinearCore(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bits, signs, scale, alpha, beta, shift):  # noqa: ANN001, ANN205
        return F.linear(_binarize(x, beta), signs) * (alpha * scale) + shift

    @staticmethod
    def symbolic(g, x, bits, signs, scale, alpha, beta, shift):  # noqa: ANN001, ANN205
        out = g.op(f"{DOMAIN}::BinaryLinear", x, bits, scale, alpha, beta, shift)
        out.setType(x.type())
        return out


def _binarize(x: Tensor, beta: Tensor) -> Tensor:
    """sign(x - beta) with sign(0) = +1, as +-1 floats (the same expression as binary.ste.hard_sign)."""
    return (x - beta >= 0).to(x.dtype) * 2 - 1


@dataclass(frozen=True)
class GraphOptions:
    """How binary layers are written: ``core`` "float" or "custom"; the spatial-branch rewrite."""

    core: str = "custom"
    spatial_pointwise: bool = False


def _core_buffers(module: nn.Module, view: BinaryConvView | BinaryLinearView, bias_shape: tuple[int, ...]) -> bool:
    """The buffers every exported binary layer holds (bits, signs, scale, alpha, beta, shift, bias);
    returns whether the bias was folded into the shift."""
    scale, shift, bias_folded = folded_shift(view)
    _buffer(module, "bits", view.bits)
    _buffer(module, "signs", view.signs())
    _buffer(module, "scale", scale)
    _buffer(module, "alpha", np.array([view.alpha], dtype=np.float32))
    _buffer(module, "beta", view.beta.astype(np.float32))
    _buffer(module, "shift", shift)
    _buffer(module, "bias", None if view.bias is None or bias_folded else view.bias.reshape(bias_shape))
    return bias_folded


class ExportBinaryConv2d(nn.Module):
    """A BinaryConv2d rebuilt from its view (equations in :mod:`scales_cli.export.view`)."""

    def __init__(self, view: BinaryConvView, path: str, options: GraphOptions) -> None:
        super().__init__()
        self.view, self.path, self.options = view, path, options
        self.bias_folded = _core_buffers(self, view, bias_shape=(1, -1, 1, 1))
        self.geometry = (view.kernel, view.stride, view.padding, view.dilation, view.groups)
        if view.spatial is not None:
            sp = view.spatial
            if options.spatial_pointwise:
                k = sp.kernel
                # tap t = i * k + j of the 1x1 conv carries w[0, :, i, j]
                _buffer(self, "spatial_pointwise", sp.weight[0].reshape(view.in_channels, k * k).T[:, :, None, None].copy())
                one_hot = np.zeros((1, k * k, k, k), dtype=np.float32)
                for tap in range(k * k):
                    one_hot[0, tap, tap // k, tap % k] = 1.0
                _buffer(self, "spatial_weight", one_hot)
            else:
                _buffer(self, "spatial_weight", sp.weight)
            _buffer(self, "spatial_bias", sp.bias)
        if view.channel is not None:
            _buffer(self, "channel_weight", view.channel.weight.reshape(1, 1, -1))

    def core(self, x: Tensor) -> Tensor:
        if self.options.core == "custom":
            return _BinaryConvCore.apply(x, self.bits, self.signs, self.scale, self.alpha, self.beta, self.shift, self.geometry)
        xb = _binarize(x, self.beta.reshape(1, -1, 1, 1)) * self.alpha
        _kernel, stride, (pt, pl, pb, pr), dilation, groups = self.geometry
        if (pt, pl) == (pb, pr):
            z = F.conv2d(xb, self.signs * self.scale.reshape(-1, 1, 1, 1), None, stride, (pt, pl), dilation, groups)
        else:
            z = F.conv2d(F.pad(xb, (pl, pr, pt, pb)), self.signs * self.scale.reshape(-1, 1, 1, 1), None, stride, 0, dilation, groups)
        return z + self.shift.reshape(1, -1, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        view = self.view
        z = self.core(x)
        channel = None
        if view.channel is not None:
            t = x if view.channel.from_input else z
            pooled = t.mean(dim=(2, 3)).unsqueeze(1)
            k = view.channel.kernel
            channel = torch.sigmoid(F.conv1d(pooled, self.channel_weight, None, 1, k // 2)).reshape(t.shape[0], -1, 1, 1)
        if view.spatial is not None:
            sp = view.spatial
            if self.options.spatial_pointwise:
                taps = F.conv2d(x, self.spatial_pointwise)
                logit = F.conv2d(taps, self.spatial_weight, self.spatial_bias, sp.stride, sp.padding)
            else:
                logit = F.conv2d(x, self.spatial_weight, self.spatial_bias, sp.stride, sp.padding)
            z = z * torch.sigmoid(logit)
        if channel is not None:
            z = z * channel
        if self.bias is not None:
            z = z + self.bias
        return z + x if view.skip else z


class ExportBinaryLinear(nn.Module):
    """A BinaryLinear rebuilt from its view: tokens (..., N, C)."""

    def __init__(self, view: BinaryLinearView, path: str, options: GraphOptions) -> None:
        super().__init__()
        self.view, self.path, self.options = view, path, options
        self.bias_folded = _core_buffers(self, view, bias_shape=(-1,))
        if view.spatial is not None:
            _buffer(self, "spatial_weight", view.spatial.weight)
            _buffer(self, "spatial_bias", view.spatial.bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.options.core == "custom":
            z = _BinaryLinearCore.apply(x, self.bits, self.signs, self.scale, self.alpha, self.beta, self.shift)
        else:
            z = F.linear(_binarize(x, self.beta) * self.alpha, self.signs * self.scale.reshape(-1, 1)) + self.shift
        if self.view.spatial is not None:
            z = z * torch.sigmoid(F.linear(x, self.spatial_weight, self.spatial_bias))
        return z + self.bias if self.bias is not None else z


def binary_views(model: nn.Module) -> list[tuple[str, LayerView]]:
    """(module path, view) of every quantizing binary layer, in registration order."""
    from ..binary.layers import BinaryLayer

    return [(p, m.export_view()) for p, m in model.named_modules() if isinstance(m, BinaryLayer) and m.quantize]


def export_module(view: LayerView, path: str, options: GraphOptions) -> nn.Module:
    return (ExportBinaryConv2d if isinstance(view, BinaryConvView) else ExportBinaryLinear)(view, path, options)  # type: ignore[arg-type]


def export_network(model: nn.Module, options: GraphOptions) -> nn.Module:
    """An eval-mode copy of ``model`` whose binary layers are export modules (the input is untouched)."""
    net = copy.deepcopy(model).eval()
    for path, view in binary_views(net):
        if not path:  # the model is itself one binary layer
            return export_module(view, path, options)
        net.set_submodule(path, export_module(view, path, options))
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
