"""Fine-tuning: distil a binary student from its FP teacher (``scales finetune``, :func:`finetune`).

Modules, one job each: :mod:`.config` (the frozen settings), :mod:`.data` (crops from image
folders), :mod:`.losses` (distillation terms), :mod:`.optim` (optimizer, schedule, EMA),
:mod:`.checkpoint` (state and student files), :mod:`.distributed` (torchrun glue),
:mod:`.plots` (curves.png), :mod:`.distiller` (the one training step: state, step, validate, save,
restore) and :mod:`.loop` (the driver of a run).
"""

from __future__ import annotations

from .config import FinetuneConfig, build_config, read_config_file
from .distiller import Distiller, NonFiniteStep, OutputDistillation, StepResult
from .loop import FinetuneResult, StepLog, TrainingDiverged, TrainingInterrupted, ValLog, finetune

__all__ = [
    "Distiller",
    "FinetuneConfig",
    "FinetuneResult",
    "NonFiniteStep",
    "OutputDistillation",
    "StepLog",
    "StepResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "ValLog",
    "build_config",
    "finetune",
    "read_config_file",
]
