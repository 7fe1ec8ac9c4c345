"""``--arch FILE.py:ClassName``: a user's own ``nn.Module`` class, imported from a file.

Importing a file runs it: the file is trusted code, like any Python module the user imports. What we
promise is that whatever it does while importing — raise, ``sys.exit()``, fail to find a sibling
module — ends as one line naming the file, never a traceback or a silent exit.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
import traceback
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..archs import describe, load_state_dict_into
from ..archs.descriptor import ArchSpec, SRDescriptor
from ..errors import DetectionError
from ..io import Checkpoint


def is_user_arch(arch: str | None) -> bool:
    """``FILE.py:ClassName`` (as opposed to a registered architecture name)."""
    return bool(arch) and ":" in arch and arch.rsplit(":", 1)[0].endswith(".py")  # type: ignore[union-attr]


def load_user_arch(ckpt: Checkpoint, arch: str, opts: dict[str, Any]) -> SRDescriptor:
    """Import ``FILE.py``, build ``ClassName(**opts)`` and load ``ckpt`` into it strictly."""
    file, _, cls_name = arch.rpartition(":")
    cls = _user_class(Path(file), cls_name, arch)
    stated = {k: opts.pop(k) for k in ("scale", "input_range") if k in opts}
    input_range = _as_float(stated.get("input_range", 1.0), "input_range")
    head = tuple(str(opts.pop("head", "")).split(",")) if opts.get("head") else ()
    tail = tuple(str(opts.pop("tail", "")).split(",")) if opts.get("tail") else ()
    # scale / input_range describe the network to us; they are passed on too when the class takes them.
    kwargs = {**opts, **{k: v for k, v in stated.items() if _takes(cls, k)}}
    try:
        model = cls(**kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's constructor may raise anything
        raise DetectionError(f"--arch {arch}: cannot construct {cls_name}({kwargs}): {type(exc).__name__}: {exc}") from None
    load_state_dict_into(model, ckpt.state_dict, ckpt.path, cls_name)
    model.eval()
    if "scale" in stated:
        scale, source = stated["scale"], "--arch-opt"
        if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
            raise DetectionError(f"--arch-opt scale={scale!r}: expected a positive integer")
    else:
        scale, source = _probe_scale(model, input_range, arch), "probe (one forward pass)"
    spec = ArchSpec(
        name=f"user:{cls_name}", required_keys=(), infer=lambda sd: {},
        build=lambda **kw: cls(**{k: v for k, v in kw.items() if _takes(cls, k)}),
        head=head, tail=tail, input_range=input_range,
    )
    desc = describe(spec, model, {**kwargs, "scale": int(scale)}, ckpt)
    from dataclasses import replace

    from ..tiling import window_alignment  # no spec to declare a window: read it off the modules

    return replace(desc, scale_source=source, size_multiple=window_alignment(model))


def _user_class(fpath: Path, cls_name: str, arch: str) -> type[nn.Module]:
    if not fpath.is_file():
        raise DetectionError(f"--arch {arch}: {fpath} not found (expected FILE.py:ClassName)")
    resolved = fpath.resolve()
    # One module name per file: two different model.py files never share (or evict) a sys.modules entry.
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    name = f"scales_user_arch_{fpath.stem}_{digest}"
    spec_obj = importlib.util.spec_from_file_location(name, fpath)
    if spec_obj is None or spec_obj.loader is None:
        raise DetectionError(f"--arch {arch}: cannot import {fpath}")
    module = importlib.util.module_from_spec(spec_obj)
    # Registered like an import, so dataclasses / typing in the user's file can resolve their module.
    sys.modules[name] = module
    # Its folder is importable while it runs, so ``import common`` of a sibling file works as in its repo.
    folder = str(resolved.parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        spec_obj.loader.exec_module(module)
    except KeyboardInterrupt:
        sys.modules.pop(name, None)
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit too: the user's file may do anything; say where, in one line
        sys.modules.pop(name, None)
        raise DetectionError(f"--arch {arch}: importing {fpath} failed ({_where(exc, resolved)})") from None
    finally:
        if added:
            sys.path.remove(folder)
    cls = getattr(module, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise DetectionError(f"--arch {arch}: {fpath} has no nn.Module class {cls_name!r}")
    return cls


def _where(exc: BaseException, target: Path) -> str:
    """``SyntaxError at line 3: invalid syntax`` / ``SystemExit at line 2: 0`` for the user's file."""
    if isinstance(exc, SyntaxError):
        line, text = exc.lineno, exc.msg or ""
    else:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == target]
        line = frames[-1].lineno if frames else None
        text = next(iter(str(exc).strip().splitlines()), "")
        if isinstance(exc, SystemExit):
            text = f"the file called sys.exit({exc.code!r}) while being imported"
    return f"{type(exc).__name__}{f' at line {line}' if line else ''}: {text[:160]}"


def _takes(cls: type, name: str) -> bool:
    """Whether ``cls(...)`` accepts the keyword ``name`` (explicitly or through ``**kwargs``)."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _as_float(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DetectionError(f"--arch-opt {key}={value!r}: expected a number")
    return float(value)


def _probe_scale(model: nn.Module, input_range: float, arch: str) -> int:
    """A user's module states no scale: measure it with one small forward pass (pass scale=N to skip)."""
    size = 16
    try:
        with torch.no_grad():
            out = model(torch.rand(1, 3, size, size) * input_range)
    except Exception as exc:  # noqa: BLE001 - the user's forward may raise anything
        raise DetectionError(
            f"--arch {arch}: a {size}x{size} test forward failed ({type(exc).__name__}: {str(exc)[:120]}); give --arch-opt scale=N"
        ) from None
    scale, rem = divmod(out.shape[-1], size) if isinstance(out, torch.Tensor) else (0, 1)
    if not isinstance(out, torch.Tensor) or out.dim() != 4 or rem or scale < 1 or out.shape[-2] != scale * size:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise DetectionError(
            f"--arch {arch}: returns {shape} for a {size}x{size} input; expected an integer upscale (or give --arch-opt scale=N)"
        )
    return scale
