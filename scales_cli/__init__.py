"""scales-cli: binarize pretrained super-resolution networks with SCALES.

Public Python API (imports are lazy, so ``import scales_cli`` stays cheap)::

    from scales_cli import binarize, finetune, FinetuneConfig, load, rewrite, load_recipe, evaluate_model
    desc = load("IMDN_x4.pth")                          # SRDescriptor: arch, scale, hparams, model, regions
    student, report = rewrite(desc, load_recipe("cnn"))  # binary student + per-layer decisions (in memory)
    made = binarize("IMDN_x4.pth", "cnn", "IMDN_x4-cnn.safetensors", calibrate="T91")  # what `scales binarize` does
    finetune(made.written, "IMDN_x4.pth", ["BSD200"], FinetuneConfig(steps=1000), val="Set5", out="ft")
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (resolved on first access)
_API = {
    "load": "scales_cli.loading",
    "detect": "scales_cli.archs",
    "binarize": "scales_cli.binarization",
    "BinarizeResult": "scales_cli.binarization",
    "load_recipe": "scales_cli.recipe",
    "rewrite": "scales_cli.recipe",
    "save_student": "scales_cli.recipe",
    "calibrate": "scales_cli.binary",
    "evaluate_model": "scales_cli.metrics.evaluate",
    "evaluate_bicubic": "scales_cli.metrics.evaluate",
    "count_cost": "scales_cli.metrics.cost",
    "imresize": "scales_cli.metrics.resize",
    "export_model": "scales_cli.export.pipeline",
    "reference_session": "scales_cli.export.reference",
    "finetune": "scales_cli.train",
    "FinetuneConfig": "scales_cli.train",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'scales_cli' has no attribute {name!r}")
