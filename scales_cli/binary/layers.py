"""Binary conv and linear layers: drop-in subclasses of the float layers they are built from.

A binary layer *is* its float layer (``weight`` and ``bias`` keep their names, so state-dict keys
carry over) with an activation binarizer ``act``, a weight binarizer ``wbin`` and, when the options
enable them, the children ``spatial``, ``channel`` and ``bn``. Its forward is two parts::

    core(x)        z = op(act(x), wbin(W))  = alpha * s[o] * (sign(x - beta) (*) sign(W))   (no bias)
    epilogue(z, x) y = [ BN(z) * s(x) * c + bias ] + x
                               ^ spatial ^ channel   ^ skip

``op`` is the conv (or linear) of the float layer, so the core is the xnor/popcount-equivalent sum
already scaled by the quantizers' alpha and s[o]; the epilogue is everything after it and is the
same method for both layer kinds (a linear layer has no channel branch and no skip). The boundary is
the interface exporters use: they replace :meth:`BinaryLayer.core` by a node that computes the same
``z`` (``scales::BinaryConv2d``, OpenVINO's BinaryConvolution) and run this epilogue as it is, so the
layer's maths exists once in torch (:mod:`scales_cli.export.graph`). A later low-bit layer (INT8)
(:mod:`scales_cli.binary.int8`) fits the same split: its own ``core``, the same ``epilogue`` (the bias alone).

``mode`` (:mod:`scales_cli.binary.modes`) picks which quantizers the core uses; ``LayerMode.OFF``
makes either layer compute exactly the float operation it was built from, epilogue bypassed.

Example::

    >>> conv = nn.Conv2d(16, 16, 3, padding=1)
    >>> layer = BinaryConv2d.from_float(conv, BinaryOptions())
    >>> layer(torch.randn(1, 16, 8, 8)).shape
    torch.Size([1, 16, 8, 8])
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scales_cli.binary.activation import act_statistics, make_activation
from scales_cli.binary.modes import LayerMode, ModedLayer
from scales_cli.binary.options import BinaryOptions
from scales_cli.binary.packing import pack_sign_bits
from scales_cli.binary.protocol import FP_BITS
from scales_cli.binary.rescale import ChannelRescale, SpatialRescale2d, TokenSpatialRescale
from scales_cli.binary.ste import channel_view
from scales_cli.binary.weight import make_weight_binarizer
from scales_cli.errors import RecipeError
from scales_cli.binary.view import BinaryConvView, BinaryLinearView

_BRANCHES = ("spatial", "channel", "bn")


class QuantizedLayer(ModedLayer, metaclass=ABCMeta):
    """A quantized conv/linear = a ``core`` (its own quantizers and main operation) + the shared ``epilogue``.

    The interface exporters and any further quantized layer (INT8 beside the 1-bit ones) rely on:

    - ``core(x) -> z``: the pre-epilogue tensor, no bias; what an exporter replaces by one node;
    - ``epilogue(z, x) -> y``: BN, re-scaling, bias, skip, from ``z`` and the FP input ``x``; never replaced;
    - ``mode``: :class:`LayerMode`; ``OFF`` is the float layer (the next class in the MRO) exactly.

    Subclasses set ``act`` (the input quantizer), ``spatial``, ``channel``, ``channel_from_input``, ``bn``,
    ``skip``, ``bias`` (``None`` for each one absent), the class attribute ``act_channel_dim`` (1 for NCHW,
    -1 for tokens) and define the two abstract methods ``weight_quantizer`` and ``main_op``.
    """

    weight: nn.Parameter
    act: nn.Module
    act_channel_dim: int
    bias: nn.Parameter | None
    spatial: nn.Module | None
    channel: ChannelRescale | None
    channel_from_input: bool
    bn: nn.BatchNorm2d | nn.BatchNorm1d | None
    skip: bool

    @abstractmethod
    def weight_quantizer(self) -> nn.Module:
        """The module that quantizes ``weight`` (1-bit: ``wbin``; 8-bit: ``wq``)."""

    @abstractmethod
    def main_op(self, a: Tensor, w: Tensor) -> Tensor:
        """The float layer's conv/linear of (a, w), no bias: the core's operation on its operands."""

    def bit_widths(self) -> tuple[int, int]:
        """(weight bits, activation bits) of the main operation: each quantizer's bits where the mode uses
        it (binary (1, 1), INT8 (8, 8)), FP (32) where the mode bypasses it."""
        fp_weight, fp_act = FP_BITS
        return (self.weight_quantizer().bits if self.mode.quantizes_weights else fp_weight,
                self.act.bits if self.mode.quantizes_activations else fp_act)

    def operands(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(input, weight) of the main operation: quantized, or FP where the mode bypasses a quantizer."""
        a = self.act(x) if self.mode.quantizes_activations else x
        return a, self.weight_quantizer()(self.weight) if self.mode.quantizes_weights else self.weight

    def core(self, x: Tensor) -> Tensor:
        """z = op(Q_a(x), Q_w(W)), no bias: what an exporter replaces (a binary layer: one ``scales::``
        node / BinaryConvolution, alpha * s[o] * sum of +-1 products; an INT8 layer: QDQ pairs around the
        float op). Everything after it is :meth:`epilogue`."""
        return self.main_op(*self.operands(x))

    def _normalise(self, z: Tensor) -> Tensor:
        """BN over the output channels: NCHW as it is; tokens (..., C) with every token of every item pooled."""
        if self.act_channel_dim == 1:
            return self.bn(z)  # type: ignore[misc]
        return self.bn(z.reshape(-1, z.shape[-1])).reshape(z.shape)  # type: ignore[misc]

    def forward(self, x: Tensor) -> Tensor:
        if self.mode is LayerMode.OFF:
            return super().forward(x)  # type: ignore[misc]  # the float layer that follows in the MRO
        return self.epilogue(self.core(x), x)

    def epilogue(self, z: Tensor, x: Tensor) -> Tensor:
        """y from the core's z and the layer's FP input x, in this order::

            z = BN(z)                                     if options.batchnorm (eval: running stats)
            c = channel(x if channel_from_input else z)   channel factor, from the pre-spatial z
            z = z * spatial(x) * c
            y = z + bias (+ x when skip)
        """
        if self.bn is not None:
            z = self._normalise(z)
        channel = None
        if self.channel is not None:
            channel = self.channel(x if self.channel_from_input else z)
        if self.spatial is not None:
            z = z * self.spatial(x)
        if channel is not None:
            z = z * channel
        if self.bias is not None:
            z = z + channel_view(self.bias, z.ndim, self.act_channel_dim).to(z.dtype)  # bf16 autocast: stays bf16
        return z + x if self.skip else z


