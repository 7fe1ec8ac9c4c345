"""One training step, shared by ``scales finetune``, the benchmarks and any later stage.

A :class:`Distiller` is the training state of one module (weights, optimizer, learning-rate schedule
and its :class:`.optim.Horizon`, EMA, two-stage bypass, completed steps) and four operations:
:meth:`Distiller.step`, :meth:`Distiller.validate`, :meth:`Distiller.save`, :meth:`Distiller.restore`
(and :meth:`Distiller.retarget`, which moves the end of the run: a time budget's re-plan). The loop of
:mod:`.loop` only feeds batches, logs and decides when to validate and save; the benchmarks time the
very same :meth:`Distiller.step`.

One step on inputs x (already in ``input_range`` units), targets T, optional HR crops H:

    T = teacher(x)                  (only when no targets are given; no gradients; autocast as below)
    S = module(x)                   (bf16 autocast per ``config.autocast``: on CUDA by default; DDP-wrapped under torchrun)
    L = objective(S, T, H, feats)   (see :class:`OutputDistillation` and :mod:`.losses`)
    backward; clip ||g||_2 to clip_grad when > 0
    a non-finite L or ||g|| on any rank: raise :class:`NonFiniteStep`, nothing changed
    optimizer step; scheduler step; EMA e <- decay * e + (1 - decay) * w

The pieces that make it a *distillation of a whole network* are swappable, so that the same step
trains any (module, inputs, targets):

- ``teacher``: a callable making targets from inputs; or pass ``targets=`` to :meth:`step` (cached
  teacher activations, e.g. a block-wise reconstruction stage training one body block alone on
  (block input, teacher block output) pairs) and give no teacher at all;
- ``objective``: any ``(outputs, targets, hr, feats) -> LossParts``; :class:`OutputDistillation`
  is the finetune loss (outputs divided by ``input_range``, optional HR and feature terms);
- ``feature_paths``: body blocks whose teacher/student outputs feed ``feats`` (none: ``feats`` is None).

>>> import torch
>>> from scales_cli.train import FinetuneConfig
>>> from scales_cli.train.distiller import Distiller
>>> block = torch.nn.Conv2d(3, 3, 3, padding=1)
>>> d = Distiller(block, FinetuneConfig(steps=2, warmup=0, schedule="constant"))
>>> x, t = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
>>> d.step(x, targets=t).step, d.step(x, targets=t).step
(1, 2)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from ..errors import ScalesError
from ..machine import local_isa
from . import distributed as dist_
from .checkpoint import STATE_VERSION, RunIdentity, load_state, rng_state, save_state, set_rng_state
from .config import FinetuneConfig
from .losses import FeatureTap, LossParts, distillation_loss
from .optim import EMA, Horizon, make_optimizer, make_scheduler
from .stages import Stage, apply_stage, fully_binary, set_stage, stage_at

Features = tuple[Mapping[str, Tensor], Mapping[str, Tensor]]  # (teacher, student) block outputs by path


class NonFiniteStep(ScalesError):
    """A step whose loss or gradient norm is not finite; the weights and optimizer were not changed."""

    exit_code = 1


class Objective(Protocol):
    """What a step minimises: outputs vs targets (+ HR crops and block features when present)."""

    def __call__(self, outputs: Tensor, targets: Tensor, hr: Tensor | None, feats: Features | None) -> LossParts: ...


@dataclass(frozen=True)
class OutputDistillation:
    """The finetune loss of :mod:`.losses` on network outputs divided by ``input_range``:
    ``L = D(S/r, T/r) + hr_weight * |S/r - H|_1 + feature_weight * feature term``."""

    kind: str = "l1"
    eps: float = 1e-3
    hr_weight: float = 0.0
    feature_weight: float = 0.0
    input_range: float = 1.0

    @classmethod
    def from_config(cls, config: FinetuneConfig, input_range: float = 1.0) -> OutputDistillation:
        return cls(config.loss, config.charbonnier_eps, config.hr_weight, config.feature_weight, float(input_range))

    def __call__(self, outputs: Tensor, targets: Tensor, hr: Tensor | None, feats: Features | None) -> LossParts:
        r = self.input_range
        return distillation_loss(
            outputs / r, targets / r, kind=self.kind, eps=self.eps, hr=hr, hr_weight=self.hr_weight,
            feats=feats, feature_weight=self.feature_weight,
        )


@dataclass(frozen=True)
class StepResult:
    """What one step did: the completed-step count after it, its loss and named terms, the first group's lr."""

    step: int
    loss: float
    terms: Mapping[str, float]
    lr: float


