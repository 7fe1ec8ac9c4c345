"""The fine-tuning loop: distil a binary student from its FP teacher, observably and resumably.

>>> from scales_cli import finetune                                                 # doctest: +SKIP
>>> from scales_cli.train import FinetuneConfig                                     # doctest: +SKIP
>>> result = finetune("IMDN_x4-cnn.safetensors", "IMDN_x4.pth", ["T91"],             # doctest: +SKIP
...                   FinetuneConfig(steps=1000), val="Set5", out="ft")
>>> result.best_psnr                                                                 # doctest: +SKIP

This module is the driver; the step itself (T = teacher(x) without gradients, S = student(x), the
loss of :mod:`.losses`, backward, optional clipping, one optimizer and scheduler step, the EMA update)
is :meth:`.distiller.Distiller.step`, fed batches of LR crops x (``input_range`` units). Every ``log_every`` steps a ``train`` record goes to ``OUT/history.jsonl``;
every ``val_every`` steps (and at the end) the student (its EMA when on) is scored with the
project's evaluation (Y-PSNR, :func:`scales_cli.metrics.evaluate.evaluate_model`), a ``val`` record
is written, ``OUT/curves.png`` redrawn and ``OUT/student.safetensors`` replaced when it is the best
so far. Every ``save_every`` steps and at the end: ``OUT/state.pt`` and ``OUT/last.safetensors``.

With ``blockwise_steps`` > 0 a block-wise reconstruction stage (:mod:`.blockwise`) runs first, with
its own ``block``/``block_done`` history records and callbacks (``on_block_start``, ``on_block_step``,
``on_block_done``); its position is in ``state.pt`` so ``--resume`` continues inside or after it.

With a time budget (``budget="30m"``) the steps are planned from measured costs and re-planned as
the run goes (:mod:`.budget`: ``budget``/``budget-replan`` records, the end moved through
:meth:`.distiller.Distiller.retarget`); such runs are not bit-reproducible.

Stops: SIGINT/SIGTERM finish the current step, save the state and raise :class:`TrainingInterrupted`
(exit 130/143); a budget whose wall clock runs out before the planned end does the same and raises
:class:`BudgetSpent` (exit 124); a NaN/inf loss or gradient stops before that step changes anything,
saves the state of the last good step and raises :class:`TrainingDiverged` (exit 1). No rich here:
the CLI renders what the callbacks receive.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from .. import inputs
from ..errors import CheckpointError, OutputExistsError, ScalesError
from . import distributed as dist_
from .checkpoint import (
    BEST_FILE, CURVES_FILE, HISTORY_FILE, LAST_FILE, OUTPUT_FILES, STATE_FILE, RunIdentity, read_history, save_trained_student,
)
from .config import ConfigError, FinetuneConfig
from .data import StepSampler, TrainSet, default_workers, load_train_images
from .distiller import Distiller, NonFiniteStep, OutputDistillation, StepResult
from .losses import feature_paths
from .optim import current_lrs

if TYPE_CHECKING:
    from .blockwise import BlockwiseStage
    from .budget import BudgetPlan, Pacer, Replan


class TrainingInterrupted(ScalesError):
    """SIGINT/SIGTERM: the state was saved; ``--resume`` continues the run."""


class BudgetSpent(TrainingInterrupted):
    """``--budget``'s wall clock ran out before the planned end: the state was saved; ``--resume`` with a
    longer ``--budget`` continues. Exit 124, as ``timeout(1)`` when its time is up."""

    exit_code = 124


class TrainingDiverged(ScalesError):
    """A non-finite loss or gradient: the last good state was saved."""

    exit_code = 1


@dataclass(frozen=True)
class StepLog:
    step: int  # completed steps
    total: int
    loss: float
    terms: Mapping[str, float]
    lr: float
    elapsed: float  # seconds of this process's training so far (resumed runs add the earlier ones)
    logged: bool  # True when this step wrote a history record


@dataclass(frozen=True)
class ValLog:
    step: int
    psnr: float
    ssim: float
    best_psnr: float
    best_step: int


@dataclass(frozen=True)
class FinetuneResult:
    """What a finished run produced (also the ``--json`` output of ``scales finetune``)."""

    out: Path
    steps: int
    start_step: int
    best_psnr: float | None
    best_step: int | None
    final_psnr: float | None
    final_loss: float | None
    wall_s: float
    device: str
    world_size: int
    student: Path
    last: Path
    history: Path
    curves: Path
    config: FinetuneConfig = field(repr=False)
    model: nn.Module | None = field(default=None, repr=False, compare=False)  # the trained student (EMA if on), every rank
    main_rank: bool = field(default=True, repr=False, compare=False)  # False on torchrun's other ranks: render nothing

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("config", "model", "main_rank")}
        out = {k: str(v) if isinstance(v, Path) else v for k, v in out.items()}
        out["config"] = self.config.to_json()
        return out


class Callback(Protocol):
    """What a front end (the CLI's progress bar) is told; every method is optional in practice."""

    def on_start(self, start_step: int, total: int) -> None: ...
    def on_step(self, log: StepLog) -> bool | None: ...  # True: stop after this step (state saved)
    def on_validate(self, log: ValLog) -> None: ...


def _quiet(_: str) -> None:
    """Warnings of ranks other than 0: rank 0 says them once for the run."""


def resolve_device(name: str, world: dist_.World) -> torch.device:
    """The training device: the one device grammar of :mod:`scales_cli.inputs`, one GPU per torchrun process."""
    return inputs.resolve_device(name, local_rank=world.local_rank)


def check_output_folder(out: Path, *, resume: bool, force: bool) -> None:
    """Refuse an existing run folder unless ``resume`` or ``force``, before any work."""
    if resume and force:
        raise ScalesError("--resume and --force: choose one (continue the run in OUT, or start over)")
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"--out {out}: is a file (expected a folder for the run's outputs)")
    if resume:
        if not (out / STATE_FILE).is_file():
            raise ScalesError(f"--resume: {out / STATE_FILE} does not exist (nothing to resume in {out})")
        return
    present = [name for name in OUTPUT_FILES if (out / name).exists()]
    if present and not force:
        raise OutputExistsError(f"--out {out}: already holds a run ({', '.join(present)}); pass --resume to continue it or --force to start over")
    existing = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ScalesError(f"--out {out}: cannot write there ({existing} is not a writable folder)")


