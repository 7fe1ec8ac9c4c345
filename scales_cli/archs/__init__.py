"""Architecture zoo: detect a state dict's architecture from its keys and shapes, rebuild, load.

>>> from scales_cli.archs import load
>>> desc = load("IMDN_x4.pth")            # doctest: +SKIP
>>> desc.arch, desc.scale                  # doctest: +SKIP
('imdn', 4)
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import DetectionError
from ..io import Checkpoint, StateDict, read_checkpoint
from ._registry import all_specs, spec_by_name
from .descriptor import ArchSpec, SRDescriptor, count_params, region_summary

__all__ = ["ArchSpec", "SRDescriptor", "describe", "detect", "load", "load_state_dict_into", "parse_arch_opts", "all_specs"]


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


def parse_arch_opts(items: list[str] | None) -> dict[str, Any]:
    """``["res_scale=0.1", "input_range=255"]`` -> ``{"res_scale": 0.1, "input_range": 255}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise DetectionError(f"--arch-opt {item!r}: expected key=value (e.g. res_scale=0.1)")
        try:
            value: Any = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            value = raw.strip()
        out[key.strip()] = value
    return out


def load(
    path: str | Path,
    *,
    arch: str | None = None,
    arch_opts: Mapping[str, Any] | None = None,
) -> SRDescriptor:
    """Load a checkpoint into its network.

    ``arch``: None (auto-detect), a registered name, or ``FILE.py:ClassName`` for a user's module.
    ``arch_opts`` override inferred or default hyper-parameters (or are the user class's kwargs).
    Binarized students (safetensors written by ``scales binarize``) are recognised by their metadata.
    """
    ckpt = read_checkpoint(path)
    if ckpt.metadata.get("scales.format") == "student":
        from ..recipe.student import load_student  # student files carry arch + recipe in metadata

        return load_student(ckpt, arch_opts=arch_opts)
    if arch and ":" in arch and arch.split(":", 1)[0].endswith(".py"):
        return _load_user_arch(ckpt, arch, dict(arch_opts or {}))
    if arch:
        spec = spec_by_name(arch)
        if spec is None:
            names = ", ".join(s.name for s in all_specs())
            raise DetectionError(f"--arch {arch!r}: unknown architecture (known: {names}; or FILE.py:Class)")
    else:
        spec = detect(ckpt.state_dict, str(ckpt.path))
    return build_from_spec(spec, ckpt, arch_opts)


def build_from_spec(spec: ArchSpec, ckpt: Checkpoint, arch_opts: Mapping[str, Any] | None = None) -> SRDescriptor:
    """Infer ``spec``'s hyper-parameters from ``ckpt`` (``defaults`` < inferred < ``arch_opts``), build, load strictly.

    Shapes that do not fit the spec, or hyper-parameters its network rejects, are one-line
    :class:`DetectionError` messages naming the file.
    """
    sd = spec.clean(ckpt.state_dict)
    try:
        hparams = {**spec.defaults, **spec.infer(sd)}
    except (KeyError, ValueError, IndexError) as exc:
        raise DetectionError(f"{ckpt.path}: looks like {spec.name} but its shapes do not fit ({exc})") from None
    hparams.update(arch_opts or {})
    spec = spec.specialise(hparams)
    try:
        model = spec.build(**hparams)
    except (TypeError, ValueError) as exc:
        raise DetectionError(f"{ckpt.path}: cannot build {spec.name} with {hparams} ({exc})") from None
    load_state_dict_into(model, sd, ckpt.path, spec.name)
    return describe(spec, model, hparams, ckpt)


def describe(
    spec: ArchSpec, model: nn.Module, hparams: Mapping[str, Any], ckpt: Checkpoint, extra: Mapping[str, Any] | None = None
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
    )


