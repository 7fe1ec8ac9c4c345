"""``scales zoo``: the ready binary students shipped in ``zoo/`` and their measured figures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from . import app
from ._common import JsonFlag, console, emit_json


@app.command("zoo")
def zoo(
    folder: Annotated[Path | None, typer.Option("--dir", help="Zoo folder (default: the repository's zoo/).")] = None,
    json_out: JsonFlag = False,
) -> None:
    """List the zoo's binary students: teacher, recipe, Set5/Set14 PSNR, size, OpenVINO speed-up."""
    from ..zoo import read_zoo

    entries = read_zoo(folder)
    if json_out:
        emit_json([{"name": e.name, "path": str(e.path), **e.raw} for e in entries])
        return
    table = Table(title="binary model zoo (figures measured on the stored files; see each NAME.json)")
    for col in ("student", "teacher", "recipe", "trained", "steps", "Set5 dB", "Set14 dB", "FP Set5", "file KB", "OpenVINO speed-up"):
        table.add_column(col, justify="left" if col in ("student", "teacher", "recipe", "trained") else "right")
    for e in entries:
        raw = e.raw
        teacher5 = (raw.get("teacher_results", {}).get("Set5") or {}).get("psnr")
        speed = raw.get("export", {}).get("openvino_speedup")
        size = e.path.stat().st_size / 1024 if e.path.is_file() else None
        table.add_row(
            os.path.relpath(e.path) if e.path.is_absolute() else str(e.path), e.teacher, str(raw.get("recipe", "?")), e.trained, str(raw.get("steps", "?")),
            _db(e.psnr("Set5")), _db(e.psnr("Set14")), _db(teacher5),
            f"{size:,.0f}" if size is not None else "missing", f"{speed:.2f}x" if speed else "-",
        )
    console.print(table)


def _db(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"