def _call(callbacks: Sequence[Any], method: str, *args: Any) -> bool:
    """Call ``method`` on every callback that has it; True when one of them returned True (a stop request)."""
    asked = False
    for cb in callbacks:
        fn = getattr(cb, method, None)
        if fn is not None:
            asked = fn(*args) is True or asked
    return asked


@contextmanager
def _stop_signals() -> Iterator[dict[str, int]]:
    """SIGINT/SIGTERM set a flag the loop reads between steps (a second SIGINT interrupts at once)."""
    flag = {"signal": 0}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: object) -> None:
        if flag["signal"] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag["signal"] = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _load_pair(student_path: Path, teacher_path: Path) -> tuple[Any, Any, Mapping[str, str]]:
    from ..loading import load
    from ..io import read_checkpoint
    from ..recipe.student import FORMAT, PREFIX, load_student

    ckpt = read_checkpoint(student_path)
    if ckpt.metadata.get(f"{PREFIX}format") != FORMAT:
        raise CheckpointError(f"{student_path}: not a student file (make one with: scales binarize TEACHER --calibrate DIR)")
    student = load_student(ckpt)
    teacher = load(teacher_path, exported=False)
    if "student" in teacher.extra:
        raise CheckpointError(f"--teacher {teacher_path}: is a binarized student (expected the FP checkpoint it was made from)")
    recorded = ckpt.metadata.get(f"{PREFIX}teacher_sha256", "")
    if recorded != teacher.sha256:
        raise CheckpointError(
            f"--teacher {teacher_path}: sha256 {str(teacher.sha256)[:12]}... is not the teacher {student_path.name} was made from "
            f"(it records {recorded[:12] or 'none'}...)"
        )
    if (student.arch, student.scale) != (teacher.arch, teacher.scale):
        raise CheckpointError(f"--teacher {teacher_path}: {teacher.arch} x{teacher.scale} but the student is {student.arch} x{student.scale}")
    return student, teacher, ckpt.metadata