def _bf16_pays(device: torch.device) -> bool:
    """``auto``: bf16 where it was measured to buy more dB per hour: CUDA, and CPUs with AMX-BF16 tiles.

    On an AMX Xeon, one thread, 20 minutes per arm, bf16 took 1.34-1.58x the steps of float32 and was
    level with it at equal steps, so it ended ahead on IMDN x4 (two seeds) and RLFN x4 (docs/results.md,
    "bf16 autocast on the CPU"). Without AMX, oneDNN emulates or narrows bf16 and the step is not
    cheaper (not measured), so those CPUs stay float32.
    """
    if device.type == "cuda":
        return True
    return device.type == "cpu" and "amx_bf16" in (local_isa() or ())


AUTOCAST: dict[str, Callable[[torch.device], bool]] = {
    "auto": _bf16_pays,
    "bf16": lambda device: True,
    "off": lambda device: False,
}
"""``config.autocast`` -> whether a step's forwards run under bf16 autocast on ``device``."""


def bf16_autocast(device: torch.device, mode: str = "auto") -> Callable[[], AbstractContextManager[Any]]:
    """A context factory: bf16 autocast on ``device`` when :data:`AUTOCAST` says so for ``mode``, else none.

    bf16 keeps float32's range (the teacher's outputs and the gradients fit), and the weights, the
    optimizer and the loss stay float32; validation and export never run under it.
    """
    if AUTOCAST[mode](device):
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext


