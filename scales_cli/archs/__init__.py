"""Architecture zoo: detect a state dict's architecture from its keys and shapes, and build it.

This package knows only specs; files (FP checkpoints, students, user modules) come in through the
front door :func:`scales_cli.loading.load`.

>>> from scales_cli.archs import detect, build_from_spec
>>> from scales_cli.io import read_checkpoint
>>> ckpt = read_checkpoint("IMDN_x4.pth")                    # doctest: +SKIP
>>> desc = build_from_spec(detect(ckpt.state_dict), ckpt)    # doctest: +SKIP
>>> desc.arch, desc.scale                                     # doctest: +SKIP
('imdn', 4)
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import DetectionError
from ..io import Checkpoint, StateDict
from ._registry import all_specs
from .descriptor import ArchSpec, SRDescriptor, count_params, region_summary

__all__ = [
    "ArchSpec", "SRDescriptor", "all_specs", "build_from_spec", "check_arch_opts", "describe", "detect", "infer_hparams",
    "load_state_dict_into",
]


def detect(sd: StateDict, source: str = "state dict") -> ArchSpec:
    """The first registered spec that claims ``sd``; otherwise an error naming the closest ones."""
    for spec in all_specs():
        if spec.matches(sd):
            return spec
    raise DetectionError(_no_match_message(sd, source))


def _no_match_message(sd: StateDict, source: str) -> str:
    scored = []
    for spec in all_specs():
        missing = spec.missing(sd)
        share = 1 - len(missing) / max(1, len(spec.required_keys))
        scored.append((share, spec, missing))
    scored.sort(key=lambda t: -t[0])
    if scored and scored[0][0] > 0:
        parts = []
        for share, spec, missing in scored[:3]:
            why = f"missing {', '.join(missing[:3])}" if missing else "keys present but shapes/extra keys differ"
            parts.append(f"{spec.name} ({share:.0%} of its keys; {why})")
        closest = f"closest: {'; '.join(parts)}"
    else:
        closest = f"none of the {len(scored)} known ({', '.join(s.name for _, s, _ in scored)}) shares a required key"
    sample = ", ".join(list(sd)[:3])
    return (
        f"{source}: no known super-resolution architecture matches its {len(sd)} tensors (first keys: {sample})"
        f"{_classifier_hint(sd)}; {closest}. Use --arch FILE.py:Class for your own network"
    )


_CLASSIFIER_HEAD = re.compile(r"(?:^|\.)(?:fc|classifier|head)(?:\.\d+)?\.weight$")


def _classifier_hint(sd: StateDict) -> str:
    """Image classifiers end in a linear layer to class scores (e.g. ResNet ``fc.weight`` (1000, 512))."""
    for key, tensor in sd.items():
        if tensor.dim() == 2 and _CLASSIFIER_HEAD.search(key):
            return f" and looks like an image classifier ({key} maps {tensor.shape[1]} features to {tensor.shape[0]} classes)"
    return ""


def infer_hparams(spec: ArchSpec, ckpt: Checkpoint) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(defaults < inferred, inferred alone)`` for ``spec`` read off ``ckpt``'s shapes.

    Shapes that do not fit the spec are a one-line :class:`DetectionError` naming the file.
    """
    sd = spec.clean(ckpt.state_dict)
    try:
        inferred = spec.infer(sd)
    except (KeyError, ValueError, IndexError) as exc:
        raise DetectionError(f"{ckpt.path}: looks like {spec.name} but its shapes do not fit ({exc})") from None
    return {**spec.defaults, **inferred}, inferred


def build_from_spec(spec: ArchSpec, ckpt: Checkpoint, arch_opts: Mapping[str, Any] | None = None) -> SRDescriptor:
    """Infer ``spec``'s hyper-parameters from ``ckpt`` (``defaults`` < inferred < ``arch_opts``), build, load strictly.

    ``arch_opts`` are checked against the hyper-parameters' own types first (``input_range=banana``
    is refused by name); shapes that do not fit, or values the network rejects, are one-line
    :class:`DetectionError` messages naming the file — and the override, when one caused it.
    """
    opts = dict(arch_opts or {})
    hparams, inferred = infer_hparams(spec, ckpt)
    check_arch_opts(spec, hparams, opts)
    # A value read off the shapes, overridden, can only fail the strict load — after building a
    # network of the requested size (num_blocks=100000 would take all memory first): refuse now.
    # (``defaults`` keys may be inferred by heuristics, e.g. EDSR's res_scale: those stay overridable.)
    contradicted = [k for k in opts if k in inferred and opts[k] != inferred[k] and k not in spec.defaults]
    if contradicted:
        k = contradicted[0]
        raise DetectionError(
            f"--arch-opt {k}={opts[k]!r}: the tensor shapes of {ckpt.path} say {k}={inferred[k]!r} ({spec.name}); "
            "override only what the shapes cannot tell"
        )
    hparams.update(opts)
    spec = spec.specialise(hparams)
    try:
        model = spec.build(**hparams)
    except (TypeError, ValueError) as exc:
        raise DetectionError(f"{ckpt.path}: cannot build {spec.name} with {hparams} ({exc})") from None
    try:
        load_state_dict_into(model, spec.clean(ckpt.state_dict), ckpt.path, spec.name)
    except DetectionError as exc:
        overridden = [f"{k}={opts[k]!r} (its tensor shapes say {k}={inferred[k]!r})" for k in opts if k in inferred and opts[k] != inferred[k]]
        if not overridden:
            raise
        raise DetectionError(f"--arch-opt {'; '.join(overridden)}: {exc.message}") from None
    source = "--arch-opt" if "scale" in opts else ("shapes" if "scale" in inferred else "default")
    return describe(spec, model, hparams, ckpt, scale_source=source)


