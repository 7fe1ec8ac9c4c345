"""The fine-tuning loop: distil a binary student from its FP teacher, observably and resumably.

>>> from scales_cli import finetune                                                 # doctest: +SKIP
>>> from scales_cli.train import FinetuneConfig                                     # doctest: +SKIP
>>> result = finetune("IMDN_x4-cnn.safetensors", "IMDN_x4.pth", ["T91"],             # doctest: +SKIP
...                   FinetuneConfig(steps=1000), val="Set5", out="ft")
>>> result.best_psnr                                                                 # doctest: +SKIP

Each step: a batch of LR crops x (``input_range`` units), T = teacher(x) without gradients,
S = student(x), the loss of :mod:`.losses`, backward, optional clipping, one optimizer and scheduler
step, the EMA update. Every ``log_every`` steps a ``train`` record goes to ``OUT/history.jsonl``;
every ``val_every`` steps (and at the end) the student (its EMA when on) is scored with the
project's evaluation (Y-PSNR, :func:`scales_cli.metrics.evaluate.evaluate_model`), a ``val`` record
is written, ``OUT/curves.png`` redrawn and ``OUT/student.safetensors`` replaced when it is the best
so far. Every ``save_every`` steps and at the end: ``OUT/state.pt`` and ``OUT/last.safetensors``.

Stops: SIGINT/SIGTERM finish the current step, save the state and raise :class:`TrainingInterrupted`
(exit 130/143); a NaN/inf loss or gradient stops before that step changes anything, saves the state
of the last good step and raises :class:`TrainingDiverged` (exit 1). No rich here: the CLI renders
what the callbacks receive.
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
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from ..errors import CheckpointError, OutputExistsError, ScalesError
from . import distributed as dist_
from .checkpoint import (
    BEST_FILE, CURVES_FILE, HISTORY_FILE, LAST_FILE, OUTPUT_FILES, STATE_FILE, STATE_VERSION,
    RunIdentity, load_state, rng_state, save_state, save_trained_student, set_rng_state,
)
from .config import FinetuneConfig
from .data import StepSampler, TrainSet, default_workers, load_train_images
from .losses import distillation_loss, feature_paths, taps
from .optim import EMA, current_lrs, make_optimizer, make_scheduler
from .stages import bypassed, fully_binary, set_stage


class TrainingInterrupted(ScalesError):
    """SIGINT/SIGTERM: the state was saved; ``--resume`` continues the run."""


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

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("config", "model")}
        out = {k: str(v) if isinstance(v, Path) else v for k, v in out.items()}
        out["config"] = self.config.to_json()
        return out


class Callback(Protocol):
    """What a front end (the CLI's progress bar) is told; every method is optional in practice."""

    def on_start(self, start_step: int, total: int) -> None: ...
    def on_step(self, log: StepLog) -> bool | None: ...  # True: stop after this step (state saved)
    def on_validate(self, log: ValLog) -> None: ...


def resolve_device(name: str, world: dist_.World) -> torch.device:
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ScalesError("--device cuda: CUDA is not available on this machine (use --device cpu or auto)")
    return torch.device("cuda", world.local_rank % max(1, torch.cuda.device_count()))


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
    teacher = load(teacher_path)
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

    def __init__(self, path: Path, keep_until: int | None) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        if keep_until is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill: dropped, the step is redone
                if rec.get("step", 0) <= keep_until:
                    self.records.append(rec)
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
) -> FinetuneResult:
    """Distil the student file ``student`` from its FP checkpoint ``teacher`` (see the module doc).

    ``data``: folders of HR images (LR made by MATLAB bicubic); ``data_lr``: folders of LR-only
    images (teacher output is the only target); ``val``: a benchmark folder (Set5 layout or HR
    images) scored every ``config.val_every`` steps; ``out``: the run folder.
    """
    config = config or FinetuneConfig()
    out = Path(out)
    data, data_lr = [Path(p) for p in data], [Path(p) for p in data_lr]
    world = dist_.world_from_env()
    check_output_folder(out, resume=resume, force=force)
    if config.hr_weight > 0 and data_lr:
        raise ScalesError(f"--hr-weight {config.hr_weight}: needs HR images, but --data-lr {data_lr[0]} has none (use --hr-weight 0)")
    if config.hr_weight > 0 and not data:
        raise ScalesError(f"--hr-weight {config.hr_weight}: needs HR images (--data DIR)")
    device = resolve_device(config.device, world)
    student_desc, teacher_desc, source_meta = _load_pair(Path(student), Path(teacher))
    scale = student_desc.scale
    images = load_train_images(data, data_lr, scale, config.patch)
    val_set = None
    if val is not None:
        from ..metrics.datasets import dataset_from_folder

        val_set = dataset_from_folder(val, scale)
    dist_.start(world, device)
    try:
        return _run(
            config, world, device, student_desc, teacher_desc, source_meta, images, data, data_lr,
            val_set, out, resume, callbacks,
        )
    finally:
        dist_.stop(world)


