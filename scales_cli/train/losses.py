"""Distillation losses: student vs FP teacher outputs, optional HR term, optional block features.

With outputs divided by the network's ``input_range`` (so every architecture's loss is in [0, 1]
image units) and S, T the student and teacher outputs, H the HR crop:

    L = D(S, T) + hr_weight * |S - H|_1 + feature_weight * mean_b |f_b^S - f_b^T|_1 / (mean |f_b^T| + 1e-8)

``D`` is L1 (``mean |S - T|``) or Charbonnier (``mean sqrt((S - T)^2 + eps^2)``). Features f_b are
the outputs of the body's top-level blocks (the rewrite keeps module paths, so teacher and student
blocks pair up by name); dividing by the teacher block's mean magnitude gives every block the same
weight whatever its activation scale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import ScalesError


def l1(a: Tensor, b: Tensor, eps: float = 0.0) -> Tensor:
    return (a - b).abs().mean()


def charbonnier(a: Tensor, b: Tensor, eps: float = 1e-3) -> Tensor:
    return torch.sqrt((a - b) ** 2 + eps * eps).mean()


DISTILL_LOSSES: dict[str, Callable[[Tensor, Tensor, float], Tensor]] = {"l1": l1, "charbonnier": charbonnier}


@dataclass(frozen=True)
class LossParts:
    """The total and its named terms (floats, for the log)."""

    total: Tensor
    terms: dict[str, float]


def feature_paths(model: nn.Module, body: Sequence[str]) -> list[str]:
    """The body's top-level block paths that exist in ``model`` (e.g. IMDN's IMDB1..IMDB6, c, LR_conv)."""
    names = dict(model.named_modules())
    return [p for p in body if p in names and p]


class FeatureTap:
    """Forward hooks that keep each named module's tensor output of the latest forward."""

    def __init__(self, model: nn.Module, paths: Sequence[str]) -> None:
        self.outputs: dict[str, Tensor] = {}
        modules = dict(model.named_modules())
        self._handles = [modules[p].register_forward_hook(self._keep(p)) for p in paths]

    def _keep(self, path: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: object, output: object) -> None:
            if isinstance(output, Tensor):
                self.outputs[path] = output

        return hook

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self.outputs.clear()


@contextmanager
def taps(teacher: nn.Module, student: nn.Module, paths: Sequence[str]) -> Iterator[tuple[FeatureTap, FeatureTap] | None]:
    if not paths:
        yield None
        return
    pair = FeatureTap(teacher, paths), FeatureTap(student, paths)
    try:
        yield pair
    finally:
        for t in pair:
            t.close()


def feature_loss(teacher_feats: dict[str, Tensor], student_feats: dict[str, Tensor]) -> Tensor:
    terms = []
    for path, ft in teacher_feats.items():
        fs = student_feats.get(path)
        if fs is None or fs.shape != ft.shape:
            raise ScalesError(f"feature distillation: block {path} has no matching student output of shape {tuple(ft.shape)}")
        ft = ft.detach().float()
        terms.append((fs.float() - ft).abs().mean() / (ft.abs().mean() + 1e-8))
    return torch.stack(terms).mean()


def distillation_loss(
    student_out: Tensor,
    teacher_out: Tensor,
    *,
    kind: str = "l1",
    eps: float = 1e-3,
    hr: Tensor | None = None,
    hr_weight: float = 0.0,
    feats: tuple[dict[str, Tensor], dict[str, Tensor]] | None = None,
    feature_weight: float = 0.0,
) -> LossParts:
    """``L`` of the module doc; outputs already divided by ``input_range``."""
    s = student_out.float()
    distill = DISTILL_LOSSES[kind](s, teacher_out.detach().float(), eps)
    total = distill
    terms = {"distill": float(distill.detach())}
    if hr_weight > 0 and hr is not None and hr.numel():
        hr_term = (s - hr).abs().mean()
        total = total + hr_weight * hr_term
        terms["hr"] = float(hr_term.detach())
    if feature_weight > 0 and feats is not None and feats[0]:
        feat_term = feature_loss(*feats)
        total = total + feature_weight * feat_term
        terms["feature"] = float(feat_term.detach())
    return LossParts(total, terms)
