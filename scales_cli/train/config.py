"""What one fine-tuning run does: a frozen :class:`FinetuneConfig`, from defaults, YAML and options.

Precedence: the defaults below < a ``--config finetune.yaml`` file < options given on the command
line. The YAML holds a flat mapping of field names (``-`` or ``_``), e.g.::

    steps: 2000
    lr: 1.0e-3
    schedule: cosine
    loss: charbonnier

An unknown key or a value of the wrong type is a one-line :class:`~scales_cli.errors.ScalesError`
naming the key and the nearest known one.

Defaults (Adam, lr 1e-3, 50 warmup steps then cosine, batch 8, LR patch 32): the prior-art setting
of the fine-tuning issue, kept after a 300-step sweep on an IMDN x4 ``cnn`` student in which a
constant or higher lr did slightly better (docs/results.md, "scales finetune": short runs need not
rank settings the way long ones do, so the default awaits a long comparison).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import ScalesError

SCHEDULES = ("cosine", "multistep", "constant")
LOSSES = ("l1", "charbonnier")
OPTIMIZERS = ("adam", "adamw")
DEVICES = ("auto", "cpu", "cuda")
BLOCKWISE_INPUTS = ("teacher", "student")  # keys of train.blockwise.BLOCK_INPUTS
TWO_STAGE_MODES = ("off", "activations-first", "weights-first")  # what each bypasses: train.stages.TWO_STAGE


class ConfigError(ScalesError):
    """A fine-tuning option or config-file entry is out of range or unknown."""


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of one distillation run (all sizes in LR pixels, steps counted globally).

    ``batch`` is per process (a torchrun world of N processes trains on N x batch crops per step).
    ``scale_lr`` is the learning rate of the binarizers' alpha/beta and of the re-scaling branches
    (``None``: the same as ``lr``). ``ema`` is the decay of an exponential moving average of the
    weights (0: off); when on, validation and the saved students use the averaged weights.
    ``clip_grad`` is the max global gradient norm (0: no clipping). ``two_stage`` bypasses the
    weight (``activations-first``) or activation (``weights-first``) binarizer for the first
    ``first_stage`` fraction of the steps (:mod:`scales_cli.train.stages`). ``blockwise_steps`` > 0
    first trains each binarized body block alone to reproduce its teacher block for that many steps
    (:mod:`scales_cli.train.blockwise`; ``blockwise_pairs``: two blocks at a time; teacher activations
    held in at most ``blockwise_cache_mb`` MB), then runs the ``steps`` end-to-end steps.
    """

    steps: int = 1000
    batch: int = 8
    patch: int = 32
    lr: float = 1e-3
    scale_lr: float | None = None
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup: int = 50
    milestones: tuple[float, ...] = (0.5, 0.75)  # multistep: fractions of ``steps`` where lr halves
    gamma: float = 0.5
    loss: str = "l1"
    charbonnier_eps: float = 1e-3
    hr_weight: float = 0.0
    feature_weight: float = 0.0
    ema: float = 0.0
    clip_grad: float = 0.0
    two_stage: str = "off"  # off, activations-first or weights-first (scales_cli.train.stages)
    first_stage: float = 0.5  # fraction of ``steps`` in the first stage of a two-stage run
    blockwise_steps: int = 0  # steps per body block of block-wise reconstruction before the run (0: off)
    blockwise_pairs: bool = False  # reconstruct two consecutive chained blocks at a time
    blockwise_inputs: str = "teacher"  # a block's inputs: the teacher's, or the student's (already reconstructed) prefix
    blockwise_cache_mb: int = 512  # most teacher activations (MB) alive at once in the block-wise stage
    seed: int = 0
    device: str = "auto"
    val_every: int = 250
    save_every: int = 250
    log_every: int = 10
    workers: int = -1  # DataLoader workers; -1: sized to the machine (0 on CPU, where they only steal cores)

    def __post_init__(self) -> None:
        _positive("steps", self.steps)
        _positive("batch", self.batch)
        _positive("patch", self.patch)
        _positive("log_every", self.log_every)
        for name in ("lr", "gamma", "charbonnier_eps"):
            _positive_float(name, getattr(self, name))
        if self.scale_lr is not None:
            _positive_float("scale_lr", self.scale_lr)
        for name in ("hr_weight", "feature_weight", "weight_decay", "clip_grad"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"--{_flag(name)} {value}: expected a number >= 0")
        if not (0 <= self.ema < 1):
            raise ConfigError(f"--ema {self.ema}: expected a decay in [0, 1) (0 turns EMA off)")
        _positive("blockwise_cache_mb", self.blockwise_cache_mb)
        if not isinstance(self.blockwise_pairs, bool):
            raise ConfigError(f"--blockwise-pairs {self.blockwise_pairs!r}: expected true or false")
        for name in ("warmup", "val_every", "save_every", "blockwise_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{_flag(name)} {getattr(self, name)}: expected an integer >= 0 (0: never)")
        if self.workers < -1:
            raise ConfigError(f"workers {self.workers}: expected -1 (auto) or a count >= 0")
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("loss", self.loss, LOSSES)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("device", self.device, DEVICES)
        _choice("two_stage", self.two_stage, TWO_STAGE_MODES)
        _choice("blockwise_inputs", self.blockwise_inputs, BLOCKWISE_INPUTS)
        if not (isinstance(self.first_stage, int | float) and 0 < self.first_stage < 1):
            raise ConfigError(f"--first-stage {self.first_stage}: expected a fraction of the run in (0, 1)")
        if any(not 0 < m < 1 for m in self.milestones):
            raise ConfigError(f"milestones {list(self.milestones)}: expected fractions of the run in (0, 1)")

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def replace(self, **changes: Any) -> FinetuneConfig:
        return build_config(self.to_json(), changes)


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"--{_flag(name)} {value}: expected a positive integer")


