"""``scales finetune STUDENT --teacher FP --data DIR``: distil a binary student from its FP teacher.

Options left out fall back to ``--config finetune.yaml``, then to the documented defaults of
:class:`scales_cli.train.FinetuneConfig`. Under ``torchrun`` the same command trains on every rank.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from . import app
from ._common import JsonFlag, console, emit_json, err_console


@app.command("finetune")
def finetune_cmd(
    student: Annotated[Path, typer.Argument(help="Student file written by scales binarize (.safetensors).")],
    teacher: Annotated[Path, typer.Option("--teacher", "-t", help="The FP checkpoint the student was made from (sha256 checked).")],
    data: Annotated[list[Path] | None, typer.Option("--data", help="Folder of HR images, searched recursively (repeatable); LR made by MATLAB bicubic.")] = None,
    data_lr: Annotated[list[Path] | None, typer.Option("--data-lr", help="Folder of LR-only images (no HR; the teacher's output is the target). Repeatable.")] = None,
    val: Annotated[Path | None, typer.Option("--val", help="Benchmark folder (Set5 layout or HR images) scored every --val-every steps; best -> OUT/student.safetensors.")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Training steps (default 1000).")] = None,
    budget: Annotated[str | None, typer.Option("--budget", help="Train for this long instead of --steps (e.g. 30m, 2h, 1h30m): the steps are picked from a measured step time.")] = None,
    batch: Annotated[int | None, typer.Option("--batch", help="Crops per step and process (default 8).")] = None,
    patch: Annotated[int | None, typer.Option("--patch", help="LR crop size in pixels (default 32).")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate (default 1e-3).")] = None,
    scale_lr: Annotated[float | None, typer.Option("--scale-lr", help="Learning rate of alpha/beta and re-scaling branches (default: --lr).")] = None,
    optimizer: Annotated[str | None, typer.Option("--optimizer", help="adam or adamw (default adam).")] = None,
    weight_decay: Annotated[float | None, typer.Option("--weight-decay", help="Weight decay of the weights (never of alpha/beta/branches) (default 0).")] = None,
    schedule: Annotated[str | None, typer.Option("--schedule", help="cosine, multistep or constant (default cosine).")] = None,
    warmup: Annotated[int | None, typer.Option("--warmup", help="Linear warmup steps (default 50).")] = None,
    loss: Annotated[str | None, typer.Option("--loss", help="Distillation loss: l1 or charbonnier (default l1).")] = None,
    hr_weight: Annotated[float | None, typer.Option("--hr-weight", help="Weight of an extra L1 to the HR crop (needs --data) (default 0).")] = None,
    feature_weight: Annotated[float | None, typer.Option("--feature-weight", help="Weight of body-block feature distillation (default 0).")] = None,
    ema: Annotated[float | None, typer.Option("--ema", help="EMA decay of the weights, 0 = off (default 0).")] = None,
    clip_grad: Annotated[float | None, typer.Option("--clip-grad", help="Max global gradient norm, 0 = off (default 0).")] = None,
    two_stage: Annotated[str | None, typer.Option("--two-stage", help="off, activations-first (FP weights first) or weights-first (FP activations first) (default off).")] = None,
    first_stage: Annotated[float | None, typer.Option("--first-stage", help="Fraction of --steps in the first stage of --two-stage (default 0.5).")] = None,
    blockwise_steps: Annotated[int | None, typer.Option("--blockwise-steps", help="Steps per body block of block-wise reconstruction before the end-to-end steps, 0 = off (default 0).")] = None,
    blockwise_pairs: Annotated[bool | None, typer.Option("--blockwise-pairs/--no-blockwise-pairs", help="Reconstruct two consecutive blocks at a time (default off).")] = None,
    blockwise_inputs: Annotated[str | None, typer.Option("--blockwise-inputs", help="A block's inputs in the block-wise stage: teacher (its own) or student (the reconstructed student's prefix) (default teacher).")] = None,
    blockwise_cache_mb: Annotated[int | None, typer.Option("--blockwise-cache-mb", help="Most teacher activations (MB) held at once by the block-wise stage (default 512).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of crops and initial RNG (default 0).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu or cuda (default auto: cuda with bf16 autocast if present).")] = None,
    val_every: Annotated[int | None, typer.Option("--val-every", help="Validate every N steps, 0 = only at the end (default 250).")] = None,
    save_every: Annotated[int | None, typer.Option("--save-every", help="Write OUT/state.pt every N steps, 0 = only at the end (default 250).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: student.safetensors, last.safetensors, state.pt, history.jsonl, curves.png.")] = Path("finetune-out"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out exactly where its state.pt left it.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Start over in an --out that already holds a run.")] = False,
    config: Annotated[Path | None, typer.Option("--config", help="YAML file of settings (field names as above); options given here win.")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Fine-tune STUDENT by distillation from its FP teacher; writes the best and last students to --out."""
    from ..train import build_config, finetune, read_config_file

    given = {
        "steps": steps, "batch": batch, "patch": patch, "lr": lr, "optimizer": optimizer, "weight_decay": weight_decay,
        "schedule": schedule, "warmup": warmup, "loss": loss, "hr_weight": hr_weight, "feature_weight": feature_weight,
        "ema": ema, "clip_grad": clip_grad, "two_stage": two_stage, "first_stage": first_stage, "blockwise_steps": blockwise_steps,
        "blockwise_pairs": blockwise_pairs, "blockwise_inputs": blockwise_inputs, "blockwise_cache_mb": blockwise_cache_mb, "seed": seed, "device": device, "val_every": val_every, "save_every": save_every,
    }
    if scale_lr is not None:
        given["scale_lr"] = scale_lr
    if budget is not None and steps is not None:
        from ..errors import ScalesError

        raise ScalesError(f"--budget {budget} and --steps {steps}: choose one (how long, or how many steps)")
    settings = build_config(read_config_file(config) if config else {}, given)
    progress = _Progress(quiet=json_out)
    try:
        result = finetune(
            student, teacher, data or [], settings, data_lr=data_lr or [], val=val, out=out,
            resume=resume, force=force, callbacks=[progress], budget=budget,
        )
    finally:
        progress.close()
    if json_out:
        emit_json(result.to_json())
        return
    best = f"{result.best_psnr:.2f} dB at step {result.best_step}" if result.best_psnr is not None else "no --val"
    console.print(f"finetune: {result.steps} steps in {result.wall_s:.0f} s on {result.device}; best val {best}")
    err_console.print(f"wrote {result.student}  (next: scales report {result.student} --data DIR)")