def load_state_dict_into(model: nn.Module, sd: StateDict, path: Path | str, name: str) -> None:
    """Strict load with a one-line error listing what differed."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in sd and sd[k].shape != own[k].shape]
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


def _load_user_arch(ckpt: Checkpoint, arch: str, opts: dict[str, Any]) -> SRDescriptor:
    file, _, cls_name = arch.rpartition(":")
    fpath = Path(file)
    if not fpath.is_file():
        raise DetectionError(f"--arch {arch}: {fpath} not found (expected FILE.py:ClassName)")
    spec_obj = importlib.util.spec_from_file_location(f"scales_user_arch_{fpath.stem}", fpath)
    if spec_obj is None or spec_obj.loader is None:
        raise DetectionError(f"--arch {arch}: cannot import {fpath}")
    module = importlib.util.module_from_spec(spec_obj)
    # Registered like an import, so dataclasses / typing in the user's file can resolve their module.
    sys.modules[spec_obj.name] = module
    # Its folder is importable while it runs, so ``import common`` of a sibling file works as in its repo.
    folder = str(fpath.resolve().parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        spec_obj.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's file may raise anything; report where, in one line
        sys.modules.pop(spec_obj.name, None)
        raise DetectionError(f"--arch {arch}: importing {fpath} failed ({_where(exc, fpath)})") from None
    finally:
        if added:
            sys.path.remove(folder)
    cls = getattr(module, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise DetectionError(f"--arch {arch}: {fpath} has no nn.Module class {cls_name!r}")
    stated = {k: opts.pop(k) for k in ("scale", "input_range") if k in opts}
    scale = stated.get("scale")
    input_range = float(stated.get("input_range", 1.0))
    head = tuple(str(opts.pop("head", "")).split(",")) if opts.get("head") else ()
    tail = tuple(str(opts.pop("tail", "")).split(",")) if opts.get("tail") else ()
    # scale / input_range describe the network to us; they are passed on too when the class takes them.
    kwargs = {**opts, **{k: v for k, v in stated.items() if _takes(cls, k)}}
    try:
        model = cls(**kwargs)
    except TypeError as exc:
        raise DetectionError(f"--arch {arch}: cannot construct {cls_name}({kwargs}): {exc}") from None
    load_state_dict_into(model, ckpt.state_dict, ckpt.path, cls_name)
    model.eval()
    if scale is None:
        scale = _probe_scale(model, input_range, arch)
    spec = ArchSpec(
        name=f"user:{cls_name}", required_keys=(), infer=lambda sd: {},
        build=lambda **kw: cls(**{k: v for k, v in kw.items() if _takes(cls, k)}),
        head=head, tail=tail, input_range=input_range,
    )
    return describe(spec, model, {**kwargs, "scale": int(scale)}, ckpt)


def _where(exc: BaseException, fpath: Path) -> str:
    """``SyntaxError at line 3: invalid syntax`` / ``RuntimeError at line 7: boom`` for the user's file."""
    if isinstance(exc, SyntaxError):
        line, text = exc.lineno, exc.msg or ""
    else:
        target = fpath.resolve()
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == target]
        line = frames[-1].lineno if frames else None
        text = next(iter(str(exc).strip().splitlines()), "")
    return f"{type(exc).__name__}{f' at line {line}' if line else ''}: {text[:160]}"


def _takes(cls: type, name: str) -> bool:
    """Whether ``cls(...)`` accepts the keyword ``name`` (explicitly or through ``**kwargs``)."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _probe_scale(model: nn.Module, input_range: float, arch: str) -> int:
    """A user's module states no scale: measure it with one small forward pass (pass scale=N to skip)."""
    size = 16
    with torch.no_grad():
        out = model(torch.rand(1, 3, size, size) * input_range)
    scale, rem = divmod(out.shape[-1], size)
    if out.dim() != 4 or rem or scale < 1 or out.shape[-2] != scale * size:
        raise DetectionError(
            f"--arch {arch}: returns shape {tuple(out.shape)} for a {size}x{size} input; "
            "expected an integer upscale (or give --arch-opt scale=N)"
        )
    return scale