class _History:
    """``history.jsonl`` (rank 0): one JSON object per line, flushed as written."""

    def __init__(self, path: Path, keep_until: int | None, keep_blocks_until: int = 0) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        if keep_until is not None and path.is_file():
            # block-wise stage records count their own steps (``block_step``), before step 0
            self.records = [rec for rec in read_history(path)
                            if rec.get("block_step", 0) <= keep_blocks_until and rec.get("step", 0) <= keep_until]
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.records), encoding="utf-8")
        tmp.replace(path)
        self._fh = path.open("a", encoding="utf-8")

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _identity(config: FinetuneConfig, student_sha: str, teacher_sha: str, world: int,
              data: Sequence[Path], data_lr: Sequence[Path]) -> RunIdentity:
    # what may change on resume without changing the trajectory: how often we log, score and save
    cfg = {k: v for k, v in config.to_json().items() if k not in ("val_every", "save_every", "log_every", "workers", "device")}
    cfg["data"] = [str(p) for p in data]
    cfg["data_lr"] = [str(p) for p in data_lr]
    return RunIdentity(cfg, student_sha, teacher_sha, world)


def finetune(
    student: str | Path,
    teacher: str | Path,
    data: Sequence[str | Path] = (),
    config: FinetuneConfig | None = None,
    *,
    data_lr: Sequence[str | Path] = (),
    val: str | Path | None = None,
    out: str | Path = "finetune-out",
    resume: bool = False,
    force: bool = False,
    callbacks: Sequence[Any] = (),
    budget: str | None = None,
) -> FinetuneResult:
    """Distil the student file ``student`` from its FP checkpoint ``teacher`` (see the module doc).

    ``data``: folders of HR images (LR made by MATLAB bicubic); ``data_lr``: folders of LR-only
    images (teacher output is the only target); ``val``: a benchmark folder (Set5 layout or HR
    images) scored every ``config.val_every`` steps; ``out``: the run folder. ``budget`` (``"30m"``,
    ``"2h"``, counted from this call) replaces ``config.steps`` by the steps that fit, from measured
    step, validation and save times, and re-plans during the run (:mod:`.budget`); a resumed
    budgeted run gets the time its state has left (of ``budget`` when given again, else of the
    recorded one). Budgeted runs are not bit-reproducible.
    """
    since = time.perf_counter()  # a --budget counts from here: loading is part of the time asked for
    config = config or FinetuneConfig()
    if budget is not None:
        from .budget import parse_budget

        parse_budget(budget)  # a bad duration is refused before any work
    out = Path(out)
    data, data_lr = [Path(p) for p in data], [Path(p) for p in data_lr]
    world = dist_.world_from_env()
    check_output_folder(out, resume=resume, force=force)
    if config.hr_weight > 0 and data_lr:
        raise ScalesError(f"--hr-weight {config.hr_weight}: needs HR images, but --data-lr {data_lr[0]} has none (use --hr-weight 0)")
    if config.blockwise_steps and world.distributed:
        raise ScalesError(f"--blockwise-steps {config.blockwise_steps}: the block-wise stage runs in one process only "
                          "(run it without torchrun, or use --blockwise-steps 0)")
    if config.hr_weight > 0 and not data:
        raise ScalesError(f"--hr-weight {config.hr_weight}: needs HR images (--data DIR)")
    device = resolve_device(config.device, world)
    student_desc, teacher_desc, source_meta = _load_pair(Path(student), Path(teacher))
    scale = student_desc.scale
    images = load_train_images(data, data_lr, scale, config.patch, warn=None if world.rank == 0 else _quiet)
    val_set = None
    if val is not None:
        from ..metrics.datasets import dataset_from_folder

        val_set = dataset_from_folder(val, scale)
    budget_plan, pacer = None, None
    if budget is not None or resume:
        config, budget_plan, pacer = _budgeted(budget, config, world, device, student_desc, teacher_desc, images, out,
                                               resume, val_set, since)
    plan = _Plan(config, world, device, student_desc, teacher_desc, source_meta, images, tuple(data), tuple(data_lr),
                 val_set, out, resume, budget_plan, pacer)
    dist_.start(world, device)
    try:
        return _run(plan, callbacks)
    finally:
        dist_.stop(world)


