"""The rewrite pass: recipe + FP network -> binary student + a manifest of every decision.

Two phases (the Brevitas/NNCF lesson): :func:`plan` walks every conv/linear layer once and lets the
rules decide — the last rule whose selector matches a layer wins — without touching the model;
:func:`rewrite` then deep-copies the network and swaps each selected layer for
``make_binary(layer, options)`` (precision ``binary``) or ``make_int8(layer)`` (precision ``int8``). The teacher is never mutated, and module paths are kept, so
``teacher.get_submodule(p)`` and ``student.get_submodule(p)`` are the same layer, FP and binary.

>>> from torch import nn
>>> from scales_cli.recipe import load_recipe, rewrite
>>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 3, 3, padding=1))
>>> student, report = rewrite(net, load_recipe("cnn-full"))
>>> [d.decision for d in report.layers]
['binarize', 'binarize', 'keep']
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ..binary import make_binary
from ..binary.int8 import make_int8
from ..binary.layers import refuse_inapplicable
from ..binary.options import BinaryOptions
from ..errors import RecipeError
from .schema import Recipe, Rule
from .selection import Layer, candidate_layers

DEFAULT_RULE = "(default)"  # names the decision of a layer that no rule selects: it stays FP
BinaryMaker = Callable[[nn.Module, BinaryOptions], nn.Module]
RegionOf = Callable[[str], str]


@dataclass(frozen=True)
class LayerDecision:
    """What the recipe decided for one conv/linear layer, and why."""

    path: str
    region: str
    type: str
    shape: tuple[int, ...]
    decision: str  # "binarize" | "int8" | "keep"
    rule: str  # name of the deciding rule, or DEFAULT_RULE
    options: BinaryOptions | None  # set when decision == "binarize"

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "region": self.region,
            "type": self.type,
            "shape": list(self.shape),
            "decision": self.decision,
            "rule": self.rule,
            "options": asdict(self.options) if self.options else None,
        }


@dataclass(frozen=True)
class RewriteReport:
    """The manifest of one rewrite: every conv/linear layer in registration order."""

    recipe: str
    layers: tuple[LayerDecision, ...]

    @property
    def binarized(self) -> tuple[LayerDecision, ...]:
        return tuple(d for d in self.layers if d.decision == "binarize")

    @property
    def int8(self) -> tuple[LayerDecision, ...]:
        return tuple(d for d in self.layers if d.decision == "int8")

    @property
    def quantized(self) -> tuple[LayerDecision, ...]:
        """Every layer the rewrite swaps: binary and INT8."""
        return tuple(d for d in self.layers if d.decision != "keep")

    @property
    def kept(self) -> tuple[LayerDecision, ...]:
        return tuple(d for d in self.layers if d.decision == "keep")

    def to_json(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "binarized": len(self.binarized),
            "int8": len(self.int8),
            "kept": len(self.kept),
            "layers": [d.to_json() for d in self.layers],
        }


def _target(desc_or_model: Any, region_of: RegionOf | None) -> tuple[nn.Module, RegionOf]:
    """An SRDescriptor gives its model and regions; a bare module is all 'body' unless told."""
    model = getattr(desc_or_model, "model", desc_or_model)
    if not isinstance(model, nn.Module):
        raise TypeError(f"rewrite expects an SRDescriptor or nn.Module, got {type(desc_or_model).__name__}")
    if region_of is None:
        spec_region = getattr(desc_or_model, "region_of", None)
        region_of = spec_region if callable(spec_region) and not isinstance(desc_or_model, nn.Module) else _all_body
    return model, region_of


def _all_body(path: str) -> str:
    return "body"


def plan(desc_or_model: Any, recipe: Recipe, *, region_of: RegionOf | None = None) -> RewriteReport:
    """Decide every layer (no model change). Raises :class:`RecipeError` when a required rule selects
    nothing, or when nothing would be binarized."""
    model, region_of = _target(desc_or_model, region_of)
    layers = candidate_layers(model, region_of)
    if not layers:
        raise RecipeError(f"recipe {recipe.name}: the network has no nn.Conv2d/nn.Linear layer to binarize")
    hits = [0] * len(recipe.rules)
    decisions = []
    for layer in layers:
        winner: Rule | None = None
        for i, rule in enumerate(recipe.rules):
            if rule.select.matches(layer):
                hits[i] += 1
                winner = rule  # later rules override earlier ones
        decisions.append(_decide(layer, winner, recipe))
    for rule, hit in zip(recipe.rules, hits):
        if rule.required and hit == 0:
            raise RecipeError(_no_match_message(recipe, rule, layers))
    report = RewriteReport(recipe=recipe.name, layers=tuple(decisions))
    if not report.quantized:
        decided = ", ".join(sorted({f"{d.rule}: {d.decision}" for d in report.layers}))
        raise RecipeError(
            f"recipe {recipe.source}: binarizes none of the network's {len(layers)} conv/linear layers and makes none INT8 ({decided})"
        )
    return report


DECISIONS: dict[str, str] = {"binary": "binarize", "int8": "int8", "fp": "keep"}
"""A rule's outcome (precision) -> the decision recorded for the layer."""


