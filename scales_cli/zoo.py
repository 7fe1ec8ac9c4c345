"""The binary model zoo: ready students in ``zoo/``, each a student file plus a JSON manifest.

A manifest (``zoo/NAME.json``) says what the student is and how it was made, with the figures
measured on the file as stored (``benchmarks/build_zoo.py`` writes both)::

    name, file, teacher {file, sha256, license, source}, recipe, storage,
    commands [...], data [...], steps, wall_time_s, device (the bench's machine), trained_on (the training
    device's short name), training_device (in words),
    stages [...] (a build continued from an earlier student: each stage's settings),
    results {Set5: {psnr, ssim}, Set14: {...}}, teacher_results, bicubic_results,
    params, ops, ops_input_size, export {sizes_bytes {...}, openvino_speedup, bench {...}}

``scales report zoo/NAME.safetensors --data Set5 --data Set14`` reproduces ``results`` (a test checks
it to 0.01 dB).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DataError

MANIFEST_SUFFIX = ".json"


def default_zoo_dir() -> Path:
    """``zoo/`` of the source tree this package runs from, else ``./zoo``."""
    here = Path(__file__).resolve().parents[1] / "zoo"
    return here if here.is_dir() else Path.cwd() / "zoo"


@dataclass(frozen=True)
class ZooEntry:
    """One manifest, read as written (``raw``), with the fields the listing shows."""

    name: str
    path: Path  # the student file
    manifest: Path
    raw: dict[str, Any]

    def psnr(self, dataset: str, of: str = "results") -> float | None:
        """PSNR on ``dataset`` of the student (``of`` = ``results``), its FP teacher (``teacher_results``) or
        bicubic (``bicubic_results``), as the manifest records it; None where it records none."""
        return (self.raw.get(of, {}).get(dataset) or {}).get("psnr")

    def kept(self, dataset: str) -> float | None:
        """The share of the FP teacher's PSNR gain over bicubic that the student keeps on ``dataset``
        ((student - bicubic) / (teacher - bicubic)): how much of the teacher's work survives binarization, the
        figure a user weighs against the speed-up (issue 20's zoo goal is >= 0.75 on Set14). None without all three."""
        student, teacher, bicubic = (self.psnr(dataset, of) for of in ("results", "teacher_results", "bicubic_results"))
        if student is None or teacher is None or bicubic is None or teacher <= bicubic:
            return None
        return (student - bicubic) / (teacher - bicubic)

    @property
    def teacher(self) -> str:
        return str(self.raw.get("teacher", {}).get("file", "?"))

    @property
    def trained(self) -> str:
        """Each training stage's budget (or steps) and where it ran (its ``trained_on``), consecutive stages on one
        device joined: ``7m + 3m30s on NVIDIA H200, 40m on CPU``. Manifests written before ``trained_on`` existed
        were all trained on the CPU of the machine that built them."""
        runs: list[tuple[str, list[str]]] = []
        for stage in self.raw.get("stages") or [self.raw]:
            where = str(stage.get("trained_on") or "CPU")
            length = str(stage.get("budget") or f"{stage.get('steps', '?')} steps")
            if runs and runs[-1][0] == where:
                runs[-1][1].append(length)
            else:
                runs.append((where, [length]))
        return ", ".join(f"{' + '.join(lengths)} on {where}" for where, lengths in runs)


def read_zoo(folder: str | Path | None = None) -> list[ZooEntry]:
    """Every manifest in ``folder`` (sorted by name); a malformed one is a one-line error naming it."""
    root = Path(folder) if folder is not None else default_zoo_dir()
    if not root.is_dir():
        raise DataError(f"{root}: no zoo folder (expected a folder of NAME.json manifests and student files)")
    entries = []
    for manifest in sorted(root.glob(f"*{MANIFEST_SUFFIX}")):
        try:
            raw = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{manifest}: not a readable zoo manifest ({exc})") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("file"), str):
            raise DataError(f"{manifest}: zoo manifest lacks its student 'file'")
        entries.append(ZooEntry(str(raw.get("name", manifest.stem)), root / raw["file"], manifest, raw))
    return entries


def store_float16(source: str | Path, target: str | Path) -> Path:
    """Re-store a student file with float16 tensors (metadata kept, plus ``scales.storage``).

    Halves the file; loaders cast floats back to float32 (:func:`scales_cli.io.read_checkpoint`), so the
    stored file is what every figure in its manifest was measured on. Binary weights keep their signs
    (a weight rounding to 0 in float16 reads as +1 — sign(0) = +1 — which the measured figures include).
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from .io import atomic_write

    with safe_open(str(source), "pt") as fh:
        meta = dict(fh.metadata() or {})
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    half = {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    meta["scales.storage"] = "float16"
    return atomic_write(target, lambda tmp: save_file(half, str(tmp), metadata=meta), force=True)
