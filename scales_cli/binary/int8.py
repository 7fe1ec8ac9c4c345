"""INT8 fake quantization beside the 1-bit binarizers: quantizers, ``Int8Conv2d``/``Int8Linear``, range calibration.

An INT8 layer *is* its float layer (``weight``/``bias`` keep their names, so state-dict keys carry
over) with an activation quantizer ``act`` (state-dict keys ``act.scale``, ``act.zero_point``) and a
parameter-free weight quantizer ``wq``::

    Int8Conv2d:  y = conv(Q_a(x), Q_w(W)) + bias          Int8Linear:  y = Q_a(x) @ Q_w(W)^T + bias

Like a binary layer it is a :class:`~scales_cli.binary.layers.QuantizedLayer`: ``core`` is the
quantized conv/linear without bias, the shared ``epilogue`` adds the bias (an INT8 layer has no
branch or skip), so exporters swap the core alone. ``mode`` (:mod:`scales_cli.binary.modes`) is the
one state field: ``LayerMode.OFF`` (``layer_mode``/``quantizers_off``) makes the layer compute exactly
the float operation it was built from; calibration runs the model that way.

**Weights** — per output channel o, symmetric, narrow range [-127, 127] (what ONNX QDQ S8 weights and
OpenVINO's weight FakeQuantize with levels=255 express)::

    s_o = max|W_o| / 127                     (recomputed from W at every step, detached)
    Q_w(W)_o = s_o * clamp(round(W_o / s_o), -127, 127)
    dL/dW = dL/dQ_w * 1{|W| <= 127 s}        (= dL/dQ_w: the max-based scale never clips)

Recomputed rather than learned: at 8 bits the max-based step loses at most s_o / 2 per weight, the
distillation trains W itself, and export needs no tensor besides W.

**Activations** — per tensor, asymmetric unsigned 8 bits (levels 0..255 with an integer zero point),
because SR feature maps are one-sided after (Leaky)ReLU and the RGB input is [0, 1], yet the residual
sums entering many convs are signed: a learned zero point serves both, where a symmetric code would
waste one bit on the one-sided maps. With step s = max(|a|, 1e-8) (``act.scale`` stores a) and zero
point z = clamp(round(p), 0, 255) (``act.zero_point`` stores p), u = x / s::

    q = clamp(round(u) + z, 0, 255)          (torch.round is half-to-even, as the runtimes round)
    Q_a(x) = (q - z) * s                     (exactly ONNX QuantizeLinear(uint8) -> DequantizeLinear)

Backward (LSQ+ with the zero point passed straight through its rounding); "inside" = 0 <= round(u) + z <= 255::

    dL/dx = g * 1{inside}
    dL/ds = sum g * (round(u) - u)     inside       (LSQ: the rounding error the step absorbs)
                    (-z)               below        (output pinned at -z s)
                    (255 - z)          above        (output pinned at (255 - z) s)
    dL/dp = sum g * (-s)               outside, 0 inside (z cancels in (q - z) s)

LSQ's 1/sqrt(N Q_p) gradient scale is not applied, as for the binarizers (Adam's step size owns it).
The range is calibrated from data (:func:`calibrate_int8`: "percentile" or "mse") and then trained
by ``scales finetune`` with the other side parameters.

>>> conv = nn.Conv2d(8, 8, 3, padding=1)
>>> layer = Int8Conv2d.from_float(conv)
>>> layer.bit_widths()
(8, 8)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd import Function

from scales_cli.binary._registry import lookup
from scales_cli.binary.layers import QuantizedLayer, copy_float_parameters
from scales_cli.binary.view import Int8View
from scales_cli.errors import RecipeError

WEIGHT_QMAX = 127  # symmetric narrow range [-127, 127]
ACT_QMAX = 255  # unsigned levels 0..255
STEP_FLOOR = 1e-8  # the smallest quantization step (weight scale, activation level): a dead channel still divides
INT8_BITS: tuple[int, int] = (8, 8)
TIE_TOLERANCE = 1e-3  # |frac(x / s) - 0.5| below which a runtime may round to the other level (parity)


class WeightInt8STE(Function):
    """forward: Wq = s * clamp(round(W / s), -127, 127), s per output channel (detached);
    backward: dL/dW = g * 1{|W| <= 127 s}."""

    @staticmethod
    def forward(ctx: Any, w: Tensor, scale: Tensor) -> Tensor:
        s = scale.reshape(-1, *([1] * (w.ndim - 1)))
        ctx.save_for_backward(w.abs() <= WEIGHT_QMAX * s)
        return torch.clamp(torch.round(w / s), -WEIGHT_QMAX, WEIGHT_QMAX) * s

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (inside,) = ctx.saved_tensors
        return torch.where(inside, grad, 0.0), None


class ActInt8STE(Function):
    """Asymmetric per-tensor uint8 fake quantizer with LSQ+ gradients (module docstring: formulas).

    ``scale`` (1,) is the positive step s; ``zero_point`` (1,) the raw p, rounded and clamped here.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
        z = torch.clamp(torch.round(zero_point), 0, ACT_QMAX)
        u = x / scale
        r = torch.round(u)
        level = r + z
        below, above = level < 0, level > ACT_QMAX
        ctx.save_for_backward(r - u, below, above, scale, z)
        return (torch.clamp(level, 0, ACT_QMAX) - z) * scale

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        rounding, below, above, scale, z = ctx.saved_tensors
        outside = below | above
        grad_x = torch.where(outside, 0.0, grad)
        ds = torch.where(below, -z, torch.where(above, ACT_QMAX - z, rounding))
        grad_scale = (grad * ds).sum().reshape(scale.shape)
        grad_zero = (torch.where(outside, grad, 0.0).sum() * -scale).reshape(scale.shape)
        return grad_x, grad_scale, grad_zero


