"""Student files: a binarized network as one safetensors file that rebuilds itself.

The file holds the student's full state dict plus string metadata::

    scales.format          "student"
    scales.arch            registered architecture name (e.g. "imdn")
    scales.hparams         JSON of the FP network's hyper-parameters
    scales.recipe          the resolved recipe as self-contained YAML (``extends`` flattened)
    scales.recipe_name     the recipe's name
    scales.recipe_text     the recipe file exactly as written
    scales.teacher_sha256  sha256 of the FP checkpoint it was made from
    scales.version         scales_cli.__version__ that wrote it
    scales.calibration     JSON: how alpha/beta were initialised ({} when not calibrated)
    scales.binarized       number of binarized layers
    scales.training        JSON, only in files written by ``scales finetune``: how it was trained

Loading rebuilds the FP network from arch + hparams, re-applies the recipe (same decisions, same
module paths, binary and INT8 layers alike: an INT8 layer's ``act.scale``/``act.zero_point`` are state) and loads the state dict with ``strict=True``, so the student computes exactly what
was saved.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ..archs.descriptor import SRDescriptor
from ..binary.protocol import is_binary
from ..errors import CheckpointError, ScalesError
from ..io import Checkpoint, atomic_write
from .rewrite import rewrite
from .schema import Recipe, parse_recipe

FORMAT = "student"
PREFIX = "scales."


def student_metadata(
    desc: SRDescriptor, recipe: Recipe, binarized: int, calibration: Mapping[str, Any] | None = None
) -> dict[str, str]:
    from .. import __version__

    return {
        f"{PREFIX}format": FORMAT,
        f"{PREFIX}arch": desc.arch,
        f"{PREFIX}hparams": json.dumps(dict(desc.hparams), sort_keys=True),
        f"{PREFIX}recipe": recipe.to_yaml(),
        f"{PREFIX}recipe_name": recipe.name,
        f"{PREFIX}recipe_text": recipe.text or recipe.to_yaml(),
        f"{PREFIX}teacher_sha256": desc.sha256 or "",
        f"{PREFIX}version": __version__,
        f"{PREFIX}calibration": json.dumps(dict(calibration or {}), sort_keys=True),
        f"{PREFIX}binarized": str(binarized),
    }


def save_student(
    path: str | Path,
    student: nn.Module,
    desc: SRDescriptor,
    recipe: Recipe,
    force: bool = False,
    *,
    binarized: int | None = None,
    calibration: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``student`` (made from ``desc`` by ``recipe``) to ``path`` atomically.

    Every tensor is cloned contiguous: safetensors refuses tensors that share storage (tied weights,
    views), and the file must hold every state-dict key for the strict reload.
    """
    if binarized is None:
        binarized = sum(1 for m in student.modules() if is_binary(m))
    return write_student_file(path, student, student_metadata(desc, recipe, binarized, calibration), force=force)


def write_student_file(path: str | Path, student: nn.Module, metadata: Mapping[str, str], *, force: bool = False) -> Path:
    """The one writer of student files: ``student``'s state dict (cloned contiguous) with ``metadata``.

    ``scales finetune`` writes its students through here with the source student's metadata plus a
    ``scales.training`` block, so every command loads them exactly as it loads ``scales binarize`` output.
    """
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in student.state_dict().items()}
    meta = dict(metadata)
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta), force=force)


def load_student(ckpt: Checkpoint, arch_opts: Mapping[str, Any] | None = None) -> SRDescriptor:
    """Rebuild the student in ``ckpt`` (a file written by :func:`save_student`)."""
    from ..archs import describe, load_state_dict_into  # recipe -> archs, never the reverse
    from ..archs._registry import spec_by_name

    meta = ckpt.metadata
    src = ckpt.path
    arch = _field(meta, "arch", src)
    spec = spec_by_name(arch)
    if spec is None:
        raise CheckpointError(
            f"{src}: student of architecture {arch!r}, which this version does not register "
            "(students of FILE.py:Class networks cannot be rebuilt)"
        )
    hparams = _json_object(meta, "hparams", src, required=True)
    calibration = _json_object(meta, "calibration", src, required=False)
    from ..archs import check_arch_opts

    check_arch_opts(spec, hparams, arch_opts or {})
    hparams.update(arch_opts or {})
    scale = hparams.get("scale")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise CheckpointError(f"{src}: student metadata {PREFIX}hparams has scale {scale!r} (expected a positive integer)")
    spec = spec.specialise(hparams)  # regions may depend on hparams (e.g. SRGAN's numbered tail)
    try:
        recipe = parse_recipe(_field(meta, "recipe", src), source=f"{src} (stored recipe)", name=meta.get(f"{PREFIX}recipe_name", "recipe"))
    except ScalesError as exc:
        raise CheckpointError(f"{src}: its stored recipe no longer validates ({exc.message})") from None
    try:
        fp_model = spec.build(**hparams)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{src}: cannot rebuild {arch} with {hparams} ({exc})") from None
    student, report = rewrite(fp_model, recipe, region_of=spec.region_of)
    load_state_dict_into(student, ckpt.state_dict, src, f"{arch} student ({recipe.name})")
    return describe(
        spec,
        student,
        hparams,
        ckpt,
        scale_source="student file",
        extra={
            "student": {
                "recipe": recipe.name,
                "teacher_sha256": meta.get(f"{PREFIX}teacher_sha256", ""),
                "binarized_layers": len(report.binarized),
                "int8_layers": len(report.int8),
                "kept_layers": len(report.kept),
                "calibration": calibration,
                "written_by": meta.get(f"{PREFIX}version", ""),
            }
        },
    )


def _json_object(meta: Mapping[str, str], key: str, src: Path, *, required: bool) -> dict[str, Any]:
    """A metadata field that must hold a JSON object (``null``, a list or broken JSON is refused by name)."""
    raw = _field(meta, key, src) if required else (meta.get(PREFIX + key) or "{}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{src}: corrupt student metadata {PREFIX}{key} ({exc})") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise CheckpointError(f"{src}: student metadata {PREFIX}{key} is {type(value).__name__} {raw[:40]!r} (expected a JSON object)")
    return value


def _field(meta: Mapping[str, str], key: str, src: Path) -> str:
    value = meta.get(PREFIX + key)
    if not value:
        raise CheckpointError(f"{src}: student file lacks metadata {PREFIX}{key} (not written by scales binarize?)")
    return value
