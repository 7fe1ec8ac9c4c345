"""``scales demo``: the whole pipeline on the embedded default, with no downloads, in a few minutes.

It runs the real commands in order on ``scales_cli/demo`` (RLFN x4, MIT; see NOTICE): inspect ->
binarize (calibrated on ``calib/``) -> a short ``finetune`` on ``train/`` (a few T91 images, kept apart
from the scored ones, used as HR: the student sees their MATLAB-bicubic LR, as in the scored images, and
the FP teacher's outputs on that LR are the targets; validated on Set5-mini a few times so that
``curves.png`` shows the PSNR rising — the report scores ``last``, not the best validated weights) -> report
(bicubic, FP, calibrated, fine-tuned and — when the repository's zoo has one — the zoo student of the
same teacher) -> export to OpenVINO with its parity check -> bench (OpenVINO student vs OpenVINO
teacher, and the torch teacher) -> upscale with the exported student. Its last screen is one table.
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.rule import Rule
from rich.table import Table

from ..errors import OutputExistsError, ScalesError
from . import app
from ._common import ForceFlag, console, parse_size

DEMO = resources.files("scales_cli") / "demo"
FINETUNE_STEPS = 400  # about 2 minutes of a 2-core CPU for the RLFN x4 student (batch 8, LR patch 24)
FINETUNE_PATCH = "24"  # LR pixels: 96 px HR crops fit every image of demo/train (the smallest is 114x119)
BENCH_SIZE = "320x180"
VALIDATIONS = 8  # PSNR points on curves.png: Set5-mini is two small images, a validation costs about a second
RECIPE = "cnn"  # the demo's binarize recipe; the zoo row is the zoo's student of the same recipe
LABELS = ("FP", "calibrated", "fine-tuned", "zoo")  # report rows and picture panels, in the order of the models


def _run(title: str, args: list[str]) -> None:
    console.print(Rule(f"[bold]{title}[/bold]"))
    console.print(f"[dim]$ scales {' '.join(args)}[/dim]")
    app(args, standalone_mode=False)


def _outputs(out: Path, lr: list[Path]) -> tuple[list[Path], list[Path]]:
    """(files, folders) the demo writes: all are checked before the first step runs."""
    files = [out / name for name in ("RLFN_x4-calibrated.safetensors", "report.md", "report.json", "curves.png")]
    files += [out / "export" / name for name in ("student.xml", "student.bin", "teacher.xml", "teacher.bin")]
    files += [out / "upscaled" / f"{p.stem}_x4.png" for p in lr]
    return files, [out / "finetune", out / "pictures"]


def _refuse_existing(files: list[Path], folders: list[Path]) -> None:
    from ..io import refuse_existing

    for path in files:
        refuse_existing(path)
    for folder in folders:
        if folder.is_dir() and any(folder.iterdir()):
            raise OutputExistsError(f"{folder}: already holds files (pass --force to overwrite)")


def _zoo_student() -> Path | None:
    """The zoo's RLFN x4 student of the demo's own recipe (not a mixed one), so that its row compares like with like."""
    from ..zoo import default_zoo_dir

    found = default_zoo_dir() / f"rlfn_x4-{RECIPE}.safetensors"
    return found if found.is_file() else None


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo's outputs.")] = Path("out/demo"),
    steps: Annotated[int, typer.Option("--steps", help="Fine-tuning steps (the default takes 2-3 minutes on 2 cores).")] = FINETUNE_STEPS,
    force: ForceFlag = False,
) -> None:
    """Binarize the embedded RLFN x4, fine-tune it briefly, export it to OpenVINO and time it against the FP model."""
    if out.exists() and not out.is_dir():
        raise ScalesError(f"--out {out}: is a file (expected a folder for the demo's outputs)")
    with resources.as_file(DEMO) as demo_dir:
        ckpt = demo_dir / "RLFN_x4.pth"
        data = demo_dir / "Set5-mini"
        lr = sorted((data / "LR_bicubic" / "X4").glob("*.png"))
        calibrated = out / "RLFN_x4-calibrated.safetensors"
        tuned = out / "finetune"
        exported = out / "export"
        flags = ["--force"] if force else []
        if not force:  # every output is checked before the first step writes anything
            _refuse_existing(*_outputs(out, lr))
        zoo = _zoo_student()
        exported.mkdir(parents=True, exist_ok=True)

        _run("1. what is this checkpoint?", ["inspect", str(ckpt)])
        _run("2. binarize its body with the SCALES recipe (calibrated on demo/calib)",
             ["binarize", str(ckpt), "--recipe", RECIPE, "--calibrate", str(demo_dir / "calib"), "-o", str(calibrated), *flags])
        val_every = max(1, steps // VALIDATIONS)
        _run(f"3. fine-tune by distillation from the FP model: {steps} steps on bicubic LR of demo/train, "
             f"validated on Set5-mini every {val_every} steps",
             ["finetune", str(calibrated), "--teacher", str(ckpt), "--data", str(demo_dir / "train"), "--val", str(data),
              "--steps", str(steps), "--batch", "8", "--patch", FINETUNE_PATCH, "--val-every", str(val_every), "--out", str(tuned), *flags])
        shutil.copyfile(tuned / "curves.png", out / "curves.png")
        student = tuned / "last.safetensors"
        models = [str(ckpt), str(calibrated), str(student), *([str(zoo)] if zoo else [])]
        labels = [arg for label in LABELS[: len(models)] for arg in ("--label", label)]
        _run("4. measure: bicubic vs FP vs calibrated vs fine-tuned" + (" vs zoo" if zoo else "") + " (Y-PSNR/SSIM, params/OPs)",
             ["report", *models, *labels, "--data", str(data), "--bicubic", "--json", str(out / "report.json"),
              "--markdown", str(out / "report.md"), "--pictures", str(out / "pictures"), *flags])
        _run("5. export the fine-tuned student to OpenVINO (binary convs as xnor-popcount; parity checked on demo images)",
             ["export", str(student), "-o", str(exported / "student.xml"), "--format", "openvino", *flags])
        _run("6. export the FP model to OpenVINO too (the fair speed baseline)",
             ["export", str(ckpt), "-o", str(exported / "teacher.xml"), "--format", "openvino", *flags])
        console.print(Rule("[bold]7. time them: OpenVINO student vs OpenVINO FP model vs torch FP model[/bold]"))
        console.print(f"[dim]$ scales bench {exported / 'teacher.xml'} {exported / 'student.xml'} {ckpt} --size {BENCH_SIZE}[/dim]")
        timing = _bench([exported / "teacher.xml", exported / "student.xml", ckpt])
        _run("8. upscale with the exported student", ["upscale", str(exported / "student.xml"), *map(str, lr), "-o", str(out / "upscaled"), *flags])
    console.print(Rule())
    console.print(_summary(json.loads((out / "report.json").read_text()), timing, models))
    console.print(f"outputs in [bold]{out}[/bold]: report.md, curves.png, pictures/ (crops), export/, upscaled/, finetune/")


def _bench(paths: list[Path]) -> dict[str, float]:
    from ..bench import bench
    from ..loading import load

    result = bench([(str(p), load(p)) for p in paths], size=parse_size(BENCH_SIZE, "--size"), repeats=5, threads=2)
    med = {Path(t.label).name: t.median for t in result.timings}
    return {"openvino_teacher_ms": med["teacher.xml"] * 1e3, "openvino_student_ms": med["student.xml"] * 1e3,
            "torch_teacher_ms": med[paths[2].name] * 1e3}


def _summary(report: dict, timing: dict[str, float], models: list[str]) -> Table:
    """The one table to read at a glance: dB per model, and the measured speed-up."""
    names = {models[0]: "FP teacher (RLFN x4)", models[1]: "binary, calibrated only", models[2]: "binary, fine-tuned (this demo)"}
    if len(models) > 3:
        names[models[3]] = f"binary, zoo ({Path(models[3]).name})"
    table = Table(title="scales demo: RLFN x4 on Set5-mini (Y-PSNR / SSIM); forward-pass time at 320x180 on this CPU (median of 5)")
    for col in ("model", "PSNR dB", "SSIM", "params", "OPs (G)"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for row in report["groups"][0]["rows"]:
        label = "bicubic" if row["kind"] == "bicubic" else names.get(row["checkpoint"], row["label"])
        result = next(iter(row["results"].values()))
        cost = row.get("cost") or {}
        table.add_row(label, f"{result['psnr']:.2f}", f"{result['ssim']:.4f}",
                      f"{cost['params']:,.0f}" if cost else "-", f"{cost['ops'] / 1e9:.2f}" if cost else "-")
    ov_t, ov_s, pt_t = timing["openvino_teacher_ms"], timing["openvino_student_ms"], timing["torch_teacher_ms"]
    table.add_section()
    table.add_row("time: torch FP teacher", f"{pt_t:,.0f} ms", "", "", "")
    table.add_row("time: OpenVINO FP teacher", f"{ov_t:,.0f} ms", "", "", "")
    table.add_row("time: OpenVINO binary student", f"{ov_s:,.0f} ms", "", "", "")
    table.add_row("speed-up of the student vs OpenVINO FP", f"{ov_t / ov_s:.2f}x", "", "", "")
    table.add_row("speed-up of the student vs torch FP", f"{pt_t / ov_s:.2f}x", "", "", "")
    return table