class Int8Weight(nn.Module):
    """Per-output-channel symmetric 8-bit weight quantizer; no parameters (the scale follows W)."""

    bits = 8

    def scale(self, w: Tensor) -> Tensor:
        """s_o = max|W_o| / 127, shape (C_out,), detached (an all-zero channel gets the floor)."""
        return (w.detach().abs().reshape(w.shape[0], -1).amax(dim=1) / WEIGHT_QMAX).clamp_min(STEP_FLOOR)

    def forward(self, w: Tensor) -> Tensor:
        return WeightInt8STE.apply(w, self.scale(w))


class Int8Activation(nn.Module):
    """Per-tensor asymmetric uint8 activation quantizer with a learned step and zero point.

    Before calibration the range is [-1, 1) (s = 2/255, z = 128): a placeholder, not a choice;
    ``scales binarize --calibrate`` sets it from data.
    """

    bits = 8

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((1,), 2.0 / ACT_QMAX))
        self.zero_point = nn.Parameter(torch.full((1,), 128.0))

    def step(self) -> Tensor:
        """The positive step s = max(|a|, 1e-8), shape (1,)."""
        return self.scale.abs().clamp_min(STEP_FLOOR)

    def integer_zero_point(self) -> Tensor:
        """z = clamp(round(p), 0, 255), shape (1,), detached."""
        return torch.clamp(torch.round(self.zero_point.detach()), 0, ACT_QMAX)

    def forward(self, x: Tensor) -> Tensor:
        # float32 even under bf16 autocast: bf16 holds no fraction above 128 levels, so round() would see none
        return ActInt8STE.apply(x.float(), self.step(), self.zero_point)

    @torch.no_grad()
    def set_range(self, low: float, high: float) -> None:
        """s = (high - low) / 255 and z = round(-low / s) for a range widened to hold 0 exactly.

        0 must be a level (zero padding and ReLU zeros are exact), so the range is first stretched to
        [min(low, 0), max(high, 0)].
        """
        low, high = min(float(low), 0.0), max(float(high), 0.0)
        step = max((high - low) / ACT_QMAX, STEP_FLOOR)
        self.scale.fill_(step)
        self.zero_point.fill_(min(max(round(-low / step), 0), ACT_QMAX))

    def range(self) -> tuple[float, float]:
        """The dequantized range [(0 - z) s, (255 - z) s]."""
        s, z = float(self.step().detach()), float(self.integer_zero_point())
        return -z * s, (ACT_QMAX - z) * s

    def extra_repr(self) -> str:
        low, high = self.range()
        return f"range=[{low:.4g}, {high:.4g}]"