def _budgeted(budget: str | None, config: FinetuneConfig, world: dist_.World, device: torch.device, student: Any,
              teacher: Any, images: Sequence[Any], out: Path, resume: bool, val_set: Any,
              since: float) -> tuple[FinetuneConfig, BudgetPlan | None, Pacer | None]:
    """``config`` with the steps ``--budget`` affords (measured), its plan and the :class:`.budget.Pacer`
    that re-plans it; on ``--resume``, the first planned steps and the time left that the state recorded
    (an unbudgeted state: ``config`` unchanged, no pacer)."""
    from .budget import Pacer, parse_budget, plan_budget, resumed_pacer

    if resume:
        budget_s = parse_budget(budget) if budget is not None else None
        try:
            # mmap: only the small identity and budget entries are read here; Distiller.restore loads the tensors
            state = torch.load(out / STATE_FILE, map_location="cpu", weights_only=False, mmap=True)
            planned, recorded = int(state["identity"]["config"]["steps"]), state.get("budget")
        except Exception:  # noqa: BLE001 - an unreadable state is refused by the resume itself, naming the file
            return config, None, None
        if recorded is not None and state.get("closed", False):  # closed by finish: its lr has annealed to 0
            raise ScalesError(f"--resume: the run in {out} already finished (step {int(state['step'])}, its lr schedule "
                              f"annealed to the end), so a longer budget would train at lr 0; train further with a new "
                              f"run from {out / BEST_FILE} (e.g. --lr 5e-4 --out NEW)")
        if recorded is None:
            if budget is not None:
                raise ScalesError(f"--budget {budget}: the run in {out} was started with --steps {planned}, not a budget "
                                  "(resume it without --budget)")
            return config, None, None
        pacer = resumed_pacer(recorded, budget_s, val_every=config.val_every if val_set is not None else 0,
                              save_every=config.save_every, since=since)
        return config.replace(steps=planned), None, pacer
    if world.distributed:
        raise ScalesError(f"--budget {budget}: measured in one process only (run without torchrun, or give --steps)")
    chosen = plan_budget(str(budget), student, teacher, config, images, device, val_set=val_set, since=since)
    config = config.replace(steps=chosen.steps)
    return config, chosen, Pacer(chosen.budget_s, chosen.costs, val_every=config.val_every if val_set is not None else 0,
                                 save_every=config.save_every, since=since)


@dataclass(frozen=True)
class _Plan:
    """Everything a run was given, checked and loaded (what :func:`_run` drives)."""

    config: FinetuneConfig
    world: dist_.World
    device: torch.device
    student: Any  # SRDescriptor of the student (its model is trained in place)
    teacher: Any  # SRDescriptor of the FP teacher
    source_meta: Mapping[str, str]
    images: Sequence[Any]
    data: tuple[Path, ...]
    data_lr: tuple[Path, ...]
    val_set: Any
    out: Path
    resume: bool
    budget: BudgetPlan | None = None  # what --budget planned before step 1 (a fresh run only)
    pacer: Pacer | None = None  # a budgeted run's clock and re-plans (fresh or resumed)


