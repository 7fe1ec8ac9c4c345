"""``scales bench MODEL...``: seconds per forward pass, interleaved, and each model's speed-up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from . import app
from ._common import ArchOpt, ArchOpts, JsonFlag, console, emit_json, load_model, parse_size, progress_bar


@app.command("bench")
def bench_cmd(
    models: Annotated[list[Path], typer.Argument(help="Checkpoints, students or exported .xml/.onnx files; the first is the baseline.")],
    size: Annotated[str, typer.Option("--size", help="LR input WIDTHxHEIGHT.")] = "320x180",
    repeats: Annotated[int, typer.Option("--repeats", help="Timed forward passes per model (interleaved).")] = 7,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for torch and the runtimes.")] = 2,
    arch: ArchOpt = None,
    arch_opt: ArchOpts = None,
    json_out: JsonFlag = False,
) -> None:
    """Time MODELs on one input, interleaved, and show each one's speed-up over the first."""
    from ..bench import bench

    width, height = parse_size(size, "--size")
    loaded = [(str(path), load_model(path, arch, arch_opt)) for path in models]
    with progress_bar(quiet=json_out) as progress:
        task = progress.add_task("timing", total=repeats * len(loaded))
        result = bench(loaded, size=(width, height), repeats=repeats, threads=threads, on_run=lambda: progress.advance(task))
    if json_out:
        emit_json(result.to_json())
        return
    table = Table(title=f"forward pass, 1x3x{height}x{width}, {threads} threads, median of {repeats} (interleaved)")
    for col in ("model", "runtime", "median ms", "min ms", "max ms", "speed-up vs first"):
        table.add_column(col, justify="left" if col in ("model", "runtime") else "right")
    base = result.timings[0].median
    for t in result.timings:
        table.add_row(Path(t.label).name, t.runtime, f"{t.median * 1e3:,.1f}", f"{min(t.seconds) * 1e3:,.1f}",
                      f"{max(t.seconds) * 1e3:,.1f}", f"{base / t.median:.2f}x")
    console.print(table)
    if result.machine is not None:
        console.print(f"machine: {result.machine.describe()}", soft_wrap=True)