class Int8Layer(QuantizedLayer):
    """What Int8Conv2d and Int8Linear share: the INT8 core, bit widths, the export view.

    A :class:`QuantizedLayer` like the binary layers: ``core(x) = op(Q_a(x), Q_w(W))`` (no bias) and the
    shared epilogue, which for an INT8 layer is the bias alone (no BN, re-scaling branch or skip). Its
    ``mode`` is the one field of :mod:`scales_cli.binary.modes`: ``BINARY`` means "every quantizer on,
    at its own bit width" (here 8), ``FP_WEIGHTS``/``FP_ACTIVATIONS`` bypass ``wq``/``act``, ``OFF`` is
    the float layer exactly.
    """

    weight: nn.Parameter
    act: Int8Activation
    wq: Int8Weight
    spatial = None
    channel = None
    channel_from_input = False
    bn = None
    skip = False

    def _init_quantizers(self) -> None:
        self.act = Int8Activation().to(device=self.weight.device, dtype=self.weight.dtype)
        self.wq = Int8Weight()

    def weight_quantizer(self) -> nn.Module:
        return self.wq

    def input_codes(self, x: Tensor) -> Tensor:
        """The integer level q = clamp(round(x / s) + z, 0, 255) each input value gets (parity counts changes)."""
        s, z = self.act.step().detach(), self.act.integer_zero_point()
        return torch.clamp(torch.round(x / s) + z, 0, ACT_QMAX)

    def rounding_bound(self, x: Tensor, tolerance: float = TIE_TOLERANCE) -> Tensor:
        """Largest |change of z| that rounding inputs near a tie the other way can cause, per output element.

        A runtime that computes x / s a few ulps differently (OpenVINO's FakeQuantize scales by
        255 / (high - low)) may round u = x / s to the other neighbour where frac(u) is within
        ``tolerance`` of 0.5; each such input moves by one step s, so
        |dz| <= op(s * 1{|frac(u) - 0.5| <= tolerance}, |Q_w(W)|).
        """
        s = self.act.step().detach()
        u = x / s
        near = ((u - torch.floor(u)) - 0.5).abs() <= tolerance
        return self.main_op(near.to(x.dtype) * s, self.wq(self.weight).detach().abs())

    def export_view(self) -> Int8View:
        """This layer's core as a frozen view: integer weights, scales, zero point (:class:`Int8View`)."""
        w = self.weight.detach()
        s_w = self.wq.scale(w)
        levels = torch.clamp(torch.round(w / s_w.reshape(-1, *([1] * (w.ndim - 1)))), -WEIGHT_QMAX, WEIGHT_QMAX)
        return Int8View(
            weight=levels.to(torch.int8).cpu().numpy().copy(),
            weight_scale=s_w.to(torch.float32).cpu().numpy().copy(),
            act_scale=float(self.act.step().detach()),
            act_zero_point=int(self.act.integer_zero_point()),
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, int8"  # type: ignore[misc]


class Int8Conv2d(Int8Layer, nn.Conv2d):
    """core z = conv(Q_a(x), Q_w(W)), epilogue y = z + bias; zero padding pads Q_a(x) with exact zeros (0 is a level)."""

    act_channel_dim = 1

    @classmethod
    def from_float(cls, conv: nn.Conv2d) -> Int8Conv2d:
        """An INT8 copy of ``conv``: same geometry, ``weight``/``bias`` values, device and dtype."""
        layer = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,  # type: ignore[arg-type]
            conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,  # type: ignore[arg-type]
            conv.weight.device, conv.weight.dtype,
        )
        layer._init_quantizers()
        copy_float_parameters(conv, layer)
        return layer

    def main_op(self, a: Tensor, w: Tensor) -> Tensor:
        return self._conv_forward(a, w, None)


class Int8Linear(Int8Layer, nn.Linear):
    """core z = Q_a(x) @ Q_w(W)^T (one activation range for every token), epilogue y = z + bias."""

    act_channel_dim = -1

    @classmethod
    def from_float(cls, linear: nn.Linear) -> Int8Linear:
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, linear.weight.device, linear.weight.dtype)
        layer._init_quantizers()
        copy_float_parameters(linear, layer)
        return layer

    def main_op(self, a: Tensor, w: Tensor) -> Tensor:
        return F.linear(a, w)


INT8_LAYERS: dict[type[nn.Module], Callable[[nn.Module], nn.Module]] = {
    nn.Conv2d: Int8Conv2d.from_float,  # type: ignore[dict-item]
    nn.Linear: Int8Linear.from_float,  # type: ignore[dict-item]
}
"""Exact float type -> INT8 constructor (subclasses are never matched, as for BINARY_LAYERS)."""


def make_int8(module: nn.Module, options: object = None) -> nn.Module:
    """The INT8 replacement of ``module`` (``options`` is accepted for the rewrite's maker signature)."""
    factory = INT8_LAYERS.get(type(module))
    if factory is None:
        known = ", ".join(f"{cls.__module__}.{cls.__qualname__}" for cls in INT8_LAYERS)
        raise RecipeError(f"cannot quantize {type(module).__qualname__} to INT8: INT8 layers exist for exactly {known}")
    return factory(module)