class BinaryLayer(QuantizedLayer):
    """What BinaryConv2d and BinaryLinear share: the binary core, bit widths, views, calibration.

    Subclasses set what :class:`QuantizedLayer` asks, ``act`` and ``wbin``, and define ``main_op``.
    """

    wbin: nn.Module

    def weight_quantizer(self) -> nn.Module:
        return self.wbin

    def input_codes(self, x: Tensor) -> Tensor:
        """1 where the binarized input is +1 (x - beta >= 0), else 0: parity counts where these change."""
        beta = self.act.core_constants().get("beta")
        if beta is None:
            return (x >= 0).to(x.dtype)
        return ((x - channel_view(beta.to(x), x.ndim, self.act_channel_dim)) >= 0).to(x.dtype)

    def packed_weight_bits(self) -> Tensor:
        """Sign bits of ``weight``, uint8 (C_out, ceil(K / 8)) on the CPU; layout in :mod:`scales_cli.binary.packing`."""
        return pack_sign_bits(self.weight)

    def _core_parts(self) -> dict:
        """The core's constants both views share, float32 NumPy (see :mod:`scales_cli.binary.view`)."""
        c_in = self.weight.shape[1] * getattr(self, "groups", 1)
        act = self.act.core_constants()
        alpha = float(act["alpha"].reshape(-1)[0]) if "alpha" in act else 1.0
        beta = act["beta"] if "beta" in act else torch.zeros(c_in)
        return {
            "bits": self.packed_weight_bits().numpy(),
            "weight_scale": _np(self.wbin.scale(self.weight)),
            "alpha": alpha,
            "beta": _np(beta),
        }

    def set_act_statistics(self, beta: Tensor, alpha: Tensor) -> bool:
        """Give the activation binarizer its threshold (C_in,) and scale; False if it has none."""
        setter = getattr(self.act, "set_statistics", None)
        if setter is None:
            return False
        setter(beta, alpha)
        return True

    @torch.no_grad()
    def calibrate_from(self, x: Tensor) -> bool:
        """Set beta and alpha from one FP input batch x (see :mod:`scales_cli.binary.calibration`).

        beta_c = mean of x over every dim but the channel dim; alpha = mean |x - beta|.
        """
        beta, alpha = act_statistics([x], self.act_channel_dim)
        return self.set_act_statistics(beta.to(self.weight), alpha.to(self.weight))

    def extra_repr(self) -> str:
        # super() is the float layer that follows this mixin in the MRO (nn.Conv2d / nn.Linear)
        return f"{super().extra_repr()}, {self._summary()}"  # type: ignore[misc]

    def _summary(self) -> str:
        parts = [f"act={type(self.act).__name__}", f"wbin={type(self.wbin).__name__}"]
        parts += [name for name in _BRANCHES if getattr(self, name) is not None]
        if getattr(self, "skip", False):
            parts.append("skip")
        return ", ".join(parts)