def check_arch_opts(spec: ArchSpec, hparams: Mapping[str, Any], opts: Mapping[str, Any]) -> None:
    """Each ``--arch-opt`` must name a hyper-parameter of ``spec`` and have that hyper-parameter's type."""
    accepted = _keywords(spec.build)
    for key, value in opts.items():
        if key == "scale":
            expected: type | tuple[type, ...] = int
        elif key == "input_range" or isinstance(hparams.get(key), float):
            expected = (int, float)
        elif key in hparams and hparams[key] is not None:
            expected = (tuple, list) if isinstance(hparams[key], tuple | list) else type(hparams[key])
        elif accepted is None or key in accepted:
            continue  # no known type to hold it to (the network's constructor still checks it)
        else:
            known = ", ".join(sorted({*hparams, *accepted}))
            raise DetectionError(f"--arch-opt {key}: {spec.name} has no such hyper-parameter (known: {known})")
        if not _has_type(value, expected) or (key in ("scale", "input_range") and value <= 0):
            raise DetectionError(
                f"--arch-opt {key}={value!r}: expected {_TYPE_WORDS.get(expected, 'a value like the default')}"
                f"{' > 0' if key in ('scale', 'input_range') else ''} (e.g. {key}={hparams.get(key, 1)!r})"
            )


_TYPE_WORDS: dict[Any, str] = {int: "an integer", (int, float): "a number", (tuple, list): "a list", bool: "True or False", str: "a string"}


def _has_type(value: Any, expected: type | tuple[type, ...]) -> bool:
    kinds = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in kinds:
        return False  # True is an int to Python, not to a hyper-parameter
    return isinstance(value, kinds)


def _keywords(build: Any) -> set[str] | None:
    """The keyword names ``build`` accepts (None when it takes ``**kwargs`` or hides its signature)."""
    try:
        params = inspect.signature(build).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return set(params)


def describe(
    spec: ArchSpec,
    model: nn.Module,
    hparams: Mapping[str, Any],
    ckpt: Checkpoint,
    extra: Mapping[str, Any] | None = None,
    *,
    scale_source: str = "shapes",
) -> SRDescriptor:
    """The descriptor of a loaded network (FP or student): one place that fills every field."""
    model.eval()
    return SRDescriptor(
        arch=spec.name,
        scale=int(hparams["scale"]),
        hparams=dict(hparams),
        input_range=float(hparams.get("input_range", spec.input_range)),
        params=count_params(model),
        sha256=ckpt.sha256,
        source=ckpt.path,
        regions=region_summary(spec, model),
        spec=spec,
        model=model,
        extra=dict(extra or {}),
        scale_source=scale_source,
        size_multiple=spec.size_multiple(hparams),
        min_size=spec.min_size,
    )


def load_state_dict_into(model: nn.Module, sd: StateDict, path: Path | str, name: str) -> None:
    """Strict load with a one-line error listing what differed."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in sd and sd[k].shape != own[k].shape]
    # Integer tensors where the network holds floats would be cast silently by load_state_dict.
    kinds = [f"{k} is {str(sd[k].dtype).removeprefix('torch.')}" for k in own
             if k in sd and own[k].is_floating_point() and not sd[k].is_floating_point()]
    if kinds:
        raise DetectionError(f"{path}: tensor {kinds[0]} (expected floating-point weights for {name})")
    if missing or unexpected or wrong:
        bits = []
        if missing:
            bits.append(f"missing {len(missing)} (e.g. {', '.join(missing[:3])})")
        if unexpected:
            bits.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            bits.append(f"shape mismatch {len(wrong)} (e.g. {'; '.join(wrong[:2])})")
        raise DetectionError(f"{path}: does not load into {name} with strict=True: {'; '.join(bits)}")
    model.load_state_dict(sd, strict=True)
