"""The run's state (``OUT/state.pt``) and its student files, written atomically.

``state.pt`` holds everything a resumed run needs to continue exactly: the step, the student's and
the EMA's state dicts, the optimizer and scheduler states, every RNG state (torch CPU and CUDA,
numpy, Python), the best validation so far, and the config and file digests it was started with
(a resume with different settings or files is refused: it would not continue the same run).
Data sampling needs no state: crops are a function of (seed, sample index), see :mod:`.data`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ScalesError
from ..io import atomic_write

STATE_FILE = "state.pt"
BEST_FILE = "student.safetensors"
LAST_FILE = "last.safetensors"
HISTORY_FILE = "history.jsonl"
CURVES_FILE = "curves.png"
OUTPUT_FILES = (STATE_FILE, BEST_FILE, LAST_FILE, HISTORY_FILE, CURVES_FILE)
STATE_VERSION = 1


def read_history(path: Path) -> list[dict[str, Any]]:
    """The records of a run's ``history.jsonl`` in order; a line cut by a kill is dropped (its step is redone)."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass(frozen=True)
class RunIdentity:
    """What must not change between a run and its resume."""

    config: Mapping[str, Any]
    student_sha256: str
    teacher_sha256: str
    world_size: int

    def to_json(self) -> dict[str, Any]:
        return {"config": dict(self.config), "student_sha256": self.student_sha256,
                "teacher_sha256": self.teacher_sha256, "world_size": self.world_size}


def save_state(path: Path, payload: dict[str, Any]) -> Path:
    """``torch.save`` through a temp file + rename: an interrupted write never leaves a broken state."""
    return atomic_write(path, lambda tmp: torch.save(payload, tmp), force=True)


def load_state(path: Path, identity: RunIdentity) -> dict[str, Any]:
    if not path.is_file():
        raise ScalesError(f"--resume: {path} does not exist (nothing to resume; drop --resume, or --force to start over)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable state is the same one-line error
        raise ScalesError(f"--resume: {path} is not a readable training state ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise ScalesError(f"--resume: {path} is not a scales finetune state (version {STATE_VERSION})")
    mine, theirs = identity.to_json(), state.get("identity", {})
    if mine != theirs:
        diff = _first_difference(theirs, mine)
        raise ScalesError(f"--resume: {path} was started with {diff}; resume with the same files and settings, or --force to start over")
    return state


def _first_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            if a != b:
                return _first_difference(a, b)
        elif a != b:
            return f"{key}={json.dumps(a)} (now {json.dumps(b)})"
    return "different settings"


def save_trained_student(
    path: Path, model: nn.Module, source_metadata: Mapping[str, str], training: Mapping[str, Any]
) -> Path:
    """A student file exactly as ``scales binarize`` writes it, plus ``scales.training`` JSON."""
    from .. import __version__
    from ..recipe.student import PREFIX, write_student_file

    meta = {k: v for k, v in source_metadata.items() if k.startswith(PREFIX)}
    meta[f"{PREFIX}training"] = json.dumps(dict(training), sort_keys=True)
    meta[f"{PREFIX}version"] = __version__
    return write_student_file(path, model, meta, force=True)
