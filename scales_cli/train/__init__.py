"""Fine-tuning: distil a binary student from its FP teacher (``scales finetune``, :func:`finetune`).

Modules, one job each: :mod:`.config` (the frozen settings), :mod:`.data` (crops from image
folders), :mod:`.losses` (distillation terms), :mod:`.optim` (optimizer, schedule, EMA),
:mod:`.checkpoint` (state and student files), :mod:`.distributed` (torchrun glue),
:mod:`.plots` (curves.png) and :mod:`.loop` (the run).
"""

from __future__ import annotations

from .config import FinetuneConfig, build_config, read_config_file
from .loop import FinetuneResult, StepLog, TrainingDiverged, TrainingInterrupted, ValLog, finetune

__all__ = [
    "FinetuneConfig",
    "FinetuneResult",
    "StepLog",
    "TrainingDiverged",
    "TrainingInterrupted",
    "ValLog",
    "build_config",
    "finetune",
    "read_config_file",
]
