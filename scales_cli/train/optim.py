"""Optimizer, learning-rate schedule and EMA of one run, built from a :class:`FinetuneConfig`.

Two parameter groups: the quantized layers' side parameters (binary activation ``alpha``/``beta``,
INT8 activation ``scale``/``zero_point`` and the ``spatial``/``channel``/``bn`` re-scaling branches),
which may get their own ``scale_lr`` and never weight decay, and everything else. The schedule is a pure function of the step (so a resumed
scheduler is just its step count):

    warmup  f(t) = (t + 1) / warmup                                  for t < warmup
    cosine  f(t) = 0.5 * (1 + cos(pi * (t - warmup) / (steps - warmup)))
    multistep  f(t) = gamma ** #{m in milestones : t >= m * steps}
    constant   f(t) = 1
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from .config import FinetuneConfig

_SIDE_PARTS = (".spatial.", ".channel.", ".bn.")
_SIDE_SUFFIXES = (".act.alpha", ".act.beta", ".act.scale", ".act.zero_point")  # binary and INT8 activation quantizers


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


def lr_factor(config: FinetuneConfig) -> Callable[[int], float]:
    """``f(t)`` of the module doc for this config: multiplier of each group's base lr at step t."""
    steps, warmup = config.steps, min(config.warmup, config.steps)

    def after_warmup(t: int) -> float:
        if config.schedule == "cosine":
            span = max(1, steps - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (t - warmup) / span)))
        if config.schedule == "multistep":
            return config.gamma ** sum(t >= m * steps for m in config.milestones)
        return 1.0

    def factor(t: int) -> float:
        if t < warmup:
            return (t + 1) / warmup
        return after_warmup(t)

    return factor


def make_scheduler(optimizer: torch.optim.Optimizer, config: FinetuneConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config))


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
