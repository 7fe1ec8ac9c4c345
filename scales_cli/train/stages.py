"""Staged fine-tuning: part of the student kept FP for the first part of the run, then the full student.

Two ways, which may be combined:

``activations-first``: binary activations, FP (latent) weights first, so the network adapts to 1-bit
inputs before its weights lose their magnitudes; ``weights-first``: the reverse. After
``first_stage`` x ``steps`` steps every layer is fully binary.

Progressive binarization (``progressive`` = f > 0): the body's top-level blocks turn binary one after
another in forward order over the first f x ``steps`` steps; a block not yet switched computes its float
layers exactly (:attr:`LayerMode.OFF`, the calibrated teacher's operation), so the student starts as
the teacher with one binary block and meets the loss of each switch while the rest still helps.

Whether either beats one stage is a measured question (docs/results.md: neither did at equal wall
time); the options exist so that it can be asked through the CLI. :func:`stage_at` is what one step
trains, :func:`apply_stage` puts a model in it.

Which part is bypassed (or FP) is a pure function of the step, so ``--resume`` restores it exactly, and
validation and every saved student always score the fully binary network (:func:`fully_binary`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from torch import nn

from ..binary.modes import LayerMode, layer_mode, set_mode
from .config import TWO_STAGE_MODES, FinetuneConfig

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


def progressive_switches(blocks: int, steps: int, fraction: float) -> list[int]:
    """The step at which each of ``blocks`` body blocks turns binary, in forward order: block k at
    ``round(k * fraction * steps / blocks)``, so the first is binary from the start and the last
    switches one block's share before ``fraction * steps``."""
    span = fraction * steps
    return [int(round(span * k / blocks)) for k in range(blocks)]


def binary_blocks(step: float, steps: int, fraction: float, blocks: int) -> int:
    """How many leading body blocks are binary at ``step`` (all of them when ``fraction`` is 0)."""
    if fraction <= 0:
        return blocks
    return sum(step >= s for s in progressive_switches(blocks, steps, fraction))


def set_progress(model: nn.Module, block_paths: Sequence[str], binary: int) -> None:
    """Put the binary layers of every body block after the first ``binary`` ones in :attr:`LayerMode.OFF`
    (call after :func:`set_stage`, which sets the mode of the whole model)."""
    modules = dict(model.named_modules())
    for path in block_paths[binary:]:
        set_mode(modules[path], LayerMode.OFF)


Stage = tuple[str | None, int]
"""(the operand two-stage keeps FP or None, how many leading body blocks are binary): changes a few times a run."""


def stage_at(config: FinetuneConfig, step: float, steps: int, blocks: int) -> Stage:
    """What ``step`` of a run of ``steps`` trains, with ``blocks`` body blocks for ``progressive``."""
    return (bypassed(config.two_stage, step, steps, config.first_stage), binary_blocks(step, steps, config.progressive, blocks))


def apply_stage(model: nn.Module, stage: Stage, block_paths: Sequence[str]) -> None:
    """Put ``model`` in ``stage``: the two-stage mode everywhere, then the blocks not yet switched FP."""
    set_stage(model, stage[0])
    set_progress(model, block_paths, stage[1])
