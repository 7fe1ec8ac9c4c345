"""The binarize pipeline as one library call: load -> plan -> apply -> cost -> calibrate -> save.

``scales binarize`` is a thin renderer of :func:`binarize`; a Python user gets the same student file
(and the same checks, in the same order) without the CLI::

    from scales_cli import binarize, finetune, FinetuneConfig
    result = binarize("IMDN_x4.pth", "cnn", "IMDN_x4-cnn.safetensors", calibrate="T91")
    finetune(result.written, "IMDN_x4.pth", ["BSD200"], FinetuneConfig(steps=1000), val="Set5", out="ft")

Why the order matters: every output and input folder the run will touch is checked before the
rewrite (seconds to minutes on big networks), so a typo costs nothing and nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError, ScalesError

if TYPE_CHECKING:
    from torch import nn

    from .archs.descriptor import SRDescriptor
    from .metrics.cost import CostReport
    from .recipe import Recipe, RewriteReport
    from .recipe.calibrate import CalibrationInfo


@dataclass(frozen=True)
class BinarizeResult:
    """What one binarization produced; ``written`` and ``calibration`` are None for a dry run."""

    desc: SRDescriptor
    recipe: Recipe
    report: RewriteReport
    student: nn.Module
    teacher_cost: CostReport
    student_cost: CostReport
    written: Path | None = None
    calibration: CalibrationInfo | None = None

    def to_json(self) -> dict[str, Any]:
        student = self.student_cost
        return {
            "checkpoint": str(self.desc.source),
            "arch": self.desc.arch,
            "scale": self.desc.scale,
            "recipe": self.recipe.name,
            "output": str(self.written) if self.written else None,
            "calibration": self.calibration.to_json() if self.calibration else None,
            "teacher": {"params": self.teacher_cost.params, "ops": self.teacher_cost.ops},
            "student": {
                "params": student.params,
                "params_fp": student.params_fp,
                "params_binary": student.params_binary,
                "params_int8": student.params_int8,
                "ops": student.ops,
                "macs_fp": student.macs_fp,
                "macs_binary": student.macs_binary,
                "macs_int8": student.macs_int8,
            },
            "ops_input_size": list(student.input_size),
            "convention": student.convention,
            "rewrite": self.report.to_json(),
        }


def default_output(checkpoint: str | Path, recipe_name: str) -> Path:
    """``./<checkpoint stem>-<recipe>.safetensors``: where ``scales binarize`` writes without ``-o``."""
    return Path.cwd() / f"{Path(checkpoint).stem}-{recipe_name}.safetensors"


def binarize(
    checkpoint: str | Path | SRDescriptor,
    recipe: str | Path | Recipe | None = None,
    output: str | Path | None = None,
    *,
    calibrate: str | Path | None = None,
    calib_images: int = 16,
    int8_range: str = "mse",
    dry_run: bool = False,
    force: bool = False,
    arch: str | None = None,
    arch_opts: Mapping[str, Any] | None = None,
) -> BinarizeResult:
    """Binarize an FP checkpoint (a path, or an already loaded :class:`SRDescriptor`) with ``recipe``.

    ``recipe``: a built-in name, a ``.yaml`` path or a parsed :class:`Recipe`; None picks the default
    for the network (``transformer`` when its body has linear layers, else ``cnn``). ``output``
    defaults to :func:`default_output`. ``calibrate``: a folder of images whose activations set
    alpha/beta and the INT8 ranges (``calib_images`` seeded crops; ``int8_range``: "mse" (default) or
"percentile", :mod:`scales_cli.binary.int8`). ``dry_run`` plans and costs the rewrite and writes
    nothing. Raises :class:`scales_cli.errors.ScalesError` subclasses with one-line messages.
    """
    from .binary._registry import lookup
    from .binary.int8 import RANGE_METHODS
    from .io import refuse_existing
    from .metrics.cost import count_cost
    from .recipe import Recipe, apply_plan, default_recipe_name, load_recipe, plan, save_student
    from .recipe.calibrate import calibrate_student, calibration_images

    lookup(RANGE_METHODS, int8_range, "--int8-range")
    desc = _descriptor(checkpoint, arch, arch_opts)
    chosen = recipe if isinstance(recipe, Recipe) else load_recipe(str(recipe) if recipe else default_recipe_name(desc))
    if output is None and desc.source is None:
        raise ScalesError("output: a network loaded in memory has no file name to derive the student's from; pass output")
    target = Path(output) if output is not None else default_output(desc.source, chosen.name)  # type: ignore[arg-type]
    if not dry_run:
        refuse_existing(target, force=force)
        if calibrate is not None:
            calibration_images(Path(calibrate), calib_images)
    report = plan(desc, chosen)
    student = apply_plan(desc.model, report)
    costs = {"teacher_cost": count_cost(desc.model, input_range=desc.input_range),
             "student_cost": count_cost(student, input_range=desc.input_range)}
    if dry_run:
        return BinarizeResult(desc, chosen, report, student, **costs)
    calibration = None
    if calibrate is not None:
        calibration = calibrate_student(
            student, Path(calibrate), calib_images, input_range=desc.input_range, int8_range=int8_range
        )
    written = save_student(
        target, student, desc, chosen, force,
        binarized=len(report.binarized), calibration=calibration.to_json() if calibration else None,
    )
    return BinarizeResult(desc, chosen, report, student, **costs, written=written, calibration=calibration)


def _descriptor(checkpoint: str | Path | SRDescriptor, arch: str | None, arch_opts: Mapping[str, Any] | None) -> SRDescriptor:
    """The FP network to binarize; a student file is refused (binarize its teacher instead)."""
    if isinstance(checkpoint, (str, Path)):
        from .loading import load

        desc = load(checkpoint, arch=arch, arch_opts=arch_opts, exported=False)
    else:
        desc = checkpoint
    if "student" in desc.extra:
        raise CheckpointError(f"{desc.source}: is already a binarized student (binarize its FP teacher instead)")
    return desc