class _Run:
    """The driver's state around a :class:`Distiller`: wall time, best validation, the log window
    (loss terms of each step since the last history record, saved so that a resumed log averages the
    same steps), ``history.jsonl``, the callbacks and, with a time budget, its :class:`.budget.Pacer`
    (its re-plans move the Distiller's end). Only rank 0 writes files."""

    def __init__(self, plan: _Plan, distiller: Distiller, identity: RunIdentity, callbacks: Sequence[Any]) -> None:
        self.plan, self.distiller, self.identity, self.callbacks = plan, distiller, identity, callbacks
        self.pacer = plan.pacer
        self.wall_before, self.best_psnr, self.best_step = 0.0, -math.inf, None
        self.window: list[dict[str, float]] = []
        self.last_loss: float | None = None
        self.stage: BlockwiseStage | None = None  # the block-wise stage, when on (see :meth:`blockwise`)
        self.block_state: dict[str, Any] = {}  # a resumed state's block-wise part
        if plan.resume:
            state = distiller.restore(plan.out / STATE_FILE, identity)
            self.wall_before = float(state["wall_s"])
            self.best_psnr = state["best_psnr"] if state["best_psnr"] is not None else -math.inf
            self.best_step, self.window = state["best_step"], list(state["window"])
            self.block_state = dict(state.get("blockwise") or {})
        self.start_step = distiller.completed
        blocks_done = int(self.block_state.get("stage", {}).get("done", 0))
        self.history = (_History(plan.out / HISTORY_FILE, self.start_step if plan.resume else None, blocks_done)
                        if plan.world.is_main else None)
        if self.history is not None and plan.budget is not None:
            self.history.add(plan.budget.record())
        s, cfg = plan.student, plan.config
        self.title = f"{s.arch} x{s.scale} student: {cfg.loss}, {cfg.schedule} lr {cfg.lr:g}"
        self.started = time.perf_counter()

    @property
    def step(self) -> int:
        return self.distiller.completed

    @property
    def total(self) -> int:
        """The planned end: ``config.steps``, or where the last budget re-plan moved it."""
        return self.distiller.total

    def elapsed(self) -> float:
        return self.wall_before + time.perf_counter() - self.started

    def training_block(self, final_psnr: float | None) -> dict[str, Any]:
        p, cfg = self.plan, self.plan.config
        return {
            "steps": self.step, "data": [str(d) for d in p.data], "data_lr": [str(d) for d in p.data_lr],
            "val": p.val_set.name if p.val_set is not None else None, "loss": cfg.loss, "schedule": cfg.schedule,
            "lr": cfg.lr, "batch": cfg.batch, "patch": cfg.patch, "world_size": p.world.size,
            "best_val_psnr": None if self.best_step is None else self.best_psnr, "best_step": self.best_step,
            "final_val_psnr": final_psnr, "wall_s": round(self.elapsed(), 1), "device": str(p.device),
            "seed": cfg.seed, "ema": cfg.ema, "config": cfg.to_json(),
        }

    def save_all(self, final_psnr: float | None = None, *, closed: bool = False) -> None:
        """state.pt and last.safetensors; ``closed`` marks the state of a run that :meth:`finish` ended."""
        out = self.plan.out
        if self.plan.world.is_main:
            blockwise = {"stage": self.stage.state_dict(), "window": list(self.block_state.get("window", []))} if self.stage else None
            budget = {"budget": self.pacer.state_dict()} if self.pacer is not None else {}
            self.distiller.save(out / STATE_FILE, self.identity, wall_s=self.elapsed(), best_step=self.best_step,
                                best_psnr=None if self.best_step is None else self.best_psnr, window=list(self.window),
                                blockwise=blockwise, closed=closed, **budget)
            save_trained_student(out / LAST_FILE, self.distiller.eval_model, self.plan.source_meta, self.training_block(final_psnr))
        dist_.barrier(self.plan.world)

    def validate(self) -> float | None:
        """Score on rank 0 (the others wait); a new best replaces ``student.safetensors``."""
        p, result = self.plan, None
        if p.world.is_main and p.val_set is not None and self.history is not None:
            psnr, ssim = self.distiller.validate(p.student, p.val_set)
            if psnr > self.best_psnr:
                self.best_psnr, self.best_step = psnr, self.step
                save_trained_student(p.out / BEST_FILE, self.distiller.eval_model, p.source_meta, self.training_block(psnr))
            self.history.add({"kind": "val", "step": self.step, "psnr": psnr, "ssim": ssim, "dataset": p.val_set.name,
                              "time": round(self.elapsed(), 2)})
            self._draw()
            _call(self.callbacks, "on_validate", ValLog(self.step, psnr, ssim, self.best_psnr, self.best_step))
            result = psnr
        dist_.barrier(p.world)
        return result

    def _draw(self) -> None:
        from .plots import draw_curves

        if self.history is not None:
            draw_curves(self.plan.out / CURVES_FILE, self.history.records, self.title)

    def _overhead(self, kind: str) -> AbstractContextManager[Any]:
        """A validation or save, timed for the budget's re-plans (nothing without a budget; with no
        --val a validation does nothing, and v stays what the close costs: :mod:`.budget`)."""
        if self.pacer is None or (kind == "val" and self.plan.val_set is None):
            return nullcontext()
        return self.pacer.overhead(kind)

    def _replan(self, replan: Replan | None) -> None:
        """Move the end of the run (schedule, loop, progress total) and record it."""
        if replan is None:
            return
        self.distiller.retarget(replan.new_total)
        if self.history is not None:
            self.history.add({**replan.record(), "time": round(self.elapsed(), 2)})

    def begin_steps(self) -> None:
        """Before the end-to-end steps of a budgeted run: stop when no time is left, start measuring, and
        re-plan at once after a block-wise stage or on resume (the first plan could not see either)."""
        if self.pacer is None:
            return
        if self.pacer.ran_out():
            raise self.out_of_budget()
        self.pacer.start(self.step)
        if self.plan.resume or self.stage is not None:
            self._replan(self.pacer.replan(self.step, self.total))

    def out_of_time(self) -> bool:
        return self.pacer is not None and self.pacer.ran_out()

    def after_step(self, done: StepResult) -> bool:
        """Re-plan (a budget), log, call back, validate and save as the config says; True when a
        callback asked to stop."""
        cfg, world, step = self.plan.config, self.plan.world, done.step
        if self.pacer is not None:
            self._replan(self.pacer.step_done(step, self.total))
        self.window.append({"loss": done.loss, **done.terms})
        logged = step % cfg.log_every == 0 or step == self.total
        if logged:  # means over the steps since the last record, and over the ranks
            window, self.window = self.window, []
            means = {k: dist_.mean_over_ranks(world, sum(w[k] for w in window) / len(window), self.plan.device) for k in window[-1]}
            self.last_loss = means["loss"]
            if self.history is not None:
                self.history.add({"kind": "train", "step": step, **means,
                                  "lr": current_lrs(self.distiller.optimizer), "time": round(self.elapsed(), 2)})
        # on_step returning True asks for a stop, handled like Ctrl-C (a time budget, a GUI button)
        stop = world.is_main and _call(self.callbacks, "on_step", StepLog(step, self.total, done.loss, done.terms,
                                                                         done.lr, self.elapsed(), logged))
        if cfg.val_every and step % cfg.val_every == 0 and step < self.total:
            with self._overhead("val"):
                self.validate()
        if cfg.save_every and step % cfg.save_every == 0 and step < self.total:
            with self._overhead("save"):
                self.save_all()
        return stop

    def _where(self) -> str:
        if self.stage is not None and not self.stage.finished:
            return f"block-wise step {self.stage.done} of {self.stage.total}"
        return f"step {self.step} of {self.total}"

    def interrupt(self, signum: int) -> TrainingInterrupted:
        self.save_all()
        return TrainingInterrupted(
            f"interrupted at {self._where()}: state saved in {self.plan.out / STATE_FILE} "
            f"(continue with --resume)", exit_code=128 + int(signum or signal.SIGINT),
        )

    def out_of_budget(self) -> BudgetSpent:
        """The deadline: stopped as Ctrl-C stops (state saved), saying where the budget ran out."""
        assert self.pacer is not None
        spent, budget_s = self.pacer.spent(), self.pacer.budget_s
        where = self._where() + (", before the closing validation" if self.step >= self.total else "")
        self.save_all()
        return BudgetSpent(f"the budget ran out at {where} ({spent:.1f} s of {budget_s:g} s): state saved in "
                           f"{self.plan.out / STATE_FILE} (continue with --resume and a longer --budget)")

    def blockwise(self, stage: BlockwiseStage, stop: dict[str, int]) -> None:
        """Run (or finish) the block-wise stage before step 1: log ``block`` records every ``log_every``
        steps and a ``block_done`` record per unit, save every ``save_every`` steps; at its end the EMA
        restarts from the reconstructed weights, and the student is scored and saved (step 0)."""
        cfg, main = self.plan.config, self.plan.world.is_main
        self.stage, window = stage, self.block_state.setdefault("window", [])
        stage.load_state_dict(self.block_state.get("stage", {"done": 0}))
        if stage.finished:
            return
        if main:
            _call(self.callbacks, "on_block_start", stage.done, stage.total, [u.name for u in stage.plan.units])
        while not stage.finished:
            if stop["signal"]:
                raise self.interrupt(stop["signal"])
            if self.out_of_time():
                raise self.out_of_budget()
            try:
                log, unit_done = stage.step()
            except NonFiniteStep as exc:
                raise self.diverge(exc) from None
            window.append(log.loss)
            if self.history is not None and (log.step % cfg.log_every == 0 or log.unit_step == log.unit_steps):
                self.history.add({"kind": "block", "block_step": log.step, "unit": log.unit, "block": log.name,
                                  "loss": sum(window) / len(window), "lr": log.lr, "time": round(self.elapsed(), 2)})
                window.clear()
            if unit_done is not None and self.history is not None:
                self.history.add({"kind": "block_done", "block_step": log.step, "unit": unit_done.unit,
                                  "block": unit_done.name, "before": unit_done.before, "after": unit_done.after})
                _call(self.callbacks, "on_block_done", unit_done)
            if main and _call(self.callbacks, "on_block_step", log):
                stop["signal"] = stop["signal"] or int(signal.SIGINT)
            if cfg.save_every and log.step % cfg.save_every == 0 and not stage.finished:
                with self._overhead("save"):
                    self.save_all()
        if self.distiller.ema is not None:  # the average restarts from the reconstructed weights
            self.distiller.ema.load_state_dict(self.distiller.model.state_dict())
        with self._overhead("val"):
            self.validate()
        with self._overhead("save"):
            self.save_all()

    def diverge(self, exc: NonFiniteStep) -> TrainingDiverged:
        self.save_all()
        return TrainingDiverged(f"{exc.message}; stopped, the last good state (step {self.step}) is in "
                                f"{self.plan.out / STATE_FILE} (try a lower --lr or --clip-grad)")

    def finish(self) -> float | None:
        """Fully binary, a last validation and save; with no validation the final weights are the student."""
        self.distiller.finish()
        final_psnr = self.validate()
        self.save_all(final_psnr, closed=True)
        if self.plan.world.is_main and self.plan.val_set is None:  # (the validation drew the curves)
            save_trained_student(self.plan.out / BEST_FILE, self.distiller.eval_model, self.plan.source_meta,
                                 self.training_block(None))
            self._draw()
        dist_.barrier(self.plan.world)
        return final_psnr

    def result(self, final_psnr: float | None) -> FinetuneResult:
        p = self.plan
        return FinetuneResult(
            out=p.out, steps=self.step, start_step=self.start_step, best_psnr=None if self.best_step is None else self.best_psnr,
            best_step=self.best_step, final_psnr=final_psnr, final_loss=self.last_loss, wall_s=round(self.elapsed(), 1),
            device=str(p.device), world_size=p.world.size, student=p.out / BEST_FILE, last=p.out / LAST_FILE,
            history=p.out / HISTORY_FILE, curves=p.out / CURVES_FILE, config=p.config, model=self.distiller.eval_model,
            main_rank=p.world.is_main,
        )

    def close(self) -> None:
        if self.history is not None:
            self.history.close()