def _decide(layer: Layer, rule: Rule | None, recipe: Recipe) -> LayerDecision:
    decision = DECISIONS[rule.outcome] if rule is not None else "keep"
    binarize = decision == "binarize"
    if binarize:
        try:
            refuse_inapplicable(layer.type, recipe.given_options(rule))  # type: ignore[arg-type]
        except RecipeError as exc:
            raise RecipeError(f"recipe {recipe.source}: layer {layer.path} (rule {rule.name!r}): {exc.message}") from None  # type: ignore[union-attr]
    return LayerDecision(
        path=layer.path,
        region=layer.region,
        type=layer.type,
        shape=layer.shape,
        decision=decision,
        rule=rule.name if rule is not None else DEFAULT_RULE,
        options=recipe.options_for(rule) if binarize and rule is not None else None,
    )


def _no_match_message(recipe: Recipe, rule: Rule, layers: tuple[Layer, ...]) -> str:
    """Name the rule and the layers that come nearest: fewest failed criteria, then closest path."""
    pattern = " ".join(rule.select.path) or rule.select.describe()

    def distance(layer: Layer) -> tuple[int, float]:
        return len(rule.select.failures(layer)), -difflib.SequenceMatcher(None, pattern, layer.path).ratio()

    nearest = sorted(layers, key=distance)[:3]
    shown = "; ".join(
        f"{layer.path} ({layer.type} {layer.region}{'' if layer.kernel is None else f' k{layer.kernel}'}, fails {','.join(rule.select.failures(layer))})"
        for layer in nearest
    )
    return (
        f"recipe {recipe.source}: rule {rule.name!r} ({rule.select.describe()}) matches none of the "
        f"{len(layers)} conv/linear layers; nearest: {shown} (or set required: false)"
    )


REWRITE_SEED = 0  # the re-scaling branches start from seeded random weights: same input, same student


def apply_plan(model: nn.Module, report: RewriteReport, maker: BinaryMaker | None = None) -> nn.Module:
    """A deep copy of ``model`` with every ``binarize`` decision swapped in (``model`` is untouched).

    New branch weights are drawn from a private generator state seeded with ``REWRITE_SEED``, so the
    same model and recipe always give the same student, and the caller's RNG stream is untouched.
    """
    student = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(REWRITE_SEED)
        _swap_all(student, report, maker or make_binary)
    return student


def _swap_all(student: nn.Module, report: RewriteReport, maker: BinaryMaker) -> None:
    makers: dict[str, BinaryMaker] = {"binarize": maker, "int8": make_int8}
    for d in report.quantized:
        old = student.get_submodule(d.path)
        try:
            new = makers[d.decision](old, d.options)
        except RecipeError as exc:  # e.g. a geometry the spatial branch cannot match: name the layer and rule
            raise RecipeError(f"recipe {report.recipe}: layer {d.path} (rule {d.rule!r}): {exc.message}") from None
        new.train(old.training)
        parent_path, _, child = d.path.rpartition(".")
        parent = student.get_submodule(parent_path) if parent_path else student
        setattr(parent, child, new)


def rewrite(
    desc_or_model: Any,
    recipe: Recipe,
    *,
    region_of: RegionOf | None = None,
    maker: BinaryMaker | None = None,
) -> tuple[nn.Module, RewriteReport]:
    """``(student, manifest)`` for an :class:`~scales_cli.archs.SRDescriptor` or a bare ``nn.Module``.

    ``region_of`` overrides the descriptor's regions (a bare module is all ``body``); ``maker``
    replaces :func:`scales_cli.binary.make_binary` (tests use a fake one).
    """
    model, region_of = _target(desc_or_model, region_of)
    report = plan(model, recipe, region_of=region_of)
    return apply_plan(model, report, maker), report


def is_transformer(desc_or_model: Any, *, region_of: RegionOf | None = None) -> bool:
    """True when the body holds linear layers *and* LayerNorm: token blocks (attention/MLP).

    Linear layers alone are not enough (BSRN writes its 1x1 convs as ``nn.Linear``); LayerNorm over
    tokens is what makes a transformer block, and it is also why the transformer recipe drops channel
    re-scaling (LN removes the channel-to-channel variation).
    """
    model, region_of = _target(desc_or_model, region_of)
    linear = any(layer.type == "linear" and layer.region == "body" for layer in candidate_layers(model, region_of))
    layer_norm = any(isinstance(m, nn.LayerNorm) and region_of(p) == "body" for p, m in model.named_modules())
    return linear and layer_norm


def default_recipe_name(desc_or_model: Any, *, region_of: RegionOf | None = None) -> str:
    """``transformer`` for networks with token blocks in the body (:func:`is_transformer`), else ``cnn``."""
    return "transformer" if is_transformer(desc_or_model, region_of=region_of) else "cnn"