# ------------------------------------------------------------------------------------- range calibration

SAMPLES_PER_BATCH = 1 << 18  # values kept per layer and batch (seeded random subset): bounded memory
PERCENTILE_TAIL = 1e-4  # "percentile": [q(1e-4), q(1 - 1e-4)] of the layer's inputs
MSE_SHRINKS = torch.linspace(0.05, 1.0, 96)  # "mse": candidate ranges [c min, c max]


def percentile_range(samples: Tensor) -> tuple[float, float]:
    """[q_p, q_(1-p)] with p = 1e-4: ignores the rarest 0.01 % on each side."""
    qs = torch.quantile(samples.double(), torch.tensor([PERCENTILE_TAIL, 1 - PERCENTILE_TAIL], dtype=torch.float64))
    return float(qs[0]), float(qs[1])


@torch.no_grad()
def mse_range(samples: Tensor) -> tuple[float, float]:
    """argmin over c in [0.05, 1] of mean (Q_a(x) - x)^2 with the range [c min(x), c max(x)].

    One shrink factor for both ends keeps the search 1-D; the quantizer is the exact forward
    (integer zero point included), so the error measured is the error the layer will make.
    """
    low, high = min(float(samples.min()), 0.0), max(float(samples.max()), 0.0)
    probe = Int8Activation()
    best, best_err = (low, high), float("inf")
    for c in MSE_SHRINKS.tolist():
        probe.set_range(c * low, c * high)
        err = float((probe(samples) - samples).pow(2).mean())
        if err < best_err:
            best, best_err = (c * low, c * high), err
    return best


RANGE_METHODS: dict[str, Callable[[Tensor], tuple[float, float]]] = {"mse": mse_range, "percentile": percentile_range}
"""``--int8-range`` name -> (low, high) from a layer's sampled FP inputs."""
DEFAULT_RANGE_METHOD = "mse"  # Set5, int8 recipe: IMDN x4 32.03 vs 31.94 dB, RLFN x4 31.48 vs 31.51 (docs/recipes.md)


@dataclass(frozen=True)
class Int8Range:
    """The calibrated activation range of one INT8 layer (for reports and the student's metadata)."""

    path: str
    low: float
    high: float


def _sample(x: Tensor, gen: torch.Generator) -> Tensor:
    flat = x.detach().reshape(-1).float().cpu()
    if flat.numel() <= SAMPLES_PER_BATCH:
        return flat
    return flat[torch.randint(flat.numel(), (SAMPLES_PER_BATCH,), generator=gen)]


def _collect_inputs(model: nn.Module, layers: dict[str, Int8Layer], batches: Sequence[Tensor]) -> dict[str, list[Tensor]]:
    """Sampled FP inputs of every INT8 layer, one pass per batch with hooks (layers reached once or more)."""
    gen = torch.Generator().manual_seed(0)
    seen: dict[str, list[Tensor]] = {name: [] for name in layers}
    handles = [
        layer.register_forward_pre_hook(lambda _m, inputs, name=name: seen[name].append(_sample(inputs[0], gen)))  # type: ignore[attr-defined]
        for name, layer in layers.items()
    ]
    try:
        for batch in batches:
            model(batch)
    finally:
        for h in handles:
            h.remove()
    return seen


def calibrate_int8(model: nn.Module, batches: Iterable[Tensor], method: str = DEFAULT_RANGE_METHOD) -> list[Int8Range]:
    """Set every INT8 layer's activation range from its inputs in the float network (every quantizer off).

    The inputs are the teacher's (x_t in :mod:`scales_cli.binary.calibration`'s notation); the
    range is the ``method``'s choice over a seeded sample of them. Layers never reached keep theirs.
    """
    from scales_cli.binary.modes import calibration_inputs, eval_mode, quantizers_off  # all off: the teacher's activations

    pick = lookup(RANGE_METHODS, method, "INT8 range method")
    layers, batches = calibration_inputs(model, batches, Int8Layer, "INT8 calibration")
    if not layers:
        return []
    with eval_mode(model), torch.no_grad(), quantizers_off(model):
        seen = _collect_inputs(model, layers, batches)
    ranges = []
    for name, samples in seen.items():
        if samples:
            low, high = pick(torch.cat(samples))
            layers[name].act.set_range(low, high)
            ranges.append(Int8Range(name, *layers[name].act.range()))
    return ranges
