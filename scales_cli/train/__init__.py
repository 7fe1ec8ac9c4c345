"""Fine-tuning: distil a binary student from its FP teacher (``scales finetune``, :func:`finetune`).

Modules, one job each: :mod:`.config` (the frozen settings), :mod:`.data` (crops from image
folders), :mod:`.losses` (distillation terms), :mod:`.optim` (optimizer, schedule, EMA),
:mod:`.checkpoint` (state and student files), :mod:`.distributed` (torchrun glue),
:mod:`.plots` (curves.png), :mod:`.distiller` (the one training step: state, step, validate, save,
restore) and :mod:`.loop` (the driver of a run).

The settings import without torch (``scales finetune --help`` builds its options from them); the
rest resolves on first access, as in :mod:`scales_cli`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .config import FinetuneConfig, build_config, read_config_file

# public name -> module that defines it (resolved on first access: torch is imported then)
_LAZY = {
    "Distiller": ".distiller",
    "NonFiniteStep": ".distiller",
    "OutputDistillation": ".distiller",
    "StepResult": ".distiller",
    "BudgetSpent": ".loop",
    "FinetuneResult": ".loop",
    "StepLog": ".loop",
    "TrainingDiverged": ".loop",
    "TrainingInterrupted": ".loop",
    "ValLog": ".loop",
    "finetune": ".loop",
}

__all__ = ["FinetuneConfig", "build_config", "read_config_file", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'scales_cli.train' has no attribute {name!r}")