class _Progress:
    """A rich progress bar on stderr (step, loss, lr, it/s, ETA, last val PSNR); only on rank 0."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None
        self.task: Any = None
        self.val = "-"
        self.block_bar: Any = None
        self.block_task: Any = None

    def on_block_start(self, done: int, total: int, units: list[str]) -> None:
        """The block-wise stage's own bar: step over all blocks, the block being trained, its loss."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.block_bar = Progress(
            TextColumn("block-wise"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
            TimeRemainingColumn(), console=err_console, transient=False, disable=self.quiet,
        )
        self.block_bar.start()
        self.block_task = self.block_bar.add_task("blocks", total=total, completed=done, status=f"{len(units)} blocks")

    def on_block_step(self, log: Any) -> None:
        status = f"{log.name} ({log.unit + 1}/{log.units})  loss {log.loss:.4f}"
        self.block_bar.update(self.block_task, completed=log.step, status=status)
        if log.step == log.total:
            self.block_bar.stop()

    def on_start(self, start_step: int, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        if self.block_bar is not None:
            self.block_bar.stop()
        self.bar = Progress(
            TextColumn("finetune"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
            TextColumn("{task.fields[speed]}"), TimeRemainingColumn(),
            console=err_console, transient=False, disable=self.quiet,
        )
        self.bar.start()
        import time

        self.start, self.total, self.t0 = start_step, total, time.perf_counter()
        self.task = self.bar.add_task("train", total=total, completed=start_step, status="", speed="")

    def on_step(self, log: Any) -> None:
        if self.bar is None:
            return
        status = f"loss {log.loss:.4f}  lr {log.lr:.2e}  val {self.val}"
        import time

        done, seconds = log.step - self.start, time.perf_counter() - self.t0
        speed = f"{done / seconds:.2f} it/s" if seconds > 0 and done else ""
        self.bar.update(self.task, completed=log.step, status=status, speed=speed)

    def on_validate(self, log: Any) -> None:
        self.val = f"{log.psnr:.2f} dB"

    def close(self) -> None:
        for bar in (self.bar, self.block_bar):
            if bar is not None:
                bar.stop()