class Distiller:
    """The training state of ``model`` and its step (see the module doc for the formulas).

    ``config`` gives the optimizer, schedule (over ``config.steps``), EMA, clipping and two-stage
    settings; ``teacher`` makes targets when :meth:`step` gets none; ``objective`` defaults to
    :meth:`OutputDistillation.from_config` with ``input_range`` 1. ``model`` should already be on ``device``.
    Call :meth:`close` (or use ``with``) to remove the feature hooks when ``feature_paths`` were given.
    """

    def __init__(
        self, model: nn.Module, config: FinetuneConfig, *, teacher: Callable[[Tensor], Tensor] | None = None,
        objective: Objective | None = None, device: torch.device | str = "cpu", world: dist_.World = dist_.World(),
        feature_paths: Sequence[str] = (), block_paths: Sequence[str] = (),
    ) -> None:
        self.config, self.world, self.device = config, world, torch.device(device)
        self.model = model.train()
        self.teacher = teacher
        self.objective: Objective = objective or OutputDistillation.from_config(config)
        self.optimizer = make_optimizer(model, config)
        self.horizon = Horizon(config.steps)  # u(t) = t until a retarget: the schedule of config.steps
        self.scheduler = make_scheduler(self.optimizer, config, lambda: self.horizon)
        self.ema = EMA(model, config.ema) if config.ema > 0 else None
        self.completed = 0
        self.block_paths = tuple(block_paths)  # the body blocks ``progressive`` switches, in forward order
        # (operand bypassed, binary body blocks) now: a loaded student starts fully binary
        self._stage: Stage = (None, len(self.block_paths))
        self.autocast = bf16_autocast(self.device, config.autocast)  # the step's; a block-wise stage reuses it
        self._train_model = dist_.wrap(model, world, self.device)
        # taps after the EMA copy, so that the averaged model carries no hooks
        self._taps = self._make_taps(feature_paths)

    def _make_taps(self, paths: Sequence[str]) -> tuple[FeatureTap, FeatureTap] | None:
        if not paths:
            return None
        if not isinstance(self.teacher, nn.Module):
            raise ScalesError("feature distillation needs the teacher network (a module), not only its targets")
        return FeatureTap(self.teacher, paths), FeatureTap(self.model, paths)

    @property
    def total(self) -> int:
        """The step the run ends at: ``config.steps`` until :meth:`retarget` moves it."""
        return self.horizon.end

    def retarget(self, total: int) -> None:
        """End the run at ``total`` steps (>= the completed ones): the rest of the lr schedule and the
        two-stage switch are played over the steps left (:class:`.optim.Horizon`), continuously."""
        if total != self.horizon.end:
            self.horizon = self.horizon.moved(self.completed, total, warmup=self.config.warmup)

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are scored and saved: the EMA when on, else the trained ones."""
        return self.ema.model if self.ema is not None else self.model

    def step(self, inputs: Tensor, targets: Tensor | None = None, hr: Tensor | None = None) -> StepResult:
        """One optimizer step on ``inputs`` (see the module doc); raises :class:`NonFiniteStep` unchanged."""
        cfg = self.config
        stage = stage_at(cfg, self.horizon.unit(self.completed), self.horizon.planned, len(self.block_paths))
        if stage != self._stage:  # changes a few times a run: no walk over the modules every step
            apply_stage(self.model, stage, self.block_paths)
            self._stage = stage
        if targets is None:
            if self.teacher is None:
                raise ScalesError("Distiller.step: no targets given and no teacher to make them")
            with torch.no_grad(), self.autocast():
                targets = self.teacher(inputs)
        with self.autocast():
            outputs = self._train_model(inputs)
        feats = (self._taps[0].outputs, self._taps[1].outputs) if self._taps else None
        parts = self.objective(outputs, targets, hr, feats)
        loss = float(parts.total.detach())
        problem = None if math.isfinite(loss) else f"loss {loss}"
        if problem is None:
            self.optimizer.zero_grad(set_to_none=True)
            parts.total.backward()
            if cfg.clip_grad > 0:
                norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad))
                problem = None if math.isfinite(norm) else "gradient norm is not finite"
        if dist_.any_rank(self.world, problem is not None, self.device):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteStep(f"step {self.completed + 1}: {problem or 'not finite on another rank'}")
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.completed += 1
        return StepResult(self.completed, loss, parts.terms, float(self.optimizer.param_groups[0]["lr"]))

    def finish(self) -> None:
        """Leave any two-stage bypass or FP block: the model is fully binary after (the last step may sit in stage 1)."""
        set_stage(self.model, None)
        self._stage = (None, len(self.block_paths))

    def validate(self, descriptor: Any, dataset: Any) -> tuple[float, float]:
        """Mean (Y-PSNR, SSIM) of the fully binary :attr:`eval_model` on ``dataset``, scored as
        ``scales report`` scores (``descriptor`` gives arch, scale and input range)."""
        from ..metrics.evaluate import evaluate_model

        with fully_binary(self.eval_model) as scored_model:
            scored = evaluate_model(dataclasses.replace(descriptor, model=scored_model), dataset, device=str(self.device))
        return scored.mean_psnr, scored.mean_ssim

    def save(self, path: Path, identity: RunIdentity, **extra: Any) -> Path:
        """``state.pt``: everything :meth:`restore` needs to continue bit-identically, plus ``extra``
        (the driver's own state: wall time, best validation, log window)."""
        return save_state(path, {
            "version": STATE_VERSION, "identity": identity.to_json(), "step": self.completed,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "ema": self.ema.state_dict() if self.ema is not None else None,
            "horizon": self.horizon.to_json(), "rng": rng_state(), **extra,
        })

    def restore(self, path: Path, identity: RunIdentity) -> dict[str, Any]:
        """Load a :meth:`save`'d state (refused when ``identity`` differs); returns it for its extra keys."""
        state = load_state(path, identity)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.horizon = Horizon.from_json(state["horizon"]) if state.get("horizon") else Horizon(self.config.steps)
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        set_rng_state(state["rng"])
        self.completed = int(state["step"])
        return state

    def close(self) -> None:
        for tap in self._taps or ():
            tap.close()

    def __enter__(self) -> Distiller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
