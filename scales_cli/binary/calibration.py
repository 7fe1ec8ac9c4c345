"""Data-aware initialisation of binary layers from the activations of a few real inputs.

Notation for one binary layer L with FP weight W and bias b: quantized forward
``y_q(x) = z(x) + b + skip(x)`` (``z`` = the scaled binary conv/linear times its re-scaling factors,
``skip(x) = x`` where the layer has the Bi-Real identity, else 0); FP forward ``y_fp(x) = W * x + b``.
The FP teacher is the model as it was on entry with :func:`quantizers_off`; x_t is the input L gets
in the teacher, x_s the input it gets in the student (earlier binary layers quantized and fitted).

Layers are fitted one by one in the order the forward pass reaches them; :class:`CalibrationOptions`
picks each step (defaults: the choices that measured best, docs/method.md "Calibration"):

1. ``sequential``: take the statistics on x_s instead of x_t, so each binarizer sees the activations
   it will really get once everything before it is binary (default off: measured worse).
2. ``threshold`` (binarizers with ``set_statistics``; channel c, every other position pooled):
   ``beta_c = mean(x_c)`` ("mean", default) or ``median(x_c)`` ("median"); then
   ``alpha = mean |x - beta|``, the least-squares scale of a two-level code for u = x - beta
   (argmin_a ||u - a sign(u)||^2 = mean|u|). alpha is also the STE's pass range |u| <= alpha.
3. ``branches``: "keep" the re-scaling convs as built (default), or "neutral": zero their tensors,
   so s = c = sigmoid(0) = 1/2 for every input (their gradients stay non-zero).
4. ``correction`` against the target ``t = y_fp(x_t)`` (``target="teacher"``: also absorbs the error
   accumulated upstream) or ``t = y_fp(x_s)`` (``"self"``: only this layer's own error). With
   r = t - skip(x_s), z = z(x_s), per output channel o over every other position:
   "affine": ``g_o = cov(z_o, r_o) / var(z_o)`` applied as ``W_o <- g_o W_o`` (the binary weight is
   ``mean|W_o| * sign(W_o)``, so its scale follows; skipped where the weight binarizer is not
   positively homogeneous or a BatchNorm follows), then, on the re-computed output,
   "bias": ``b_o <- b_o + mean_o(t - y_q(x_s))``, so the per-channel output means match exactly.
   "none" (default) changes neither. No parameter is added: only alpha, beta, W, b and the branches'
   existing tensors change, so the state-dict format is the same.

Everything runs in eval mode under ``no_grad``; train/eval modes and layer modes are restored.
Each forward stops at the layer being fitted (an exception raised from a pre-hook), so K layers cost
about K/2 full teacher passes (+ K/2 student passes when sequential). The batches are held in memory.

Example::

    >>> calibrate(model, [lr_image_batch])     # returns the dotted names of the calibrated layers
    ['body.0.conv1', 'body.0.conv2', ...]
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from scales_cli.binary._registry import lookup
from scales_cli.binary.activation import THRESHOLDS, act_statistics, channel_rows
from scales_cli.binary.layers import BinaryLayer
from scales_cli.binary.modes import LayerMode, calibration_inputs, eval_mode, layer_mode, quantizers_off
from scales_cli.binary.ste import channel_view

GAIN_RANGE = (1e-2, 1e2)
"""The fitted per-channel gain is clamped here: a non-positive LS gain (binary channel anti-correlated
with its target) would flip the weight's signs; the clamp keeps the sign pattern the FP weights chose."""


@dataclass(frozen=True)
class CalibrationOptions:
    """Which steps of the per-layer fit run (module docstring: equations)."""

    sequential: bool = False
    threshold: str = "mean"  # THRESHOLDS key
    branches: str = "keep"  # BRANCH_INITS key
    correction: str = "none"  # CORRECTIONS key
    target: str = "teacher"  # TARGETS key

    def __post_init__(self) -> None:
        lookup(THRESHOLDS, self.threshold, "calibration threshold")
        lookup(BRANCH_INITS, self.branches, "calibration branches")
        lookup(CORRECTIONS, self.correction, "calibration correction")
        lookup(TARGETS, self.target, "calibration target")


CORRECTIONS: dict[str, tuple[bool, bool]] = {"none": (False, False), "bias": (False, True), "affine": (True, True)}
"""correction name -> (fit the per-channel gain, fit the per-channel bias)."""


class _Stop(Exception):
    """Raised by a pre-hook once the layer's input is captured: the rest of the forward is not needed."""


def _forward_order(model: nn.Module, layers: dict[str, BinaryLayer], batch: Tensor) -> list[str]:
    """Names of ``layers`` in the order one forward pass first reaches them (unreached ones dropped)."""
    order: list[str] = []

    def seen(name: str) -> None:
        if name not in order:
            order.append(name)

    handles = [
        layer.register_forward_pre_hook(lambda _m, _i, name=name: seen(name))  # type: ignore[attr-defined]
        for name, layer in layers.items()
    ]
    try:
        model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return order


