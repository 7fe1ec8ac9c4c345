"""``scales binarize CKPT``: FP checkpoint + recipe -> binary student file (or a dry-run plan)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table

from . import app
from ._common import ArchOpt, ArchOpts, ForceFlag, JsonFlag, console, emit_json, err_console, load_model

if TYPE_CHECKING:  # the command imports torch-backed modules lazily: `scales --help` stays fast
    from ..binarization import BinarizeResult
    from ..binary.options import BinaryOptions
    from ..metrics.cost import CostReport
    from ..recipe import RewriteReport

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
    calibrate: Annotated[Path | None, typer.Option("--calibrate", help="Folder of images (PNG, JPEG, BMP, TIFF, WebP): set alpha/beta from their activations.")] = None,
    calib_images: Annotated[int, typer.Option("--calib-images", help="How many images of --calibrate to use (one seeded random crop each).")] = 16,
    int8_range: Annotated[str, typer.Option("--int8-range", help="How --calibrate sets INT8 activation ranges: mse (least fake-quantization error) or percentile (cuts 0.01 percent of each tail).")] = "mse",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show every layer's decision and the cost; write nothing.")] = False,
    force: ForceFlag = False,
    arch: ArchOpt = None,
    arch_opt: ArchOpts = None,
    json_out: JsonFlag = False,
) -> None:
    """Binarize CHECKPOINT with a recipe and save the student as safetensors."""
    from ..binarization import binarize as run_binarize

    result = run_binarize(
        load_model(checkpoint, arch, arch_opt, exported=False), recipe, output,
        calibrate=calibrate, calib_images=calib_images, int8_range=int8_range, dry_run=dry_run, force=force,
    )
    if dry_run:
        if json_out:
            emit_json({"dry_run": True, **result.to_json()})
        else:
            console.print(_layer_table(checkpoint, result.report, result.student_cost))
            console.print(_summary_table(result))
        return
    if result.calibration is not None and result.calibration.layers == 0 and result.calibration.int8_layers == 0:
        err_console.print(
            f"warning: --calibrate changed nothing: recipe {result.recipe.name}'s binarizers have no threshold "
            "or scale to set from data (sign/approxsign activations)"
        )
    if json_out:
        emit_json(result.to_json())
        return
    console.print(_summary_table(result))
    err_console.print(f"wrote {result.written}  (next: scales report {result.written} --data DIR --ops)")


def _summary_table(result: BinarizeResult) -> Table:
    """Teacher vs student: layers binarized, params, OPs, calibration, the file written."""
    teacher, student = result.teacher_cost, result.student_cost
    w, h = student.input_size
    table = Table(title=f"{result.desc.arch} x{result.desc.scale} -> binary student ({result.recipe.name})", show_header=True)
    table.add_column("", style="bold")
    table.add_column("teacher (FP)", justify="right")
    table.add_column("student", justify="right")
    table.add_row("layers binarized", "0", f"{len(result.report.binarized)} of {len(result.report.layers)}")
    if result.report.int8:
        table.add_row("layers INT8", "0", f"{len(result.report.int8)} of {len(result.report.layers)}")
    table.add_row("params (BNN: FP + int8/4 + bin/32)", f"{teacher.params:,.0f}", f"{student.params:,.0f}")
    table.add_row(f"OPs @ {w}x{h} (FP + int8/4 + bin/64)", f"{teacher.ops / 1e9:,.2f}G", f"{student.ops / 1e9:,.2f}G")
    if result.calibration is not None:
        c = result.calibration
        int8 = f", {c.int8_layers} INT8 ranges ({c.int8_range})" if c.int8_layers else ""
        table.add_row("calibration", "", f"{c.images} crops {c.crop}px, {c.layers} layers{int8}")
    if result.written is not None:
        table.add_row("written", "", str(result.written))
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
        style = {"binarize": "bold green", "int8": "bold cyan"}.get(d.decision, "dim")
        table.add_row(
            d.path, d.region, f"{_TYPE_ABBR.get(d.type, d.type)} {'x'.join(map(str, d.shape))}", f"[{style}]{d.decision}[/]", d.rule,
            _options_text(d.options), f"{params:,.0f}", f"{ops / 1e6:,.1f}",
        )
    return table
