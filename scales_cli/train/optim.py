"""Optimizer, learning-rate schedule and EMA of one run, built from a :class:`FinetuneConfig`.

Two parameter groups: the quantized layers' side parameters (binary activation ``alpha``/``beta``,
a learned weight scale ``wbin.log_scale``, INT8 activation ``scale``/``zero_point`` and the
``spatial``/``channel``/``bn`` re-scaling branches), which may get their own ``scale_lr`` and never
weight decay, and everything else. The schedule is a pure function of the step (so a resumed
scheduler is just its step count):

    warmup  f(t) = (t + 1) / warmup                                  for t < warmup
    cosine  f(t) = 0.5 * (1 + cos(pi * (t - warmup) / (steps - warmup)))
    multistep  f(t) = gamma ** #{m in milestones : t >= m * steps}
    constant   f(t) = 1

A time-budgeted run (:mod:`.budget`) moves its end while it trains. A :class:`Horizon` says which
schedule (f of ``planned`` steps) each real step t plays, and at which step u(t) of it: the lr is
``base * f(u(t))``. With no move, planned = steps and u(t) = t exactly.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .config import FinetuneConfig

_SIDE_PARTS = (".spatial.", ".channel.", ".bn.")
_SIDE_SUFFIXES = (".act.alpha", ".act.beta", ".act.scale", ".act.zero_point", ".wbin.log_scale")  # quantizers' scales


def is_side_parameter(name: str) -> bool:
    """Binarizer scale/threshold or re-scaling branch parameter (by its state-dict name)."""
    dotted = "." + name
    return dotted.endswith(_SIDE_SUFFIXES) or any(part in dotted for part in _SIDE_PARTS)


def parameter_groups(model: nn.Module, config: FinetuneConfig) -> list[dict]:
    side, main = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (side if is_side_parameter(name) else main).append(p)
    groups = []
    if main:
        groups.append({"params": main, "lr": config.lr, "weight_decay": config.weight_decay, "name": "weights"})
    if side:
        groups.append({"params": side, "lr": config.scale_lr or config.lr, "weight_decay": 0.0, "name": "scales"})
    return groups


OPTIMIZERS: dict[str, Callable[[list[dict]], torch.optim.Optimizer]] = {
    "adam": lambda groups: torch.optim.Adam(groups),
    "adamw": lambda groups: torch.optim.AdamW(groups),
}


def make_optimizer(model: nn.Module, config: FinetuneConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS[config.optimizer](parameter_groups(model, config))


def lr_factor(config: FinetuneConfig, steps: int | None = None) -> Callable[[int], float]:
    """``f(t)`` of the module doc for this config (over ``steps``, default ``config.steps``): multiplier
    of each group's base lr at step t."""
    steps = config.steps if steps is None else steps
    warmup = min(config.warmup, steps)

    def after_warmup(t: int) -> float:
        if config.schedule == "cosine":
            span = max(1, steps - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (t - warmup) / span)))
        if config.schedule == "multistep":
            return config.gamma ** sum(t >= m * steps for m in config.milestones)
        return 1.0

    def factor(t: int) -> float:
        if t < warmup:  # (capped: a moved Horizon plays steps between integers, whose ramp passes 1 before t = warmup)
            return min(1.0, (t + 1) / warmup)
        return after_warmup(t)

    return factor


