"""``scales finetune STUDENT --teacher FP --data DIR``: distil a binary student from its FP teacher.

Every :class:`scales_cli.train.FinetuneConfig` field is an option, generated from its one declaration
(name, type, default, help) in :mod:`scales_cli.train.config`. Options left out fall back to
``--config finetune.yaml``, then to those defaults. Under ``torchrun`` the same command trains on
every rank and rank 0 alone prints the result.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from ..train.config import Setting, settings
from . import app
from ._common import JsonFlag, console, emit_json, err_console

# a FinetuneConfig field's type -> the option's value type (a tuple is a repeatable option)
CLI_TYPES: dict[Any, Any] = {int: int, float: float, str: str, bool: bool, float | None: float, tuple[float, ...]: list[float]}


def finetune_cmd(
    student: Annotated[Path, typer.Argument(help="Student file written by scales binarize (.safetensors).")],
    teacher: Annotated[Path, typer.Option("--teacher", "-t", help="The FP checkpoint the student was made from (sha256 checked).")],
    data: Annotated[list[Path] | None, typer.Option("--data", help="Folder of HR images, searched recursively (repeatable); LR made by MATLAB bicubic.")] = None,
    data_lr: Annotated[list[Path] | None, typer.Option("--data-lr", help="Folder of LR-only images (no HR; the teacher's output is the target), used as inputs as they are. Prefer --data where HR exists: bicubic LR matches the test inputs. Repeatable.")] = None,
    val: Annotated[Path | None, typer.Option("--val", help="Benchmark folder (Set5 layout or HR images) scored every --val-every steps; best -> OUT/student.safetensors.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: student.safetensors, last.safetensors, state.pt, history.jsonl, curves.png.")] = Path("finetune-out"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out exactly where its state.pt left it.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Start over in an --out that already holds a run.")] = False,
    config: Annotated[Path | None, typer.Option("--config", help="YAML file of settings (the option names, - or _); options given here win.")] = None,
    budget: Annotated[str | None, typer.Option("--budget", help=(
        "Train for this long instead of --steps (e.g. 30m, 2h, 1h30m; loading included): the steps are planned from "
        "measured step, validation and save times and re-planned during the run (the lr schedule follows the new end); "
        "if time runs out anyway, the state is saved and it exits 124 (--resume gets the time left). "
        "Budgeted runs are not bit-reproducible: their steps depend on timing."))] = None,
    json_out: JsonFlag = False,
    **options: Any,
) -> None:
    """Fine-tune STUDENT by distillation from its FP teacher; writes the best and last students to --out."""
    from ..train import build_config, finetune, read_config_file

    # an option left out is None (a repeatable one: empty): the config file or the default applies
    given = {name: value for name, value in options.items() if value is not None and value != []}
    if budget is not None and "steps" in given:
        from ..errors import ScalesError

        raise ScalesError(f"--budget {budget} and --steps {given['steps']}: choose one (how long, or how many steps)")
    run_config = build_config(read_config_file(config) if config else {}, given)
    progress = _Progress(quiet=json_out)
    try:
        result = finetune(
            student, teacher, data or [], run_config, data_lr=data_lr or [], val=val, out=out,
            resume=resume, force=force, callbacks=[progress], budget=budget,
        )
    finally:
        progress.close()
    if not result.main_rank:  # under torchrun the other ranks trained alongside; rank 0 reports
        return
    if json_out:
        emit_json(result.to_json())
        return
    best = f"{result.best_psnr:.2f} dB at step {result.best_step}" if result.best_psnr is not None else "no --val"
    console.print(f"finetune: {result.steps} steps in {result.wall_s:.0f} s on {result.device}; best val {best}")
    err_console.print(f"wrote {result.student}  (next: scales report {result.student} --data DIR)")


def _option(s: Setting) -> inspect.Parameter:
    """The keyword parameter Typer turns into ``s.flag`` (None when not given)."""
    kind = CLI_TYPES.get(s.type)
    if kind is None:  # a developer's slip, caught by the option test before any user meets it
        raise TypeError(f"FinetuneConfig.{s.name}: type {s.type} has no command-line form (add it to CLI_TYPES)")
    annotation = Annotated[kind | None, typer.Option(s.flag, help=s.help_with_default)]
    return inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=None)


def _with_config_options(command: Any) -> Any:
    """``command``'s own parameters with one option per :class:`FinetuneConfig` field spliced in
    after ``--val`` (one declaration in train/config.py: a new setting needs no edit here)."""
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in inspect.signature(command, eval_str=True).parameters.values()
           if p.kind is not inspect.Parameter.VAR_KEYWORD]
    at = [p.name for p in own].index("val") + 1
    command.__signature__ = inspect.Signature([*own[:at], *(_option(s) for s in settings()), *own[at:]])
    return command


app.command("finetune")(_with_config_options(finetune_cmd))


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
        self.bar.update(self.task, completed=log.step, total=log.total, status=status, speed=speed)  # a budget moves the total

    def on_validate(self, log: Any) -> None:
        self.val = f"{log.psnr:.2f} dB"

    def close(self) -> None:
        for bar in (self.bar, self.block_bar):
            if bar is not None:
                bar.stop()