def _inputs_of(model: nn.Module, layer: BinaryLayer, batches: list[Tensor]) -> list[Tensor]:
    """The first input ``layer`` receives for each batch; each forward stops right there."""
    captured: list[Tensor] = []

    def grab(_m: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        captured.append(inputs[0].detach())
        raise _Stop

    handle = layer.register_forward_pre_hook(grab)  # type: ignore[attr-defined]
    try:
        for batch in batches:
            try:
                model(batch)
            except _Stop:
                pass
    finally:
        handle.remove()
    return captured


def _set_threshold(layer: BinaryLayer, inputs: list[Tensor], threshold: str) -> bool:
    if not hasattr(layer.act, "set_statistics"):
        return False
    beta, alpha = act_statistics(inputs, layer.act_channel_dim, threshold)
    return layer.set_act_statistics(beta.to(layer.weight), alpha.to(layer.weight))


def _neutralise_branches(layer: BinaryLayer) -> bool:
    """Zero the re-scaling convs' tensors: every factor becomes sigmoid(0) = 1/2."""
    changed = False
    for name in ("spatial", "channel"):
        branch = getattr(layer, name, None)
        if branch is not None:
            for p in branch.parameters():
                p.zero_()
            changed = True
    return changed


def _keep_branches(layer: BinaryLayer) -> bool:
    return False


BRANCH_INITS: dict[str, Callable[[BinaryLayer], bool]] = {"keep": _keep_branches, "neutral": _neutralise_branches}
"""branches option -> what happens to the re-scaling convs (returns whether anything changed)."""

TARGETS: dict[str, bool] = {"teacher": True, "self": False}
"""target option -> whether the FP output is taken on the teacher's input x_t (else on x_s)."""


def _gain_applies(layer: BinaryLayer) -> bool:
    """A per-channel gain g scales the binary output by g only where the weight binarizer has a scale to
    carry it (``carries_gain``: not ``sign``) and no BN renormalises the output."""
    return layer.bn is None and layer.wbin.carries_gain


class _ChannelMoments:
    """Per-output-channel float64 sums of z, r, z^2, z*r over every position (streamed over batches)."""

    def __init__(self) -> None:
        self.n = 0
        self.z: Tensor | float = 0.0
        self.r: Tensor | float = 0.0
        self.zz: Tensor | float = 0.0
        self.zr: Tensor | float = 0.0

    def add(self, z: Tensor, r: Tensor, dim: int) -> None:
        z, r = channel_rows(z, dim).double(), channel_rows(r, dim).double()
        self.n += z.shape[1]
        self.z = self.z + z.sum(1)
        self.r = self.r + r.sum(1)
        self.zz = self.zz + (z * z).sum(1)
        self.zr = self.zr + (z * r).sum(1)

    def gain(self) -> Tensor:
        """argmin_g min_b ||g z + b - r||^2 = cov(z, r) / var(z), clamped to GAIN_RANGE."""
        cov = self.zr - self.z * self.r / self.n  # type: ignore[operator]
        var = self.zz - self.z * self.z / self.n  # type: ignore[operator]
        gain = torch.where(var > 0, cov / var.clamp_min(1e-300), torch.ones_like(var))
        return gain.clamp(*GAIN_RANGE)


def _binary_part(layer: BinaryLayer, x: Tensor) -> Tensor:
    """z(x) = y_q(x) - b - skip(x): the quantized output without its bias and identity."""
    y = layer(x)  # type: ignore[operator]
    if layer.bias is not None:
        y = y - channel_view(layer.bias, y.ndim, layer.act_channel_dim % y.ndim)
    return y - x if getattr(layer, "skip", False) else y


def _fit_output(layer: BinaryLayer, inputs: list[Tensor], targets: list[Tensor], correction: str) -> bool:
    fit_gain, fit_bias = CORRECTIONS[correction]
    changed = False
    if fit_gain and _gain_applies(layer):
        moments = _ChannelMoments()
        for x, t in zip(inputs, targets):
            z = _binary_part(layer, x)
            r = t - x if getattr(layer, "skip", False) else t
            moments.add(z, r, layer.act_channel_dim % z.ndim)
        layer.wbin.apply_gain(layer.weight, moments.gain().to(layer.weight))
        changed = True
    if fit_bias and layer.bias is not None:
        dim = layer.act_channel_dim % targets[0].ndim
        residual = sum(channel_rows(t - layer(x), dim).double().sum(1) for x, t in zip(inputs, targets))  # type: ignore[operator]
        count = sum(t.numel() // t.shape[dim] for t in targets)
        layer.bias.add_((residual / count).to(layer.bias))  # type: ignore[operator]
        changed = True
    return changed


def _calibrate_layer(
    model: nn.Module, teacher: nn.Module, name: str, batches: list[Tensor], options: CalibrationOptions
) -> bool:
    layer = model.get_submodule(name)
    with quantizers_off(teacher):
        teacher_in = _inputs_of(teacher, teacher.get_submodule(name), batches)
    student_in = _inputs_of(model, layer, batches) if options.sequential else teacher_in
    changed = _set_threshold(layer, student_in, options.threshold)
    changed = BRANCH_INITS[options.branches](layer) or changed
    if CORRECTIONS[options.correction] == (False, False):
        return changed
    with layer_mode(layer, LayerMode.OFF):  # type: ignore[arg-type]
        targets = [layer(x) for x in (teacher_in if TARGETS[options.target] else student_in)]  # type: ignore[operator]
    with layer_mode(layer, LayerMode.BINARY):  # type: ignore[arg-type]
        return _fit_output(layer, student_in, targets, options.correction) or changed


def calibrate(model: nn.Module, batches: Iterable[Tensor], options: CalibrationOptions | None = None) -> list[str]:
    """Fit every binary layer of ``model`` to its FP self on ``batches``, in forward order.

    Returns the dotted names of the layers whose state changed, in the order they were fitted.
    Layers that the forward pass never reaches are left as they are.
    """
    options = options or CalibrationOptions()
    layers, batches = calibration_inputs(model, batches, BinaryLayer, "calibration")
    if not layers:
        return []
    changed: list[str] = []
    with eval_mode(model), torch.no_grad():
        teacher = copy.deepcopy(model)  # W and b change as layers are fitted; the targets must not
        with quantizers_off(model):
            order = _forward_order(model, layers, batches[0])
        for name in order:
            if _calibrate_layer(model, teacher, name, batches, options):
                changed.append(name)
    return changed
