"""Per-layer parameter and MAC counts from one forward pass, split into FP, INT8 and binary.

One forward pass at a given LR size (default 320x180, i.e. 1280x720 output at x4 — the size the
efficient-SR literature reports) with a forward hook on every module. Each call adds:

* the module's main MACs from :data:`MAC_FORMULAS`, looked up along the class MRO (so a
  ``BinaryConv2d(nn.Conv2d)`` is counted as a conv)::

      Conv{1,2,3}d           MACs = numel(output) * (C_in / groups) * prod(kernel)
      ConvTranspose{1,2,3}d  MACs = numel(input)  * (C_out / groups) * prod(kernel)
      Linear                 MACs = numel(output) * in_features

  They are binary MACs when the module's ``bit_widths()`` is ``(1, 1)``, INT8 MACs when it is
  ``(8, 8)`` (:mod:`scales_cli.binary.protocol`), FP otherwise;
* the module's ``extra_macs(inputs, output)`` when it defines one (attention ``q k^T`` and
  ``attn v`` matmuls), always FP.

Parameters are attributed to the module that owns them directly: a layer whose weight bit-width is 1
(8) stores its own ``weight`` as binary (INT8) parameters; every other direct parameter (bias, scales,
thresholds, INT8 ranges) is FP. Child modules (re-scaling branches) answer for themselves.

Totals follow the BNN convention (Bi-Real Net, ReActNet, SCALES), extended to INT8::

    Params = P_fp + P_int8 / 4 + P_binary / 32
    OPs    = MAC_fp + MAC_int8 / 4 + MAC_binary / 64

Params divide by the storage ratio (32 / bits). The OPs divisor is how many such MACs one FP32 MAC's
instruction slot does on a CPU: 64 binary MACs per 64-bit XNOR-popcount word (the BNN literature's
figure), 4 INT8 MACs per 32-bit lane (AVX-512 VNNI ``vpdpbusd``: four u8 x s8 products summed into
each int32 lane, where an FP32 FMA does one). The bit-operations product ``MACs x b_w x b_a / 64``
would count an INT8 MAC as a full FP32 MAC and is not used.

and FLOPs, when asked for, are ``2 x`` those OPs. The pass runs on the ``meta`` device when the
model allows it (shapes only, no arithmetic), otherwise on the CPU under ``inference_mode``.

>>> from torch import nn
>>> count_cost(nn.Conv2d(3, 8, 3, padding=1), input_size=(4, 2)).macs_fp   # 8 px * 8 * 27
1728
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..binary.protocol import bit_widths, is_binary

BNN_PARAM_DIVISOR = 32  # a 1-bit weight stores 1/32 of a float32 one
BNN_OPS_DIVISOR = 64  # a 64-bit XNOR-popcount word does 64 binary MACs
INT8_PARAM_DIVISOR = 4  # an 8-bit weight stores 1/4 of a float32 one
INT8_OPS_DIVISOR = 4  # VNNI: 4 u8 x s8 MACs per 32-bit lane where FP32 does 1
INT8_BITS: tuple[int, int] = (8, 8)
CONVENTION = "BNN: Params = FP + int8/4 + binary/32, OPs = FP MACs + int8 MACs/4 + binary MACs/64"
DEFAULT_INPUT_SIZE: tuple[int, int] = (320, 180)  # (width, height) of the LR input

def bnn_params(fp: int, binary: int, int8: int = 0) -> float:
    """``P_fp + P_int8 / 4 + P_binary / 32``."""
    return fp + int8 / INT8_PARAM_DIVISOR + binary / BNN_PARAM_DIVISOR


def bnn_ops(fp: int, binary: int, int8: int = 0) -> float:
    """``MAC_fp + MAC_int8 / 4 + MAC_binary / 64``."""
    return fp + int8 / INT8_OPS_DIVISOR + binary / BNN_OPS_DIVISOR


MacFormula = Callable[[nn.Module, tuple, torch.Tensor], int]


def _conv_macs(m: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    return output.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)


def _conv_transpose_macs(m: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    return inputs[0].numel() * (m.out_channels // m.groups) * math.prod(m.kernel_size)


def _linear_macs(m: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    return output.numel() * m.in_features


MAC_FORMULAS: dict[type[nn.Module], MacFormula] = {
    nn.Conv1d: _conv_macs,
    nn.Conv2d: _conv_macs,
    nn.Conv3d: _conv_macs,
    nn.ConvTranspose1d: _conv_transpose_macs,
    nn.ConvTranspose2d: _conv_transpose_macs,
    nn.ConvTranspose3d: _conv_transpose_macs,
    nn.Linear: _linear_macs,
}


def mac_formula(module: nn.Module) -> MacFormula | None:
    """The formula registered for the nearest class in ``module``'s MRO, if any."""
    return next((MAC_FORMULAS[c] for c in type(module).__mro__ if c in MAC_FORMULAS), None)