def _distiller(plan: _Plan) -> Distiller:
    """The student (seeded, on the device) and its frozen teacher around one :class:`Distiller`."""
    cfg, device = plan.config, plan.device
    torch.manual_seed(cfg.seed)
    model: nn.Module = plan.student.model.to(device).train()
    teacher = plan.teacher.model.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    body = feature_paths(model, plan.student.regions.get("body", ()))
    if cfg.progressive > 0 and not body:
        raise ConfigError(f"--progressive {cfg.progressive}: this {plan.student.arch} student has no body blocks to switch in order")
    objective = OutputDistillation.from_config(cfg, plan.student.input_range)
    return Distiller(model, cfg, teacher=teacher, objective=objective, device=device, world=plan.world,
                     feature_paths=body if cfg.feature_weight > 0 else [], block_paths=body if cfg.progressive > 0 else [])


def _blockwise_stage(plan: _Plan, distiller: Distiller) -> BlockwiseStage:
    """The block-wise stage on the Distiller's student and teacher, with crops of the run's training set."""
    from .blockwise import make_stage

    cfg = plan.config
    train_set = TrainSet(plan.images, plan.student.scale, cfg.patch, cfg.seed, False)
    return make_stage(distiller.model, distiller.teacher, plan.student, cfg, train_set, plan.device, distiller.autocast)