def _size_offset(conv: nn.Conv2d) -> tuple[int, int]:
    """Per spatial dim, 2P - D(K - 1): output size = floor((H - 1 + offset) / S) + 1; 0 for "same" convs."""
    if conv.padding == "same":
        return (0, 0)
    padding = (0, 0) if conv.padding == "valid" else conv.padding
    return tuple(2 * p - d * (k - 1) for p, d, k in zip(padding, conv.dilation, conv.kernel_size))  # type: ignore[return-value]


def _odd(value: int, what: str) -> int:
    if value < 1 or value % 2 == 0:
        raise RecipeError(f"{what} must be an odd positive integer, got {value}")
    return value


def _spatial_padding(conv: nn.Conv2d, kernel: int) -> tuple[int, int]:
    """Padding p of the k x k spatial branch so that its output size equals the binary conv's.

    Matching floor((H + 2p - k) / S) + 1 with floor((H - 1 + offset) / S) + 1 gives
    p = (k - 1 + offset) / 2, which must be a non-negative integer (p = k // 2 for "same" convs).
    """
    pads = []
    for offset in _size_offset(conv):
        if offset % 2 or kernel - 1 + offset < 0:
            raise RecipeError(
                f"spatial re-scaling cannot match the output size of a conv with kernel {conv.kernel_size}, "
                f"padding {conv.padding}, dilation {conv.dilation}; set spatial: false for this layer"
            )
        pads.append((kernel - 1 + offset) // 2)
    return (pads[0], pads[1])


class BinaryConv2d(BinaryLayer, nn.Conv2d):
    """Binary 2-D convolution with SCALES scalings; any kernel, stride, padding, dilation, groups.

    core, with xb = act(x), Wb = wbin(W):
        z = conv(xb, Wb)                     (no bias; zero padding adds 0s around the +-alpha map)
    epilogue (:meth:`QuantizedLayer.epilogue`):
        z = BN(z)                            if options.batchnorm
        z = z * s(x)                         spatial: s = sigmoid(conv_{C_in->1,k}(x)), (B, 1, H', W')
        z = z * c                            channel: c = sigmoid(conv1d_5(GAP(x)))  if C_in == C_out
                                                      c = sigmoid(conv1d_5(GAP(z)))  otherwise (pre-spatial z)
        y = z + bias + x                     skip only when C_in == C_out, stride 1 and H' = H, W' = W
    """

    act_channel_dim = 1

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        options: BinaryOptions = BinaryOptions(),
    ) -> None:
        if padding_mode != "zeros":
            raise RecipeError(f"binary conv supports padding_mode 'zeros' only, got {padding_mode!r}")
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode, device, dtype
        )
        self.options = options
        self.act = make_activation(in_channels, self.act_channel_dim, options)
        self.wbin = make_weight_binarizer(options.weight, self.weight)
        self.spatial: SpatialRescale2d | None = None
        if options.spatial:
            kernel = _odd(options.spatial_kernel, "spatial_kernel")
            self.spatial = SpatialRescale2d(in_channels, kernel, self.stride, _spatial_padding(self, kernel))
        self.channel: ChannelRescale | None = None
        if options.channel:
            self.channel = ChannelRescale(_odd(options.channel_kernel, "channel_kernel"))
        self.channel_from_input = in_channels == out_channels
        self.bn: nn.BatchNorm2d | None = nn.BatchNorm2d(out_channels) if options.batchnorm else None
        self.skip = (
            options.skip and in_channels == out_channels and self.stride == (1, 1) and _size_offset(self) == (0, 0)
        )
        for child in (self.act, self.spatial, self.channel, self.bn):
            if child is not None:
                child.to(device=device, dtype=dtype)

    @classmethod
    def from_float(cls, conv: nn.Conv2d, options: BinaryOptions) -> BinaryConv2d:
        """A binary copy of ``conv``: same geometry, same ``weight``/``bias`` values, device and dtype."""
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,  # type: ignore[arg-type]
            conv.stride,  # type: ignore[arg-type]
            conv.padding,  # type: ignore[arg-type]
            conv.dilation,  # type: ignore[arg-type]
            conv.groups,
            conv.bias is not None,
            conv.padding_mode,
            conv.weight.device,
            conv.weight.dtype,
            options=options,
        )
        copy_float_parameters(conv, layer)
        layer.wbin.start_from(layer.weight)
        return layer

    def main_op(self, a: Tensor, w: Tensor) -> Tensor:
        return self._conv_forward(a, w, None)  # zero padding adds 0s around the +-alpha map

    def export_view(self) -> BinaryConvView:
        """This layer's core as a frozen view: geometry, packed bits, scales, threshold."""
        kh, kw = self.kernel_size
        return BinaryConvView(
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            kernel=(kh, kw),
            stride=tuple(self.stride),  # type: ignore[arg-type]
            padding=_explicit_padding(self),
            dilation=tuple(self.dilation),  # type: ignore[arg-type]
            groups=self.groups,
            **self._core_parts(),
        )