def make_scheduler(optimizer: torch.optim.Optimizer, config: FinetuneConfig,
                   horizon: Callable[[], Horizon] | None = None) -> torch.optim.lr_scheduler.LambdaLR:
    """The lr at step t is ``base * f(u(t))`` of the :class:`Horizon` that ``horizon()`` returns (read at
    every step, so that a moved horizon takes effect at once); none: ``base * f(t)`` of ``config.steps``."""
    if horizon is None:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config))
    factors: dict[int, Callable[[int], float]] = {}

    def at(t: int) -> float:
        h = horizon()
        if h.planned not in factors:
            factors[h.planned] = lr_factor(config, h.planned)
        return factors[h.planned](h.unit(t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, at)


@dataclass(frozen=True)
class Horizon:
    """Where a run ends (``total`` steps), which schedule it plays (f of ``planned`` steps) and which
    step u(t) of it each real step t plays (the lr is ``base * f(u(t))``; the two-stage switch is read
    at u(t) of ``planned`` too).

    Until it moves: planned = the configured steps and u(t) = t, the very integer (an unbudgeted run
    never moves: bit-identical lrs). A move at step k (completed) to a new total N, with u_k = u(k):

    - after the warmup of f (u_k >= w, w = min(warmup, planned)): the rest of the same schedule is
      played over the steps left, ``u(t) = u_k + (t - k) (planned - u_k) / (N - k)``;
    - inside it: the run switches to the schedule of N steps (its warmup w' = min(warmup, N), so a
      first plan shorter than the warmup does not leave the run un-annealed) at the step of the same
      warmup factor, ``u'_k = (u_k + 1) w' / w - 1``, then ``u(t) = u'_k + (t - k) (N - u'_k) / (N - k)``.

    Either way the lr is continuous at k (the step about to run keeps its lr), u never goes back
    within a schedule (a passed milestone stays passed), and u(N) = planned: the schedule ends
    annealed (cosine: lr 0) at the new end. u is only read from the last move on.

    >>> h = Horizon(100).moved(40, 70, warmup=10)
    >>> h.total, h.planned, h.unit(40), h.unit(55), h.unit(70)
    (70, 100, 40.0, 70.0, 100.0)
    >>> h = Horizon(18).moved(1, 166, warmup=50)  # a first plan shorter than its warmup
    >>> h.planned, round(h.unit(1), 3), h.unit(166)
    (166, 4.556, 166.0)
    """

    planned: int
    total: int | None = None  # None: planned
    start: tuple[int, float] | None = None  # (k, u_k) of the last move: u runs linearly to (total, planned)

    @property
    def end(self) -> int:
        return self.planned if self.total is None else self.total

    def unit(self, t: int) -> float:
        """u(t) of the class doc (t itself before any move; ``planned`` past the end)."""
        if self.start is None:
            return t
        k, u_k = self.start
        if t >= self.end:
            return u_k if t == k else float(self.planned)
        return u_k + (t - k) * (self.planned - u_k) / (self.end - k)

    def moved(self, step: int, total: int, *, warmup: int) -> Horizon:
        """This horizon with its end moved to ``total`` (>= ``step``, the completed steps)."""
        total = max(int(total), step)
        u_k, planned = float(self.unit(step)), self.planned
        in_warmup = min(warmup, planned)
        if u_k < in_warmup and total > step:  # inside the warmup: the schedule of `total` steps (class doc)
            u_k, planned = (u_k + 1) * min(warmup, total) / in_warmup - 1, total
        return Horizon(planned, total, (step, u_k))

    def to_json(self) -> dict[str, Any]:
        return {"planned": self.planned, "total": self.end, "start": None if self.start is None else list(self.start)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Horizon:
        start = data.get("start")
        if start is None:
            return cls(int(data["planned"]))
        return cls(int(data["planned"]), int(data["total"]), (int(start[0]), float(start[1])))


class EMA:
    """Exponential moving average of a model's weights: e <- decay * e + (1 - decay) * w after each step.

    Buffers (BN statistics) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.lerp_(p.detach(), 1.0 - self.decay)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)


def grad_missing(model: nn.Module) -> list[str]:
    """Trainable parameters without a gradient after a backward (for the tests and a sanity check)."""
    return [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]


def current_lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    return {g.get("name", str(i)): float(g["lr"]) for i, g in enumerate(optimizer.param_groups)}


def trainable(params: Iterable[nn.Parameter]) -> int:
    return sum(p.numel() for p in params if p.requires_grad)
