"""``scales export MODEL -o OUT``: a student (or FP checkpoint) -> ONNX / OpenVINO IR, parity-checked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import app
from ._common import ArchOpt, ArchOpts, ForceFlag, JsonFlag, console, emit_json, err_console, load_model


@app.command("export")
def export(
    model: Annotated[Path, typer.Argument(help="Student (.safetensors from scales binarize) or FP checkpoint.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output file: .onnx (scales, float) or .xml (+ .bin, openvino).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="scales (custom 1-bit ops), float (standard ONNX) or openvino (IR).")] = "scales",
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset (13..20).")] = 17,
    check: Annotated[Path | None, typer.Option("--check", help="Folder of LR images for the parity check (default: the embedded demo images).")] = None,
    no_check: Annotated[bool, typer.Option("--no-check", help="Skip the parity check (not recommended).")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Fail also on images whose only difference is binarization flips at the threshold caused by float rounding.")] = False,
    force: ForceFlag = False,
    arch: ArchOpt = None,
    arch_opt: ArchOpts = None,
    json_out: JsonFlag = False,
) -> None:
    """Export MODEL and prove on real images that the file computes what the torch model computes."""
    from ..export.parity import check_images
    from ..export.pipeline import export_model, prepare

    prepare(output, fmt, force=force, opset=opset)  # bad options and outputs fail before the model loads
    if not no_check:
        check_images(check)
    desc = load_model(model, arch, arch_opt, exported=False)
    result = export_model(
        desc.model, output, fmt, input_range=desc.input_range, source=str(model), opset=opset,
        metadata={"arch": desc.arch, "scale": desc.scale, "min_size": desc.min_size,
                  "recipe": desc.extra.get("student", {}).get("recipe", "")},
        check_dir=check, check=not no_check, strict=strict, force=force,
    )
    if json_out:
        emit_json(result.to_json())
        return
    for f in result.files:
        console.print(f"{f}  {result.sizes[f.name]:,} bytes")
    if result.parity is None:
        err_console.print("parity: not checked (--no-check)")
    else:
        p = result.parity.worst
        console.print(
            f"parity ({result.runtime} vs torch, {len(result.parity.images)} images): worst PSNR {p.psnr_db:.1f} dB, "
            f"uint8 match {p.uint8_match:.4%}; {result.binary_layers} binary layers, {result.int8_layers} INT8 layers"
        )
        for image in result.parity.flipped:
            err_console.print(f"note: {image.image}: {image.divergence.describe()}; the outputs then differ by "  # type: ignore[union-attr]
                              f"{image.psnr_db:.1f} dB, {1 - image.uint8_match:.2%} of uint8 pixels (not an export error; --strict fails on it)")