def _explicit_padding(conv: nn.Conv2d) -> tuple[int, int, int, int]:
    """(top, left, bottom, right): "same" puts the odd pixel at the end, as torch does."""
    if conv.padding == "valid":
        return (0, 0, 0, 0)
    if conv.padding == "same":
        total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
        return (total[0] // 2, total[1] // 2, total[0] - total[0] // 2, total[1] - total[1] // 2)
    ph, pw = conv.padding  # type: ignore[misc]
    return (ph, pw, ph, pw)


def _np(t: Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).cpu().numpy().copy()


class BinaryLinear(BinaryLayer, nn.Linear):
    """Binary linear layer for (B, N, C) or (N, C) inputs with SCALES token re-scaling.

    core z = act(x) @ wbin(W)^T; epilogue y = BN(z) * s(x) + bias, s = sigmoid(Linear_{C->1}(x)) per token.
    ``options.channel`` and ``options.skip`` do not apply (:data:`INAPPLICABLE` says why): presets' values
    are not used here, and a recipe that sets either true for a linear layer is refused
    (:func:`refuse_inapplicable`). BN (if enabled) normalises the out_features of all tokens together.
    """

    act_channel_dim = -1

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        options: BinaryOptions = BinaryOptions(),
    ) -> None:
        super().__init__(in_features, out_features, bias, device, dtype)
        self.options = options
        self.act = make_activation(in_features, self.act_channel_dim, options)
        self.wbin = make_weight_binarizer(options.weight, self.weight)
        self.spatial: TokenSpatialRescale | None = TokenSpatialRescale(in_features) if options.spatial else None
        self.channel = None
        self.channel_from_input = False
        self.bn: nn.BatchNorm1d | None = nn.BatchNorm1d(out_features) if options.batchnorm else None
        self.skip = False
        for child in (self.act, self.spatial, self.bn):
            if child is not None:
                child.to(device=device, dtype=dtype)

    @classmethod
    def from_float(cls, linear: nn.Linear, options: BinaryOptions) -> BinaryLinear:
        """A binary copy of ``linear`` with the same ``weight``/``bias`` values, device and dtype."""
        layer = cls(
            linear.in_features,
            linear.out_features,
            linear.bias is not None,
            linear.weight.device,
            linear.weight.dtype,
            options=options,
        )
        copy_float_parameters(linear, layer)
        layer.wbin.start_from(layer.weight)
        return layer

    def main_op(self, a: Tensor, w: Tensor) -> Tensor:
        return F.linear(a, w)

    def export_view(self) -> BinaryLinearView:
        """This layer's core as a frozen view: packed bits, scales, threshold."""
        return BinaryLinearView(in_features=self.in_features, out_features=self.out_features, **self._core_parts())


