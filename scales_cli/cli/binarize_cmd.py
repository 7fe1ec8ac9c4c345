"""``scales binarize CKPT``: FP checkpoint + recipe -> binary student file (or a dry-run plan)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table

from . import app
from ._common import ArchOpt, ArchOpts, ForceFlag, JsonFlag, console, emit_json, err_console, load_model

if TYPE_CHECKING:  # the command imports torch-backed modules lazily: `scales --help` stays fast
    from ..archs.descriptor import SRDescriptor
    from ..binary.options import BinaryOptions
    from ..metrics.cost import CostReport
    from ..recipe import RewriteReport
    from ..recipe.calibrate import CalibrationInfo

RecipeOpt = Annotated[
    str | None,
    typer.Option("--recipe", "-r", help="Built-in recipe name (cnn, cnn-full, transformer, xnor, ...) or a .yaml path. "
                 "Default: transformer for networks with linear layers in the body, else cnn."),
]


@app.command("binarize")
def binarize(
    checkpoint: Annotated[Path, typer.Argument(help="FP checkpoint (.pth/.pt/.safetensors).")],
    recipe: RecipeOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Student file (default: ./<ckpt stem>-<recipe>.safetensors).")] = None,
    calibrate: Annotated[Path | None, typer.Option("--calibrate", help="Folder of PNG/JPEG images: set alpha/beta from their activations.")] = None,
    calib_images: Annotated[int, typer.Option("--calib-images", help="How many images of --calibrate to use (one seeded random crop each).")] = 16,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show every layer's decision and the cost; write nothing.")] = False,
    force: ForceFlag = False,
    arch: ArchOpt = None,
    arch_opt: ArchOpts = None,
    json_out: JsonFlag = False,
) -> None:
    """Binarize CHECKPOINT with a recipe and save the student as safetensors."""
    from ..io import refuse_existing
    from ..metrics.cost import count_cost
    from ..recipe import apply_plan, default_recipe_name, load_recipe, plan, save_student
    from ..recipe.calibrate import calibrate_student, calibration_images

    desc = load_model(checkpoint, arch, arch_opt)
    if "student" in desc.extra:
        from ..errors import CheckpointError

        raise CheckpointError(f"{checkpoint}: is already a binarized student (binarize its FP teacher instead)")
    chosen = load_recipe(recipe or default_recipe_name(desc))
    target = output or Path.cwd() / f"{checkpoint.stem}-{chosen.name}.safetensors"
    if not dry_run:  # a bad output path or calibration folder fails before the rewrite, not after it
        refuse_existing(target, force=force)
        if calibrate is not None:
            calibration_images(calibrate, calib_images)
    report = plan(desc, chosen)
    student = apply_plan(desc.model, report)
    teacher_cost = count_cost(desc.model, input_range=desc.input_range)
    student_cost = count_cost(student, input_range=desc.input_range)

    if dry_run:
        planned = _Outcome(desc, chosen.name, report, teacher_cost, student_cost)
        if json_out:
            emit_json({"dry_run": True, **planned.to_json()})
        else:
            console.print(_layer_table(checkpoint, report, student_cost))
            console.print(planned.table())
        return

    calibration = None
    if calibrate is not None:
        calibration = calibrate_student(student, calibrate, calib_images, input_range=desc.input_range)
        if calibration.layers == 0:
            err_console.print(
                f"warning: --calibrate changed nothing: recipe {chosen.name}'s binarizers have no threshold "
                "or scale to set from data (sign/approxsign activations)"
            )
    written = save_student(
        target, student, desc, chosen, force,
        binarized=len(report.binarized), calibration=calibration.to_json() if calibration else None,
    )
    outcome = _Outcome(desc, chosen.name, report, teacher_cost, student_cost, written, calibration)
    if json_out:
        emit_json(outcome.to_json())
        return
    console.print(outcome.table())
    err_console.print(f"wrote {written}  (next: scales report {written} --data DIR --ops)")


@dataclass(frozen=True)
class _Outcome:
    """What one run produced (a dry run has no ``written`` file and no ``calibration``): the JSON
    summary and the teacher-vs-student table are two views of it."""

    desc: SRDescriptor
    recipe_name: str
    report: RewriteReport
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
            "recipe": self.recipe_name,
            "output": str(self.written) if self.written else None,
            "calibration": self.calibration.to_json() if self.calibration else None,
            "teacher": {"params": self.teacher_cost.params, "ops": self.teacher_cost.ops},
            "student": {
                "params": student.params,
                "params_fp": student.params_fp,
                "params_binary": student.params_binary,
                "ops": student.ops,
                "macs_fp": student.macs_fp,
                "macs_binary": student.macs_binary,
            },
            "ops_input_size": list(student.input_size),
            "convention": student.convention,
            "rewrite": self.report.to_json(),
        }

    def table(self) -> Table:
        teacher, student = self.teacher_cost, self.student_cost
        w, h = student.input_size
        table = Table(title=f"{self.desc.arch} x{self.desc.scale} -> binary student ({self.recipe_name})", show_header=True)
        table.add_column("", style="bold")
        table.add_column("teacher (FP)", justify="right")
        table.add_column("student", justify="right")
        table.add_row("layers binarized", "0", f"{len(self.report.binarized)} of {len(self.report.layers)}")
        table.add_row("params (BNN: FP + bin/32)", f"{teacher.params:,.0f}", f"{student.params:,.0f}")
        table.add_row(f"OPs @ {w}x{h} (FP + bin/64)", f"{teacher.ops / 1e9:,.2f}G", f"{student.ops / 1e9:,.2f}G")
        if self.calibration is not None:
            c = self.calibration
            table.add_row("calibration", "", f"{c.images} crops {c.crop}px, {c.layers} layers")
        if self.written is not None:
            table.add_row("written", "", str(self.written))
        return table


def _subtree(cost: CostReport, path: str) -> tuple[float, float]:
    """BNN-convention params and OPs of the layer at ``path`` plus its children (re-scaling branches)."""
    rows = [c for c in cost.layers if c.name == path or c.name.startswith(path + ".")]
    return sum(c.params for c in rows), sum(c.ops for c in rows)


def _options_text(options: BinaryOptions | None) -> str:
    """The preset the options equal (``scales``), else the nearest preset plus the fields that differ."""
    if options is None:
        return ""
    from dataclasses import asdict

    from ..binary.presets import PRESETS

    mine = asdict(options)
    best = min(PRESETS, key=lambda name: sum(mine[k] != v for k, v in asdict(PRESETS[name]).items()))
    diff = [f"{k}={v}" for k, v in mine.items() if asdict(PRESETS[best])[k] != v]
    return " ".join([best, *diff])


_TYPE_ABBR = {"conv2d": "conv", "linear": "fc"}


def _layer_table(checkpoint: Path, report: RewriteReport, cost: CostReport) -> Table:
    table = Table(
        title=f"{checkpoint.name}: recipe {report.recipe} (dry run: nothing written)", box=box.SIMPLE_HEAD, pad_edge=False
    )
    # Text columns wrap (folded at any character: long transformer paths), the widest first; the
    # short fixed ones and the numbers never do, so a narrow terminal never truncates a figure.
    table.add_column("layer", overflow="fold", min_width=12)
    for col in ("region", "weight", "decision"):
        table.add_column(col, no_wrap=True)
    table.add_column("rule", overflow="fold")
    table.add_column("options", overflow="fold")
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("OPs (M)", justify="right", no_wrap=True)
    for d in report.layers:
        params, ops = _subtree(cost, d.path)
        style = "bold green" if d.decision == "binarize" else "dim"
        table.add_row(
            d.path, d.region, f"{_TYPE_ABBR.get(d.type, d.type)} {'x'.join(map(str, d.shape))}", f"[{style}]{d.decision}[/]", d.rule,
            _options_text(d.options), f"{params:,.0f}", f"{ops / 1e6:,.1f}",
        )
    return table
