"""``scales upscale CKPT IMAGE... -o OUTDIR``: run a checkpoint over images, tiled for large ones."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import ScalesError
from . import app
from ._common import (
    ArchOpt, ArchOpts, DeviceOpt, ForceFlag, JsonFlag, emit_json, err_console, load_model, progress_bar,
)


@app.command("upscale")
def upscale(
    checkpoint: Annotated[Path, typer.Argument(help="A .pth/.pt/.safetensors checkpoint (FP or binarized student).")],
    images: Annotated[list[Path], typer.Argument(help="Input images (PNG/JPEG/...; RGB, gray, alpha, palette, 16-bit).")],
    out_dir: Annotated[Path, typer.Option("-o", "--out", help="Folder for <stem>_x<scale>.png outputs.")],
    tile: Annotated[
        int | None,
        typer.Option("--tile", help="Tile edge in input pixels (0: never tile; default: 256 for images over 512x512)."),
    ] = None,
    tile_overlap: Annotated[
        int | None, typer.Option("--tile-overlap", help="Overlap of neighbouring tiles in input pixels (default 16).")
    ] = None,
    device: DeviceOpt = "cpu",
    force: ForceFlag = False,
    arch: ArchOpt = None,
    arch_opt: ArchOpts = None,
    json_out: JsonFlag = False,
) -> None:
    """Upscale IMAGES with CHECKPOINT into OUT as 8-bit PNGs (alpha upscaled bicubically alongside)."""
    from ..imaging import output_name, probe_image, read_image, write_png
    from ..inputs import Upscaler
    from ..io import refuse_existing
    from ..tiling import plan_tiles

    if out_dir.exists() and not out_dir.is_dir():
        raise ScalesError(f"{out_dir}: is a file, not a folder (expected -o OUTDIR, a folder for the outputs)")
    for path in images:
        probe_image(path)  # reject missing / non-image / unsupported-mode inputs before loading a model
    torch_device = _device(device)
    desc = load_model(checkpoint, arch, arch_opt)
    targets = [out_dir / output_name(path, desc.scale) for path in images]
    for target in targets:  # before any work: the first output that exists (or is a folder) stops the run
        refuse_existing(target, force=force)
    _refuse_duplicates(images, targets)
    upscaler = Upscaler.of(desc, torch_device)
    align = desc.size_multiple
    written = []
    with progress_bar(quiet=json_out) as progress, upscaler.placed():
        images_task = progress.add_task("images", total=len(images))
        for path, target in zip(images, targets, strict=True):
            image = read_image(path)
            width, height = image.size
            plan = plan_tiles(height, width, tile, tile_overlap, align)
            tiles_task = progress.add_task(f"  {path.name} tiles", total=None, visible=plan.tile < max(width, height))

            def on_tile(done: int, total: int, _task=tiles_task) -> None:
                progress.update(_task, completed=done, total=total)

            result = upscaler.upscale_image(image, plan, on_tile)
            write_png(result, target, force=force)
            progress.remove_task(tiles_task)
            progress.advance(images_task)
            written.append({"input": str(path), "output": str(target), "mode": image.mode,
                            "size": [result.width, result.height], "tile": plan.tile, "overlap": plan.overlap})
            if not json_out:
                err_console.print(f"wrote {target} ({result.width}x{result.height} {result.mode})")
    if json_out:
        emit_json({"arch": desc.arch, "scale": desc.scale, "outputs": written})


def _device(name: str):  # noqa: ANN202 - torch.device
    """``--device`` checked and resolved by :func:`scales_cli.inputs.resolve_device` (one rule for every command)."""
    from ..inputs import resolve_device

    return resolve_device(name)


def _refuse_duplicates(images: list[Path], targets: list[Path]) -> None:
    seen: dict[Path, Path] = {}
    for path, target in zip(images, targets, strict=True):
        if target in seen:
            raise ScalesError(f"{path}: would write {target} like {seen[target]} (rename one of them)")
        seen[target] = path
