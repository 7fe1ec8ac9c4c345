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

from ..binary.modes import LayerMode, layer_mode, set_mode
from .config import TWO_STAGE_MODES

# mode -> which operand stays FP during the first stage (the modes are the config's, in its order)
TWO_STAGE: dict[str, str | None] = dict(zip(TWO_STAGE_MODES, (None, "weights", "activations"), strict=True))

STAGE_MODES: dict[str | None, LayerMode] = {
    None: LayerMode.BINARY,
    "weights": LayerMode.FP_WEIGHTS,
    "activations": LayerMode.FP_ACTIVATIONS,
}
"""The operand kept FP (what :func:`bypassed` returns) -> the layer mode of every binary layer."""


def first_stage_steps(steps: int, first_stage: float) -> int:
    """Steps of the first stage: ``round(first_stage * steps)``."""
    return int(round(first_stage * steps))


def bypassed(mode: str, step: float, steps: int, first_stage: float) -> str | None:
    """The operand kept FP at ``step`` (0-based, the step about to run; a budgeted run whose end moved
    passes the step of its planned ``steps`` that it plays, :class:`.optim.Horizon`), or None when fully binary."""
    if step >= first_stage_steps(steps, first_stage):
        return None
    return TWO_STAGE[mode]


def set_stage(model: nn.Module, fp: str | None) -> None:
    """Bypass ``fp`` (``"weights"``, ``"activations"`` or None) in every binary layer of ``model``."""
    set_mode(model, STAGE_MODES[fp])


@contextmanager
def fully_binary(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` with no binarizer bypassed while inside (validation); the stage is restored after."""
    with layer_mode(model, LayerMode.BINARY):
        yield model