@dataclass(frozen=True)
class LayerCost:
    """One module's own parameters and the MACs of all its calls in the forward pass."""

    name: str  # dotted named_modules path ("" = the model itself)
    kind: str  # class name
    weight_bits: int
    act_bits: int
    calls: int
    params_fp: int
    params_binary: int
    macs_fp: int
    macs_binary: int
    params_int8: int = 0
    macs_int8: int = 0

    @property
    def params(self) -> float:
        return bnn_params(self.params_fp, self.params_binary, self.params_int8)

    @property
    def ops(self) -> float:
        return bnn_ops(self.macs_fp, self.macs_binary, self.macs_int8)


@dataclass(frozen=True)
class CostReport:
    """Cost of one model at one input size; totals in the BNN convention (:data:`CONVENTION`)."""

    input_size: tuple[int, int]  # (width, height) of the LR input
    output_size: tuple[int, int]  # (width, height) of the output
    layers: tuple[LayerCost, ...]
    convention: str = CONVENTION
    attention: bool = True  # attention matmuls counted (False: conv/linear only, SwinIR's convention)

    @property
    def params_fp(self) -> int:
        return sum(layer.params_fp for layer in self.layers)

    @property
    def params_binary(self) -> int:
        return sum(layer.params_binary for layer in self.layers)

    @property
    def params_int8(self) -> int:
        return sum(layer.params_int8 for layer in self.layers)

    @property
    def params_total(self) -> int:
        """Every parameter once, whatever its bit-width."""
        return self.params_fp + self.params_binary + self.params_int8

    @property
    def params(self) -> float:
        """BNN-convention parameters: ``P_fp + P_int8 / 4 + P_binary / 32``."""
        return bnn_params(self.params_fp, self.params_binary, self.params_int8)

    @property
    def macs_fp(self) -> int:
        return sum(layer.macs_fp for layer in self.layers)

    @property
    def macs_binary(self) -> int:
        return sum(layer.macs_binary for layer in self.layers)

    @property
    def macs_int8(self) -> int:
        return sum(layer.macs_int8 for layer in self.layers)

    @property
    def macs_total(self) -> int:
        return self.macs_fp + self.macs_binary + self.macs_int8

    @property
    def ops(self) -> float:
        """BNN-convention OPs: ``MAC_fp + MAC_int8 / 4 + MAC_binary / 64``."""
        return bnn_ops(self.macs_fp, self.macs_binary, self.macs_int8)

    @property
    def flops(self) -> float:
        """``2 x OPs`` (one MAC = a multiply and an add)."""
        return 2.0 * self.ops

    def to_json(self) -> dict:
        return {
            "convention": self.convention,
            "attention_macs_counted": self.attention,
            "input_size": list(self.input_size),
            "output_size": list(self.output_size),
            "params_fp": self.params_fp,
            "params_binary": self.params_binary,
            "params_int8": self.params_int8,
            "params": self.params,
            "macs_fp": self.macs_fp,
            "macs_binary": self.macs_binary,
            "macs_int8": self.macs_int8,
            "ops": self.ops,
            "flops": self.flops,
            "layers": [
                {
                    "name": layer.name,
                    "type": layer.kind,
                    "bits": [layer.weight_bits, layer.act_bits],
                    "calls": layer.calls,
                    "params_fp": layer.params_fp,
                    "params_binary": layer.params_binary,
                    "params_int8": layer.params_int8,
                    "macs_fp": layer.macs_fp,
                    "macs_binary": layer.macs_binary,
                    "macs_int8": layer.macs_int8,
                }
                for layer in self.layers
            ],
        }


