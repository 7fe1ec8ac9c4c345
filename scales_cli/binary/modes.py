"""One mode per quantized layer, set by one context manager.

A quantized layer (:class:`ModedLayer`: the binary layers and the INT8 layers of
:mod:`scales_cli.binary.int8`) computes its core ``op(q_a(x), q_w(W))`` then its epilogue
(:mod:`scales_cli.binary.layers`). Its ``mode`` says which quantizer is bypassed. ``BINARY`` means
"every quantizer on, each at its own bit width": 1 bit in a binary layer, 8 in an INT8 layer (the
name is kept because saved runs and messages use it):

============== ======================= ==========================================================
mode           core                     used by
============== ======================= ==========================================================
BINARY         op(q_a(x), q_w(W))       inference, export, validation, every saved student
FP_WEIGHTS     op(q_a(x), W)            first stage of ``two_stage: activations-first``
FP_ACTIVATIONS op(x, q_w(W))            first stage of ``two_stage: weights-first``
OFF            the float layer exactly  calibration's FP teacher (no epilogue: branches bypassed)
============== ======================= ==========================================================

The mode is a plain attribute, never saved: a student file always holds the fully quantized layer.

Example::

    >>> with layer_mode(model, LayerMode.OFF):   # every quantized layer of model is its float self
    ...     teacher_out = model(x)
    >>> model.body[0].mode                          # restored on exit, whatever it was
    <LayerMode.BINARY: 'binary'>
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from enum import Enum

from torch import Tensor, nn

from scales_cli.errors import DataError


class LayerMode(Enum):
    """Which quantizers of a layer's core are active (module docstring: table)."""

    BINARY = "binary"
    FP_WEIGHTS = "fp_weights"
    FP_ACTIVATIONS = "fp_activations"
    OFF = "off"

    @property
    def quantizes_weights(self) -> bool:
        return self in (LayerMode.BINARY, LayerMode.FP_ACTIVATIONS)

    @property
    def quantizes_activations(self) -> bool:
        return self in (LayerMode.BINARY, LayerMode.FP_WEIGHTS)


class ModedLayer:
    """Mixin of every layer with a :class:`LayerMode`: one field, ``mode``, BINARY unless a block says otherwise."""

    mode: LayerMode = LayerMode.BINARY


def moded_layers(model: nn.Module) -> list[tuple[str, ModedLayer]]:
    """(dotted path, layer) of every moded layer of ``model``, itself included, in registration order."""
    return [(path, m) for path, m in model.named_modules() if isinstance(m, ModedLayer)]


def set_mode(model: nn.Module, mode: LayerMode) -> None:
    """Put every moded layer of ``model`` (itself included) in ``mode``."""
    for _, layer in moded_layers(model):
        layer.mode = mode


@contextmanager
def layer_mode(model: nn.Module, mode: LayerMode, kind: type = ModedLayer) -> Iterator[nn.Module]:
    """Within the block every moded layer of ``model`` (of type ``kind``: e.g. only the INT8 layers) is in
    ``mode``; each gets its own mode back after."""
    layers = [layer for _, layer in moded_layers(model) if isinstance(layer, kind)]
    previous = [layer.mode for layer in layers]
    for layer in layers:
        layer.mode = mode
    try:
        yield model
    finally:
        for layer, mode_before in zip(layers, previous, strict=True):
            layer.mode = mode_before


def quantizers_off(model: nn.Module) -> AbstractContextManager[nn.Module]:
    """``layer_mode(model, LayerMode.OFF)``: every quantized layer computes its float operation exactly."""
    return layer_mode(model, LayerMode.OFF)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """``model.eval()`` for the block; each module gets its own train/eval flag back after it
    (calibration reads the network as inference sees it, and must not leave a training run in eval)."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


def calibration_inputs(model: nn.Module, batches: Iterable[Tensor], kind: type, what: str) -> tuple[dict[str, nn.Module], list[Tensor]]:
    """The layers of type ``kind`` a calibration fits (dotted name -> layer) and its batches on the model's
    device; no batch at all is one line naming ``what`` (no layer: nothing to fit, an empty mapping)."""
    batches = list(batches)
    if not batches:
        raise DataError(f"{what} needs at least one input batch, got none")
    layers = {name: m for name, m in model.named_modules() if isinstance(m, kind)}
    if not layers:
        return {}, []
    device = next(model.parameters()).device
    return layers, [b.to(device) for b in batches]