def _positive_float(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ConfigError(f"--{_flag(name)} {value}: expected a positive number")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"--{_flag(name)} {value!r}: expected one of {', '.join(allowed)}")


_FIELDS = {f.name: f for f in fields(FinetuneConfig)}


def _coerce(key: str, value: Any, source: str) -> Any:
    """YAML gives ints for floats (``lr: 1``) and lists for tuples; anything else must already fit."""
    default = _FIELDS[key].default
    if key == "milestones":
        if not isinstance(value, list | tuple) or not all(isinstance(v, int | float) for v in value):
            raise ConfigError(f"{source}: {key} must be a list of numbers, got {value!r}")
        return tuple(float(v) for v in value)
    if key == "scale_lr" and value is None:
        return None
    want = type(default) if default is not None else float
    if want is bool:  # a switch takes true/false only (bool is an int in Python: checked first)
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key} must be true or false, got {value!r}")
        return value
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, want):
        raise ConfigError(f"{source}: {key} must be {want.__name__}, got {value!r}")
    return value


def build_config(*layers: Mapping[str, Any], source: str = "options") -> FinetuneConfig:
    """Defaults updated by each mapping in turn (``None`` values are skipped: option not given)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for raw_key, value in layer.items():
            if value is None and raw_key != "scale_lr":
                continue
            key = str(raw_key).replace("-", "_")
            if key not in _FIELDS:
                near = difflib.get_close_matches(key, list(_FIELDS), n=1)
                hint = f" (did you mean {near[0]}?)" if near else f" (known: {', '.join(_FIELDS)})"
                raise ConfigError(f"{source}: unknown fine-tuning setting {raw_key!r}{hint}")
            merged[key] = _coerce(key, value, source)
    return FinetuneConfig(**merged)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file (checked against :class:`FinetuneConfig` by :func:`build_config`)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config {p}: no such file (expected a YAML mapping of fine-tuning settings)")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()
        raise ConfigError(f"--config {p}: not valid YAML ({first[0] if first else exc.__class__.__name__})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {p}: expected a mapping of settings, got {type(data).__name__}")
    build_config(data, source=f"--config {p}")  # validate now, naming the file
    return data
