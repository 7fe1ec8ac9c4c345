"""``scales report MODEL... --data DIR``: PSNR/SSIM and Params/OPs tables like the SCALES paper's.

Rows: bicubic (``--bicubic``) and each model; columns: Params, OPs (or FLOPs = 2 x OPs with
``--flops``), PSNR/SSIM per dataset. Datasets: ``--data DIR`` (benchmark layout or HR images alone)
and ``--hr DIR [--lr DIR]`` (HR folder, LR folder paired by name). The library does the work
(:mod:`scales_cli.report`); this module parses, shows progress and writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import DataError, OutputExistsError
from ..metrics.conventions import Channel, GrayConvention
from . import app
from ._common import ArchOpt, ArchOpts, DeviceOpt, ForceFlag, console, err_console, load_model, parse_size, progress_bar


def _refuse_existing(files: list[Path | None], pictures: Path | None, force: bool) -> None:
    """Fail before any work rather than after minutes of evaluation (the writes check again)."""
    from ..io import refuse_existing  # torch-backed: imported when the command runs

    for f in files:
        if f is not None:
            refuse_existing(f, force=force)
    if not force and pictures is not None and pictures.is_dir() and any(pictures.glob("x*_*.png")):
        raise OutputExistsError(f"{pictures}: already holds report pictures (pass --force to overwrite)")


@app.command("report")
def report(
    models: Annotated[
        list[Path] | None, typer.Argument(help="Checkpoints to compare (architecture auto-detected).")
    ] = None,
    data: Annotated[
        list[Path] | None,
        typer.Option("--data", help="Dataset folder: DIR/HR + DIR/LR_bicubic/X{s}/ or HR images only (repeatable)."),
    ] = None,
    hr: Annotated[
        list[Path] | None,
        typer.Option("--hr", help="Folder of HR images (repeatable); LR made on the fly unless --lr is given."),
    ] = None,
    lr: Annotated[
        list[Path] | None,
        typer.Option("--lr", help="LR folder for the --hr at the same position; files paired by name (NAMEx{s} or NAME)."),
    ] = None,
    scale: Annotated[
        int | None, typer.Option("--scale", help="Scale (default: the models' own; all must agree).")
    ] = None,
    bicubic: Annotated[bool, typer.Option("--bicubic", help="Add the MATLAB-exact bicubic baseline row.")] = False,
    ops: Annotated[bool, typer.Option("--ops", help="Also print each model's per-layer cost table.")] = False,
    flops: Annotated[
        bool, typer.Option("--flops", help="Show FLOPs = 2 x OPs instead of OPs (one MAC = a multiply and an add).")
    ] = False,
    attention_macs: Annotated[
        bool,
        typer.Option(
            "--attention-macs/--no-attention-macs",
            help="Count attention matmuls (q k^T, attn v) in OPs; --no-attention-macs counts conv/linear only, "
            "the convention of SwinIR's published Mult-Adds.",
        ),
    ] = True,
    input_size: Annotated[
        str, typer.Option("--input-size", help="LR size WxH for Params/OPs (default 320x180 -> 1280x720 at x4).")
    ] = "320x180",
    gray_convention: Annotated[
        GrayConvention,
        typer.Option("--gray-convention", help="How gray images (Set14 bridge) are scored: raw intensity or Y of RGB."),
    ] = GrayConvention.AS_Y,
    channel: Annotated[Channel, typer.Option("--channel", help="Score Y (standard) or RGB.")] = Channel.Y,
    group_by_scale: Annotated[
        bool, typer.Option("--group-by-scale", help="Allow models of different scales: one table per scale.")
    ] = False,
    json_file: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON (docs/report-json.md).")] = None,
    markdown_file: Annotated[Path | None, typer.Option("--markdown", help="Write Markdown tables to paste.")] = None,
    pictures: Annotated[
        Path | None, typer.Option("--pictures", help="Folder for side-by-side crops where models differ most.")
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", help="Row label of the MODEL at the same position (repeatable; default: file stems).")
    ] = None,
    arch: ArchOpt = None,
    arch_opt: ArchOpts = None,
    device: DeviceOpt = "cpu",
    force: ForceFlag = False,
) -> None:
    """Score MODELs (and bicubic) on each --data set: PSNR/SSIM, Params and OPs in one table."""
    from ..metrics.datasets import data_sources
    from ..report.build import build_report
    from ..report.render import layer_table, summary_table

    from ..inputs import resolve_device

    size = parse_size(input_size, "--input-size")
    device = str(resolve_device(device))
    if pictures is not None and not models:
        raise DataError("--pictures compares model outputs: pass at least one MODEL")
    if lr and not hr:
        raise DataError("--lr needs the --hr folder it belongs to (--hr DIR --lr DIR)")
    sources = data_sources(data or [], hr or [], lr or [])
    _refuse_existing([json_file, markdown_file], pictures, force)
    with progress_bar() as progress:
        task = progress.add_task("scoring images", total=None)
        result = build_report(
            models or [], sources, scale=scale, loader=lambda p: load_model(p, arch, arch_opt), labels=label, bicubic=bicubic, gray=gray_convention, channel=channel,
            input_size=size, attention_macs=attention_macs, group_by_scale=group_by_scale, device=device, keep_outputs=pictures is not None,
            on_plan=lambda n: progress.update(task, total=n),
            on_image=lambda name: progress.advance(task),
        )
    for group in result.groups:
        console.print(summary_table(result, group, flops=flops))
        if ops:
            for row in group.rows:
                if row.cost is not None:
                    console.print(layer_table(row.label, row.cost))
    _write_outputs(result, json_file, markdown_file, pictures, layers=ops, flops=flops, force=force)


def _write_outputs(result, json_file: Path | None, markdown_file: Path | None, pictures: Path | None, *,  # noqa: ANN001
                   layers: bool, flops: bool, force: bool) -> None:
    """The files a report was asked for (each checked before the scoring began), written atomically."""
    import json

    from ..io import atomic_write
    from ..report.render import markdown, to_json

    if json_file is not None:
        text = json.dumps(to_json(result, layers=layers), indent=2) + "\n"
        atomic_write(json_file, lambda tmp: tmp.write_text(text), force=force)
        err_console.print(f"wrote {json_file}")
    if markdown_file is not None:
        text = markdown(result, flops=flops)
        atomic_write(markdown_file, lambda tmp: tmp.write_text(text), force=force)
        err_console.print(f"wrote {markdown_file}")
    if pictures is not None:
        from ..report.pictures import make_pictures

        for pic in make_pictures(result, pictures, force=force):
            err_console.print(f"wrote {pic.path}")