def _own_params(module: nn.Module, seen: set[int]) -> tuple[int, int, int]:
    """(FP, binary, INT8) element counts of the parameters ``module`` owns directly (shared ones once)."""
    weight_bits, _ = bit_widths(module)
    counts = [0, 0, 0]
    for name, p in module.named_parameters(recurse=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        kind = {1: 1, 8: 2}.get(weight_bits, 0) if name == "weight" else 0
        counts[kind] += p.numel()
    return counts[0], counts[1], counts[2]


def mac_kind(module: nn.Module) -> int:
    """Index of ``module``'s main MACs in a [calls, fp, binary, int8] entry, from its bit widths."""
    if is_binary(module):
        return 2
    return 3 if bit_widths(module) == INT8_BITS else 1


def _forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        out = model(x)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"model returned {type(out).__name__}, expected a tensor")
    return out


def _trace_macs(
    model: nn.Module, x: torch.Tensor, attention: bool = True
) -> tuple[dict[str, list[int]], torch.Tensor]:
    """Run ``model(x)`` with hooks; per module path: [calls, fp MACs, binary MACs, int8 MACs].

    ``attention=False`` leaves out the ``extra_macs`` of attention matmuls (q k^T, attn v): the
    convention of SwinIR's published Mult-Adds, which count conv and linear layers only.
    """
    counts: dict[str, list[int]] = {}
    handles = []

    def hook_for(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            entry = counts.setdefault(name, [0, 0, 0, 0])
            entry[0] += 1
            formula = mac_formula(module)
            if formula is not None:
                entry[mac_kind(module)] += int(formula(module, inputs, output))
            extra = getattr(module, "extra_macs", None)
            if attention and callable(extra):
                entry[1] += int(extra(inputs, output))

        return hook

    for name, module in model.named_modules():
        handles.append(module.register_forward_hook(hook_for(name)))
    try:
        out = _forward(model, x)
    finally:
        for h in handles:
            h.remove()
    return counts, out


def count_cost(
    model: nn.Module,
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
    *,
    input_range: float = 1.0,
    in_channels: int = 3,
    attention: bool = True,
) -> CostReport:
    """Count ``model``'s parameters and MACs for one ``(width, height)`` LR input (see module doc)."""
    width, height = input_size
    counts: dict[str, list[int]] | None = None
    try:  # shapes only: fast and memory-free for the big 1280x720 activations
        meta_model = copy.deepcopy(model).to("meta")
        counts, out = _trace_macs(meta_model, torch.empty(1, in_channels, height, width, device="meta"), attention)
    except (RuntimeError, TypeError, ValueError):  # also ops with no meta kernel (a RuntimeError subclass)
        counts = None  # data-dependent code (``.item()``, CPU-made tensors): fall back to a real pass
    if counts is None:
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(1, in_channels, height, width, generator=gen) * input_range
        counts, out = _trace_macs(model, x, attention)
    seen: set[int] = set()
    layers = []
    for name, module in model.named_modules():
        fp, binary, int8 = _own_params(module, seen)
        calls, macs_fp, macs_binary, macs_int8 = counts.get(name, (0, 0, 0, 0))
        if fp or binary or int8 or macs_fp or macs_binary or macs_int8:
            w_bits, a_bits = bit_widths(module)
            layers.append(
                LayerCost(
                    name, type(module).__name__, int(w_bits), int(a_bits), calls, fp, binary, macs_fp, macs_binary,
                    params_int8=int8, macs_int8=macs_int8,
                )
            )
    return CostReport(
        input_size=(width, height), output_size=(int(out.shape[-1]), int(out.shape[-2])), layers=tuple(layers),
        attention=attention,
    )