def _loader(plan: _Plan, start_step: int, total: int | None) -> torch.utils.data.DataLoader:
    """Batches of (LR, HR) crops for steps ``start_step .. total-1`` (``None``: no end, a budgeted run's
    loop stops at its moving end): a function of (seed, sample index), see :mod:`.data`."""
    cfg, world, device = plan.config, plan.world, plan.device
    sampler = StepSampler(start_step, total, cfg.batch, world.rank, world.size)
    workers = default_workers(device, world.size) if cfg.workers < 0 else cfg.workers
    return torch.utils.data.DataLoader(
        TrainSet(plan.images, plan.student.scale, cfg.patch, cfg.seed, cfg.hr_weight > 0),
        batch_size=cfg.batch, sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda",
    )


def _run(plan: _Plan, callbacks: Sequence[Any]) -> FinetuneResult:
    """The driver: feed batches to :meth:`Distiller.step`, stop cleanly, and finish (see the module doc)."""
    from ..io import ensure_dir, sha256_of

    world, device = plan.world, plan.device
    if world.is_main:
        ensure_dir(plan.out)
    dist_.barrier(world)
    identity = _identity(plan.config, sha256_of(Path(plan.student.source)), plan.teacher.sha256 or "", world.size,
                         plan.data, plan.data_lr)
    r, with_hr = float(plan.student.input_range), plan.config.hr_weight > 0
    with _distiller(plan) as distiller:
        run = _Run(plan, distiller, identity, callbacks)
        loader = _loader(plan, run.start_step, None if plan.pacer is not None else run.total)
        try:
            with _stop_signals() as stop:
                if plan.config.blockwise_steps:
                    run.blockwise(_blockwise_stage(plan, distiller), stop)
                run.begin_steps()
                if world.is_main:
                    _call(callbacks, "on_start", run.start_step, run.total)
                for lr_batch, hr_batch in loader:
                    if run.out_of_time():  # past the budget, even at the planned end: stopped, not closed
                        raise run.out_of_budget()
                    if run.step >= run.total:  # a budgeted run's end (its loader has none)
                        break
                    if dist_.any_rank(world, bool(stop["signal"]), device):
                        raise run.interrupt(stop["signal"])
                    x = lr_batch.to(device, non_blocking=True) * r
                    try:
                        done = distiller.step(x, hr=hr_batch.to(device) if with_hr else None)
                    except NonFiniteStep as exc:
                        raise run.diverge(exc) from None
                    if run.after_step(done):
                        stop["signal"] = stop["signal"] or int(signal.SIGINT)
            final_psnr = run.finish()
        finally:
            run.close()
    return run.result(final_psnr)