def copy_float_parameters(source: nn.Module, layer: nn.Module) -> None:
    """``weight``/``bias`` values, their requires_grad and the train flag of ``source`` into its quantized copy."""
    with torch.no_grad():
        for name in ("weight", "bias"):
            src, dst = getattr(source, name), getattr(layer, name)
            if src is not None:
                dst.copy_(src)
                dst.requires_grad_(src.requires_grad)
    layer.train(source.training)


BINARY_LAYERS: dict[type[nn.Module], Callable[[nn.Module, BinaryOptions], nn.Module]] = {
    nn.Conv2d: BinaryConv2d.from_float,  # type: ignore[dict-item]
    nn.Linear: BinaryLinear.from_float,  # type: ignore[dict-item]
}
"""Exact float type -> binary constructor. Subclasses (including binary layers) are not matched."""


INAPPLICABLE: dict[str, dict[str, str]] = {
    "linear": {
        "channel": "LayerNorm before every linear of a Transformer block already removes channel-to-channel "
        "variation (paper III-B)",
        "skip": "the Transformer block has its own residuals around its linears",
    },
}
"""Layer type (the recipe selector's name) -> options its binary layer does not apply, and why. A preset's
value (``skip`` is on in most) is a default for the layers it fits; a recipe that writes one of these
``true`` for such a layer is refused instead of being silently ignored."""


def refuse_inapplicable(layer_type: str, given: Mapping[str, object]) -> None:
    """RecipeError when ``given`` (the options a recipe writes for a layer) sets one its type ignores."""
    for option, why in INAPPLICABLE.get(layer_type, {}).items():
        if given.get(option) is True:
            raise RecipeError(
                f"options.{option}: true does not apply to a {layer_type} layer ({why}); "
                f"set {option}: false for this rule, or select conv2d layers only"
            )


def make_binary(module: nn.Module, options: BinaryOptions) -> nn.Module:
    """The binary replacement of ``module``, dispatched on its exact type through BINARY_LAYERS."""
    factory = BINARY_LAYERS.get(type(module))
    if factory is None:
        known = ", ".join(f"{cls.__module__}.{cls.__qualname__}" for cls in BINARY_LAYERS)
        raise RecipeError(f"cannot binarize {type(module).__qualname__}: binary layers exist for exactly {known}")
    return factory(module, options)
