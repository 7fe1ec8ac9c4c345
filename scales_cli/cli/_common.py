"""Shared option aliases and the output helper (human rich output on stdout, or JSON alone)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import DataError

ArchOpt = Annotated[
    str | None,
    typer.Option(
        "--arch",
        help="Architecture name, or FILE.py:ClassName for your own nn.Module (default: auto-detect). "
        "FILE.py is imported, i.e. run: give only files you trust.",
    ),
]
ArchOpts = Annotated[
    list[str] | None,
    typer.Option("--arch-opt", help="Override a hyper-parameter: key=value (repeatable), e.g. res_scale=0.1."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout instead of tables.")]
ForceFlag = Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda[:N] or auto (cuda when present, else cpu).")]

# Piped output gets 132 columns (rich would use 80), so wide per-layer tables keep every column.
console = Console(width=None if sys.stdout.isatty() else 132)
# soft_wrap: a one-line message stays one line on a narrow or piped stderr.
err_console = Console(stderr=True, soft_wrap=True)


def progress_bar(*, quiet: bool = False) -> Progress:
    """The progress bar every command shows on stderr: description, bar, n/total, elapsed.

    Drawn only on a terminal: piped or logged stderr gets no control codes (rich would also leave a
    stray blank line in front of an error message there).
    """
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True, disable=quiet or not err_console.is_terminal,
    )


def emit_json(payload: Any) -> None:
    """Write ``payload`` as indented JSON, alone on stdout (paths and tuples made JSON-friendly)."""
    sys.stdout.write(json.dumps(payload, indent=2, default=_default) + "\n")


def _default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple | set):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def load_model(path: Path, arch: str | None, arch_opts: list[str] | None, *, exported: bool = True):  # noqa: ANN201 - SRDescriptor
    """:func:`scales_cli.loading.load` with raw ``--arch-opt`` strings; torch is imported only when a command runs.

    ``exported=False``: the command needs a torch network; an exported .onnx/.xml is refused in one line.
    """
    from ..loading import load, parse_arch_opts

    desc = load(path, arch=arch, arch_opts=parse_arch_opts(arch_opts), exported=exported)
    for warning in desc.warnings:
        err_console.print(f"warning: {warning}", markup=False, highlight=False)
    return desc


def parse_size(text: str, option: str) -> tuple[int, int]:
    """``"320x180"`` -> ``(320, 180)`` (width, height in LR pixels); anything else names ``option``."""
    w, sep, h = text.lower().partition("x")
    if not sep or not w.strip().isdigit() or not h.strip().isdigit() or int(w) < 1 or int(h) < 1:
        raise DataError(f"{option} {text!r}: expected WIDTHxHEIGHT in LR pixels, e.g. 320x180")
    return int(w), int(h)
