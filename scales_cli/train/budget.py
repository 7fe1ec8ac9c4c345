"""``scales finetune --budget 30m``: a user says how long, the run picks how many steps.

The step time is measured, not guessed: ``probe`` steps of the very :class:`.distiller.Distiller`
step the run will take (same crops, batch, device and threads) on a copy of the student, after one
untimed step (first-call allocations). With ``B`` the budget in seconds, ``m`` the seconds the
measurement itself took, ``t`` the measured seconds per end-to-end step and ``b`` the block-wise
stage's estimate (its step count times its step time measured the same way on its last, costliest
unit, whose teacher prefix is the longest):

    steps = floor((B - m - b) / t)

Validation and saving are not in ``t``: keep ``--val-every`` sparse in a budgeted run. The steps are
chosen once and recorded in ``state.pt``'s settings, so ``--resume`` continues the same run and does
not measure again.

>>> parse_budget("1h30m"), parse_budget("90s"), parse_budget("2h")
(5400.0, 90.0, 7200.0)
>>> steps_for_budget(600, probe_seconds=10, step_seconds=1.5)
393
"""

from __future__ import annotations

import copy
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .config import ConfigError

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([hms])")


def parse_budget(text: str) -> float:
    """Seconds in a duration such as ``90s``, ``30m``, ``2h`` or ``1h30m``; anything else is one line."""
    s = str(text).strip().lower()
    parts = _PART.findall(s)
    if not parts or "".join(a + u for a, u in parts) != s:
        raise ConfigError(f"--budget {text}: expected a duration such as 90s, 30m, 2h or 1h30m")
    seconds = sum(float(a) * _UNITS[u] for a, u in parts)
    if seconds <= 0:
        raise ConfigError(f"--budget {text}: expected a duration above zero")
    return seconds


def steps_for_budget(budget_s: float, *, probe_seconds: float, step_seconds: float, stage_seconds: float = 0.0) -> int:
    """``floor((B - m - b) / t)`` of the module doc (0 when nothing is left)."""
    left = budget_s - probe_seconds - stage_seconds
    return max(0, math.floor(left / max(step_seconds, 1e-9)))


@dataclass(frozen=True)
class BudgetPlan:
    """What ``--budget`` decided, recorded in ``history.jsonl`` as a ``budget`` record."""

    budget_s: float
    probe_s: float
    step_s: float
    stage_s: float
    steps: int

    def record(self) -> dict[str, Any]:
        return {"kind": "budget", "budget_s": self.budget_s, "probe_s": round(self.probe_s, 3),
                "step_s": self.step_s, "stage_s": round(self.stage_s, 3), "steps": self.steps}


def time_steps(step: Callable[[int], Any], probe: int) -> float:
    """Median seconds of ``step(i)`` for ``i = 1 .. probe``, after an untimed ``step(0)``."""
    step(0)
    times = []
    for i in range(1, probe + 1):
        started = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def measure_step_seconds(model: nn.Module, config: Any, batch: Callable[[int], Tensor], probe: int = 3,
                         **distiller_options: Any) -> float:
    """Seconds of one end-to-end :meth:`Distiller.step` on a copy of ``model`` (the run's model is untouched)."""
    from .distiller import Distiller

    twin = copy.deepcopy(model)
    rng = torch.get_rng_state()
    try:
        with Distiller(twin, config, **distiller_options) as distiller:
            return time_steps(lambda i: distiller.step(batch(i)), probe)
    finally:
        torch.set_rng_state(rng)  # the run starts from the same RNG state as an unbudgeted one


def measure_stage_seconds(stage: Any, probe: int = 3) -> float:
    """The block-wise stage's estimate ``b``: its steps times the step time of its last unit (on a twin)."""
    per_unit = stage.per_unit
    stage.load_state_dict({"done": (len(stage.plan.units) - 1) * per_unit})
    probe = min(probe, per_unit - 1)
    if probe < 1:  # one step per unit: time that step, its unit's set-up included
        return stage.total * _one(stage.step)
    return stage.total * time_steps(lambda i: stage.step(), probe)


def _one(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def plan_budget(text: str, student: Any, teacher: Any, config: Any, images: Any, device: torch.device) -> BudgetPlan:
    """Measure (module doc) and pick the end-to-end steps for the budget ``text``; one line when none fit."""
    from .blockwise import make_stage
    from .data import TrainSet
    from .distiller import OutputDistillation, bf16_autocast

    budget_s = parse_budget(text)
    started = time.perf_counter()
    r = float(student.input_range)
    teacher_model = teacher.model.to(device).eval()
    for p in teacher_model.parameters():
        p.requires_grad_(False)
    train_set = TrainSet(images, student.scale, config.patch, config.seed, False)

    def batch(i: int) -> Tensor:
        return torch.stack([train_set[j][0] for j in range(i * config.batch, (i + 1) * config.batch)]).to(device) * r

    model = student.model.to(device).train()
    step_s = measure_step_seconds(model, config, batch, teacher=teacher_model,
                                  objective=OutputDistillation.from_config(config, r), device=device)
    stage_s = 0.0
    if config.blockwise_steps:
        twin = copy.deepcopy(model)
        stage = make_stage(twin, teacher_model, student, config, train_set, device, bf16_autocast(device))
        stage_s = measure_stage_seconds(stage)
    probe_s = time.perf_counter() - started
    steps = steps_for_budget(budget_s, probe_seconds=probe_s, step_seconds=step_s, stage_seconds=stage_s)
    if steps < 1:
        raise ConfigError(
            f"--budget {text}: too short here (one step takes {step_s:.2f} s, measuring took {probe_s:.0f} s"
            + (f", the block-wise stage needs ~{stage_s:.0f} s" if stage_s else "") + ")"
        )
    return BudgetPlan(budget_s, probe_s, step_s, stage_s, steps)
