"""``scales inspect CKPT``: what was loaded — architecture, scale, hyper-parameters, regions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from . import app
from ._common import ArchOpt, ArchOpts, JsonFlag, console, emit_json, load_model


@app.command("inspect")
def inspect(
    checkpoint: Annotated[Path, typer.Argument(help="A .pth/.pt/.safetensors checkpoint (FP or binarized student).")],
    arch: ArchOpt = None,
    arch_opt: ArchOpts = None,
    json_out: JsonFlag = False,
) -> None:
    """Detect the architecture of CHECKPOINT and show its hyper-parameters and regions."""
    desc = load_model(checkpoint, arch, arch_opt)
    if json_out:
        emit_json(desc.to_json())
        return
    table = Table(title=str(checkpoint), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("architecture", desc.arch)
    table.add_row("scale", f"x{desc.scale} ({desc.scale_source})")
    table.add_row("parameters", f"{desc.params:,}")
    table.add_row("input range", f"[0, {desc.input_range:g}]")
    if desc.size_multiple > 1:
        table.add_row("input sides", f"padded to multiples of {desc.size_multiple} (attention window)")
    table.add_row("sha256", (desc.sha256 or "")[:16])
    for key, value in desc.hparams.items():
        table.add_row(f"  {key}", str(value))
    for region, paths in desc.regions.items():
        shown = ", ".join(paths[:6]) + (f" … (+{len(paths) - 6})" if len(paths) > 6 else "")
        table.add_row(f"region {region}", shown or "-")
    for key, value in desc.extra.items():
        items = value.items() if isinstance(value, dict) else [("", value)]
        for sub, val in items:
            table.add_row(f"{key} {sub}".strip(), str(val))
    console.print(table)
