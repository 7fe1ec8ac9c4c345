"""Two-stage fine-tuning: one binarizer bypassed for the first part of the run, then the full student.

``activations-first``: binary activations, FP (latent) weights first, so the network adapts to 1-bit
inputs before its weights lose their magnitudes; ``weights-first``: the reverse. After
``first_stage`` x ``steps`` steps every layer is fully binary. Whether this beats one stage is a
measured question (docs/results.md): the option exists so that it can be asked through the CLI.

Which part is bypassed is a pure function of the step, so ``--resume`` restores it exactly, and
validation and every saved student always score the fully binary network (:func:`fully_binary`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from ..binary.layers import BinaryLayer
from .config import TWO_STAGE_MODES

# mode -> which operand stays FP during the first stage (the modes are the config's, in its order)
TWO_STAGE: dict[str, str | None] = dict(zip(TWO_STAGE_MODES, (None, "weights", "activations"), strict=True))


def first_stage_steps(steps: int, first_stage: float) -> int:
    """Steps of the first stage: ``round(first_stage * steps)``."""
    return int(round(first_stage * steps))


def bypassed(mode: str, step: int, steps: int, first_stage: float) -> str | None:
    """The operand kept FP at ``step`` (0-based, the step about to run), or None when fully binary."""
    if step >= first_stage_steps(steps, first_stage):
        return None
    return TWO_STAGE[mode]


def set_stage(model: nn.Module, fp: str | None) -> None:
    """Bypass ``fp`` (``"weights"``, ``"activations"`` or None) in every binary layer of ``model``."""
    for module in model.modules():
        if isinstance(module, BinaryLayer):
            module.fp_weights = fp == "weights"
            module.fp_activations = fp == "activations"


@contextmanager
def fully_binary(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` with no binarizer bypassed while inside (validation); the stage is restored after."""
    layers = [m for m in model.modules() if isinstance(m, BinaryLayer)]
    saved = [(m.fp_weights, m.fp_activations) for m in layers]
    set_stage(model, None)
    try:
        yield model
    finally:
        for m, (w, a) in zip(layers, saved, strict=True):
            m.fp_weights, m.fp_activations = w, a
