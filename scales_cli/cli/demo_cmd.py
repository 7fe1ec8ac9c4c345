"""``scales demo``: the whole pipeline on the embedded default, with no downloads.

It runs the real commands in order — inspect, binarize (SCALES recipe, calibrated on an image kept
apart from the scored ones), report (bicubic vs FP vs binary student, params/OPs in the BNN
convention), upscale — on ``scales_cli/demo`` (RLFN x4, MIT; see NOTICE).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.rule import Rule

from ..errors import OutputExistsError
from . import app
from ._common import ForceFlag, console

DEMO = resources.files("scales_cli") / "demo"


def _run(title: str, args: list[str]) -> None:
    console.print(Rule(f"[bold]{title}[/bold]"))
    console.print(f"[dim]$ scales {' '.join(args)}[/dim]")
    app(args, standalone_mode=False)


def _refuse_existing(files: list[Path], folder: Path) -> None:
    from ..io import refuse_existing

    for path in files:
        refuse_existing(path)
    if folder.is_dir() and any(folder.iterdir()):
        raise OutputExistsError(f"{folder}: already holds files (pass --force to overwrite)")


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo's outputs.")] = Path("out/demo"),
    force: ForceFlag = False,
) -> None:
    """Binarize the embedded RLFN x4 with SCALES and compare it with the FP model and bicubic."""
    with resources.as_file(DEMO) as demo_dir:
        ckpt = demo_dir / "RLFN_x4.pth"
        data = demo_dir / "Set5-mini"
        student = out / "RLFN_x4-scales.safetensors"
        flags = ["--force"] if force else []
        lr = sorted((data / "LR_bicubic" / "X4").glob("*.png"))
        if not force:  # every output is checked before the first step writes anything
            _refuse_existing([student, out / "report.md", *(out / d / f"{p.stem}_x4.png" for d in ("fp", "student") for p in lr)],
                             out / "pictures")
        _run("1. what is this checkpoint?", ["inspect", str(ckpt)])
        _run(
            "2. binarize its body with the SCALES recipe (calibrated on demo/calib)",
            ["binarize", str(ckpt), "--recipe", "cnn", "--calibrate", str(demo_dir / "calib"), "-o", str(student), *flags],
        )
        _run(
            "3. measure: bicubic vs FP vs binary student (Y-PSNR/SSIM, params/OPs)",
            [
                "report", str(ckpt), str(student), "--data", str(data), "--bicubic",
                "--markdown", str(out / "report.md"), "--pictures", str(out / "pictures"), *flags,
            ],
        )
        _run("4. upscale with the FP model", ["upscale", str(ckpt), *map(str, lr), "-o", str(out / "fp"), *flags])
        _run("5. upscale with the binary student", ["upscale", str(student), *map(str, lr), "-o", str(out / "student"), *flags])
    console.print(Rule())
    console.print(f"outputs in [bold]{out}[/bold]: student, report.md, pictures/, fp/, student/")