def _run(
    config: FinetuneConfig, world: dist_.World, device: torch.device, student_desc: Any, teacher_desc: Any,
    source_meta: Mapping[str, str], images: Sequence[Any], data: Sequence[Path], data_lr: Sequence[Path],
    val_set: Any, out: Path, resume: bool, callbacks: Sequence[Any],
) -> FinetuneResult:
    from ..io import ensure_dir, sha256_of
    from .plots import draw_curves

    if world.is_main:
        ensure_dir(out)
    dist_.barrier(world)
    identity = _identity(config, sha256_of(Path(student_desc.source)), teacher_desc.sha256 or "", world.size, data, data_lr)
    torch.manual_seed(config.seed)
    model: nn.Module = student_desc.model.to(device).train()
    teacher_model = teacher_desc.model.to(device).eval()
    for p in teacher_model.parameters():
        p.requires_grad_(False)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    ema = EMA(model, config.ema) if config.ema > 0 else None
    start_step, wall_before, best_psnr, best_step = 0, 0.0, -math.inf, None
    # loss terms of each step since the last history record (saved: a resumed log averages the same steps)
    window: list[dict[str, float]] = []
    if resume:
        state = load_state(out / STATE_FILE, identity)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        set_rng_state(state["rng"])
        start_step, wall_before = int(state["step"]), float(state["wall_s"])
        best_psnr = state["best_psnr"] if state["best_psnr"] is not None else -math.inf
        best_step = state["best_step"]
        window = list(state["window"])
    train_model = dist_.wrap(model, world, device)
    body = feature_paths(model, student_desc.regions.get("body", ())) if config.feature_weight > 0 else []
    with_hr = config.hr_weight > 0
    sampler = StepSampler(start_step, config.steps, config.batch, world.rank, world.size)
    workers = default_workers(device, world.size) if config.workers < 0 else config.workers
    loader = torch.utils.data.DataLoader(
        TrainSet(images, student_desc.scale, config.patch, config.seed, with_hr),
        batch_size=config.batch, sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda",
    )
    history = _History(out / HISTORY_FILE, start_step if resume else 0) if world.is_main else None
    r = float(student_desc.input_range)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else nullcontext
    started = time.perf_counter()
    step, last_loss = start_step, None
    stage: str | None = None  # the operand bypassed now (a loaded student starts fully binary)
    title = f"{student_desc.arch} x{student_desc.scale} student: {config.loss}, {config.schedule} lr {config.lr:g}"

    def elapsed() -> float:
        return wall_before + time.perf_counter() - started

    def eval_model() -> nn.Module:
        return ema.model if ema is not None else model

    def training_block(final_psnr: float | None) -> dict[str, Any]:
        return {
            "steps": step, "data": [str(p) for p in data], "data_lr": [str(p) for p in data_lr],
            "val": val_set.name if val_set is not None else None, "loss": config.loss, "schedule": config.schedule,
            "lr": config.lr, "batch": config.batch, "patch": config.patch, "world_size": world.size,
            "best_val_psnr": None if best_step is None else best_psnr, "best_step": best_step,
            "final_val_psnr": final_psnr, "wall_s": round(elapsed(), 1), "device": str(device),
            "seed": config.seed, "ema": config.ema, "config": config.to_json(),
        }

    def save_all(final_psnr: float | None = None) -> None:
        if world.is_main:
            save_state(out / STATE_FILE, {
                "version": STATE_VERSION, "identity": identity.to_json(), "step": step,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "ema": ema.state_dict() if ema is not None else None, "rng": rng_state(), "wall_s": elapsed(),
                "best_psnr": None if best_step is None else best_psnr, "best_step": best_step, "window": list(window),
            })
            save_trained_student(out / LAST_FILE, eval_model(), source_meta, training_block(final_psnr))
        dist_.barrier(world)

    def validate() -> float | None:
        nonlocal best_psnr, best_step
        result = None
        if world.is_main and val_set is not None:
            from ..metrics.evaluate import evaluate_model

            with fully_binary(eval_model()) as scored_model:
                scored = evaluate_model(dataclasses.replace(student_desc, model=scored_model), val_set, device=str(device))
            model.train()
            psnr, ssim = scored.mean_psnr, scored.mean_ssim
            if psnr > best_psnr:
                best_psnr, best_step = psnr, step
                save_trained_student(out / BEST_FILE, eval_model(), source_meta, training_block(psnr))
            history.add({"kind": "val", "step": step, "psnr": psnr, "ssim": ssim, "dataset": val_set.name, "time": round(elapsed(), 2)})
            draw_curves(out / CURVES_FILE, history.records, title)
            _call(callbacks, "on_validate", ValLog(step, psnr, ssim, best_psnr, best_step))
            result = psnr
        dist_.barrier(world)
        return result

    if world.is_main:
        _call(callbacks, "on_start", start_step, config.steps)
    final_psnr = None
    try:
        with _stop_signals() as stop, taps(teacher_model, model, body) as feature_taps:
            for lr_batch, hr_batch in loader:
                if dist_.any_rank(world, bool(stop["signal"]), device):
                    save_all()
                    signum = stop["signal"] or signal.SIGINT
                    raise TrainingInterrupted(
                        f"interrupted at step {step} of {config.steps}: state saved in {out / STATE_FILE} "
                        f"(continue with --resume)", exit_code=128 + int(signum),
                    )
                x = lr_batch.to(device, non_blocking=True) * r
                fp = bypassed(config.two_stage, step, config.steps, config.first_stage)
                if fp != stage:  # flags change at most twice a run: no walk over the modules every step
                    set_stage(model, fp)
                    stage = fp
                with torch.no_grad(), autocast():
                    t_out = teacher_model(x)
                with autocast():
                    s_out = train_model(x)
                feats = (feature_taps[0].outputs, feature_taps[1].outputs) if feature_taps else None
                parts = distillation_loss(
                    s_out / r, t_out / r, kind=config.loss, eps=config.charbonnier_eps,
                    hr=hr_batch.to(device) if with_hr else None, hr_weight=config.hr_weight,
                    feats=feats, feature_weight=config.feature_weight,
                )
                loss_value = float(parts.total.detach())
                bad = not math.isfinite(loss_value)
                if not bad:
                    optimizer.zero_grad(set_to_none=True)
                    parts.total.backward()
                    if config.clip_grad > 0:
                        norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad))
                        bad = not math.isfinite(norm)
                if dist_.any_rank(world, bad, device):
                    optimizer.zero_grad(set_to_none=True)
                    save_all()
                    what = f"loss {loss_value}" if not math.isfinite(loss_value) else "gradient norm is not finite"
                    raise TrainingDiverged(
                        f"step {step + 1}: {what}; stopped, the last good state (step {step}) is in {out / STATE_FILE} "
                        "(try a lower --lr or --clip-grad)"
                    )
                optimizer.step()
                scheduler.step()
                if ema is not None:
                    ema.update(model)
                step += 1
                window.append({"loss": loss_value, **parts.terms})
                logged = step % config.log_every == 0 or step == config.steps
                if logged:  # means over the steps since the last record, and over the ranks
                    means = {k: dist_.mean_over_ranks(world, sum(w[k] for w in window) / len(window), device) for k in window[-1]}
                    last_loss = means["loss"]
                    window.clear()
                    if history is not None:
                        history.add({"kind": "train", "step": step, **means,
                                     "lr": current_lrs(optimizer), "time": round(elapsed(), 2)})
                # on_step returning True asks for a stop, handled like Ctrl-C (a time budget, a GUI button)
                if world.is_main and _call(callbacks, "on_step", StepLog(step, config.steps, loss_value, parts.terms,
                                                                         optimizer.param_groups[0]["lr"], elapsed(), logged)):
                    stop["signal"] = stop["signal"] or int(signal.SIGINT)
                if config.val_every and step % config.val_every == 0 and step < config.steps:
                    validate()
                if config.save_every and step % config.save_every == 0 and step < config.steps:
                    save_all()
        set_stage(model, None)  # fully binary at the end even when rounding put the last step in stage 1
        final_psnr = validate()
        save_all(final_psnr)
        if world.is_main:
            if val_set is None:  # no validation: the final weights are the student
                save_trained_student(out / BEST_FILE, eval_model(), source_meta, training_block(None))
            draw_curves(out / CURVES_FILE, history.records, title)
        dist_.barrier(world)
    finally:
        if history is not None:
            history.close()
    return FinetuneResult(
        out=out, steps=step, start_step=start_step, best_psnr=None if best_step is None else best_psnr,
        best_step=best_step, final_psnr=final_psnr, final_loss=last_loss, wall_s=round(elapsed(), 1),
        device=str(device), world_size=world.size, student=out / BEST_FILE, last=out / LAST_FILE,
        history=out / HISTORY_FILE, curves=out / CURVES_FILE, config=config, model=eval_model(),
    )
