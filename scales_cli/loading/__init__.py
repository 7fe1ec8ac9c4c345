"""The one front door from a file to a loaded network (:class:`~scales_cli.archs.SRDescriptor`).

Data flows one way: ``io`` reads the file, then exactly one loader claims it —

==================  ===========================================================================
loader              claims
==================  ===========================================================================
path loaders        files no ``torch.load`` can read (exported graphs register here by suffix)
student             safetensors whose metadata says ``scales.format = student`` (:mod:`..recipe.student`)
user module         any checkpoint when ``--arch FILE.py:ClassName`` is given (:mod:`.user`)
registered spec     any other checkpoint: ``--arch NAME`` or detection by keys and shapes (:mod:`..archs`)
==================  ===========================================================================

``archs`` knows only specs and ``recipe`` only students; neither imports this module.

>>> from scales_cli.loading import load
>>> desc = load("IMDN_x4.pth")            # doctest: +SKIP
>>> desc.arch, desc.scale, desc.scale_source  # doctest: +SKIP
('imdn', 4, 'shapes')
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..archs import build_from_spec, detect, infer_hparams
from ..archs._registry import all_specs, spec_by_name
from ..archs.descriptor import ArchSpec, SRDescriptor
from ..errors import DetectionError
from ..io import EXPORTED_SUFFIXES, Checkpoint, read_checkpoint
from .user import is_user_arch, load_user_arch

__all__ = ["PathLoader", "SRDescriptor", "load", "parse_arch_opts", "register_path_loader"]


@dataclass(frozen=True)
class PathLoader:
    """A loader for files that are not checkpoints (e.g. exported ONNX / OpenVINO graphs).

    ``claims(path)`` looks only at the path (suffix, magic bytes); ``load(path, arch_opts)`` returns a
    descriptor whose ``model`` maps NCHW tensors like any other.
    """

    name: str
    claims: Callable[[Path], bool]
    load: Callable[[Path, Mapping[str, Any]], SRDescriptor]


_PATH_LOADERS: list[PathLoader] = []


def register_path_loader(loader: PathLoader) -> None:
    """Add (or replace, by name) a path loader; the export package registers its formats this way."""
    _PATH_LOADERS[:] = [x for x in _PATH_LOADERS if x.name != loader.name] + [loader]


def load(
    path: str | Path, *, arch: str | None = None, arch_opts: Mapping[str, Any] | None = None, exported: bool = True
) -> SRDescriptor:
    """Load ``path`` into its network.

    ``arch``: None (auto-detect), a registered name, or ``FILE.py:ClassName`` for a user's module
    (the file is imported, i.e. run: it must be trusted code). ``arch_opts`` override inferred or
    default hyper-parameters (or are the user class's keyword arguments). ``exported=False``: the caller
    needs a torch network (binarize, export, finetune), so an exported .onnx/.xml is refused in one line
    naming the file it came from (:func:`scales_cli.io.end_product`).
    """
    p = Path(path)
    opts = dict(arch_opts or {})
    for loader in _PATH_LOADERS if exported else ():
        if loader.claims(p):
            return loader.load(p, opts)
    ckpt = read_checkpoint(p)
    if ckpt.metadata.get("scales.format") == "student":
        from ..recipe.student import load_student  # students carry arch + recipe in their metadata

        return load_student(ckpt, arch_opts=opts)
    if is_user_arch(arch):
        return load_user_arch(ckpt, str(arch), opts)
    return load_registered(ckpt, _spec_for(ckpt, arch), opts)


def _spec_for(ckpt: Checkpoint, arch: str | None) -> ArchSpec:
    if not arch:
        return detect(ckpt.state_dict, str(ckpt.path))
    spec = spec_by_name(arch)
    if spec is None:
        names = ", ".join(s.name for s in all_specs())
        raise DetectionError(f"--arch {arch!r}: unknown architecture (known: {names}; or FILE.py:Class)")
    return spec


def load_registered(ckpt: Checkpoint, spec: ArchSpec, opts: Mapping[str, Any]) -> SRDescriptor:
    """Build ``spec`` from ``ckpt``; a scale its shapes cannot tell is settled by running the weights."""
    _, inferred = infer_hparams(spec, ckpt)
    if "scale" in opts or "scale" in inferred or not spec.ambiguous_scales:
        return build_from_spec(spec, ckpt, opts)
    from .scale import decide_scale

    built: dict[int, SRDescriptor] = {}  # each candidate is built once; the chosen one is returned

    def runner_at(scale: int) -> Callable:
        from ..inputs import Upscaler

        built[scale] = build_from_spec(spec, ckpt, {**opts, "scale": scale})
        return Upscaler(built[scale].model, None, built[scale].input_range, built[scale].min_size).upscale_uint8

    default = int(spec.defaults.get("scale", spec.ambiguous_scales[0]))
    decision = decide_scale(spec.ambiguous_scales, default, runner_at, str(ckpt.path))
    desc = built.get(decision.scale) or build_from_spec(spec, ckpt, {**opts, "scale": decision.scale})
    warnings = (*desc.warnings, decision.warning) if decision.warning else desc.warnings
    return replace(desc, scale_source=decision.source, warnings=warnings)


def parse_arch_opts(items: list[str] | None) -> dict[str, Any]:
    """``["res_scale=0.1", "input_range=255"]`` -> ``{"res_scale": 0.1, "input_range": 255}``.

    Values are Python literals where they parse as one, else strings; their types are checked
    against the architecture's own hyper-parameters when it is built.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise DetectionError(f"--arch-opt {item!r}: expected key=value (e.g. res_scale=0.1)")
        try:
            value: Any = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            value = raw.strip()
        out[key.strip()] = value
    return out


def _load_exported(path: Path, opts: Mapping[str, Any]) -> SRDescriptor:
    from ..export.runtime import load_exported  # onnxruntime / OpenVINO are imported only for such files

    return load_exported(path)


# Files written by ``scales export``: they run in onnxruntime (.onnx) or OpenVINO (.xml) behind a torch interface.
register_path_loader(PathLoader("exported", lambda p: p.suffix.lower() in EXPORTED_SUFFIXES, _load_exported))
