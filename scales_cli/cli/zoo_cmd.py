"""``scales zoo``: the ready binary students shipped in ``zoo/`` and their measured figures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from . import app
from ._common import JsonFlag, console, emit_json

KEPT_SETS = ("Set5", "Set14")  # the sets every manifest scores; --json gives the share kept on each


@app.command("zoo")
def zoo(
    folder: Annotated[Path | None, typer.Option("--dir", help="Zoo folder (default: the repository's zoo/).")] = None,
    json_out: JsonFlag = False,
) -> None:
    """List the zoo's binary students: teacher, recipe, Set5/Set14 PSNR, the share of the teacher's gain kept, size, speed-up."""
    from ..zoo import default_zoo_dir, read_zoo

    root = folder if folder is not None else default_zoo_dir()
    entries = read_zoo(root)
    if json_out:
        emit_json([{"name": e.name, "path": str(e.path), "kept": {d: e.kept(d) for d in KEPT_SETS}, **e.raw} for e in entries])
        return
    table = Table(title=f"binary model zoo: {_shown(root)}/NAME.safetensors (figures measured on the stored files; see each NAME.json)")
    names, words = ("student", "teacher", "recipe"), ("trained",)
    for col in (*names, *words, "steps", "Set5 dB", "Set14 dB", "kept Set14", "file KB", "OpenVINO speed-up"):
        # names never wrap or shorten: rfdn_x4-cnn and rfdn_x4-cnn-int8 must stay apart in a narrow terminal
        table.add_column(col, justify="left" if col in names + words else "right", no_wrap=col in names)
    for e in entries:
        raw = e.raw
        speed = raw.get("export", {}).get("openvino_speedup")
        size = e.path.stat().st_size / 1024 if e.path.is_file() else None
        kept = e.kept("Set14")
        table.add_row(
            e.name, Path(e.teacher).stem, str(raw.get("recipe", "?")), e.trained, str(raw.get("steps", "?")),
            _db(e.psnr("Set5")), _db(e.psnr("Set14")), f"{100 * kept:.2f} %" if kept is not None else "-",
            f"{size:,.0f}" if size is not None else "missing", f"{speed:.2f}x" if speed else "-",
        )
    console.print(table)
    console.print("kept: the share of the FP teacher's PSNR gain over bicubic that the student keeps, (student - bicubic) / (FP - bicubic);"
                  " each teacher's own figures are in NAME.json (teacher_results, bicubic_results)")


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it, else as given."""
    below = path.is_absolute() and path.resolve().is_relative_to(Path.cwd().resolve())
    return os.path.relpath(path) if below else str(path)


def _db(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"
