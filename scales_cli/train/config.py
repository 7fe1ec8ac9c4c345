"""What one fine-tuning run does: a frozen :class:`FinetuneConfig`, from defaults, YAML and options.

Precedence: the defaults below < a ``--config finetune.yaml`` file < options given on the command
line. The YAML holds a flat mapping of field names (``-`` or ``_``), e.g.::

    steps: 2000
    lr: 1.0e-3
    schedule: cosine
    loss: charbonnier

An unknown key or a value of the wrong type is a one-line :class:`~scales_cli.errors.ScalesError`
naming the key and the nearest known one.

Defaults (Adam, lr 2e-3, 50 warmup steps then cosine, batch 8, LR patch 32). The lr was the prior-art
1e-3 until an equal-time comparison: IMDN x4 ``cnn``, ``--budget 25m`` each, run side by side on one core each,
2e-3 led at every validation (Set5 +0.08 to +0.16 dB) and ended +0.14 dB Set5, +0.11 dB Set14 (30.52 / 27.50
against 30.38 / 27.39; docs/results.md, "The default learning rate"), as the 300-step sweep before it had
hinted (+0.05 dB).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import ScalesError

SCHEDULES = ("cosine", "multistep", "constant")
LOSSES = ("l1", "charbonnier")
OPTIMIZERS = ("adam", "adamw")
BLOCKWISE_INPUTS = ("teacher", "student")  # keys of train.blockwise.BLOCK_INPUTS
TWO_STAGE_MODES = ("off", "activations-first", "weights-first")  # what each bypasses: train.stages.TWO_STAGE
AUTOCAST_MODES = ("auto", "bf16", "off")  # keys of train.distiller.AUTOCAST


class ConfigError(ScalesError):
    """A fine-tuning option or config-file entry is out of range or unknown."""


def setting(default: Any, help: str) -> Any:
    """A :class:`FinetuneConfig` field declared once: its default and its help; the ``scales finetune``
    option (``--name-with-dashes``, the field's type, this help plus the default) is generated from it."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of one distillation run (all sizes in LR pixels, steps counted globally).

    ``batch`` is per process (a torchrun world of N processes trains on N x batch crops per step).
    ``scale_lr`` is the learning rate of the binarizers' alpha/beta and of the re-scaling branches
    (``None``: the same as ``lr``). ``ema`` is the decay of an exponential moving average of the
    weights (0: off); when on, validation and the saved students use the averaged weights.
    ``clip_grad`` is the max global gradient norm (0: no clipping). ``two_stage`` bypasses the
    weight (``activations-first``) or activation (``weights-first``) binarizer for the first
    ``first_stage`` fraction of the steps; ``progressive`` switches the body blocks to binary one after
    another over its own fraction of the steps (:mod:`scales_cli.train.stages`). ``blockwise_steps`` > 0
    first trains each binarized body block alone to reproduce its teacher block for that many steps
    (:mod:`scales_cli.train.blockwise`), then runs the ``steps`` end-to-end steps. Each field's help is
    the help of its ``scales finetune`` option (:func:`settings`).
    """

    steps: int = setting(1000, "Training steps.")
    batch: int = setting(8, "Crops per step and process.")
    patch: int = setting(32, "LR crop size in pixels.")
    lr: float = setting(2e-3, "Peak learning rate.")
    scale_lr: float | None = setting(None, "Learning rate of alpha/beta and re-scaling branches (default: --lr).")
    optimizer: str = setting("adam", "adam or adamw.")
    weight_decay: float = setting(0.0, "Weight decay of the weights (never of alpha/beta/branches).")
    schedule: str = setting("cosine", "cosine, multistep or constant.")
    warmup: int = setting(50, "Linear warmup steps.")
    milestones: tuple[float, ...] = setting((0.5, 0.75), "multistep: a fraction of --steps where lr is multiplied by --gamma (repeatable).")
    gamma: float = setting(0.5, "multistep: lr factor at each milestone.")
    loss: str = setting("l1", "Distillation loss: l1 or charbonnier.")
    charbonnier_eps: float = setting(1e-3, "eps of the Charbonnier loss sqrt((S - T)^2 + eps^2).")
    hr_weight: float = setting(0.0, "Weight of an extra L1 to the HR crop (needs --data).")
    feature_weight: float = setting(0.0, "Weight of body-block feature distillation.")
    ema: float = setting(0.0, "EMA decay of the weights, 0 = off.")
    clip_grad: float = setting(0.0, "Max global gradient norm, 0 = off.")
    two_stage: str = setting("off", "off, activations-first (FP weights first) or weights-first (FP activations first).")
    first_stage: float = setting(0.5, "Fraction of --steps in the first stage of --two-stage.")
    progressive: float = setting(0.0, "Fraction of --steps over which the body blocks turn binary one after another (FP until their turn), 0 = off.")
    blockwise_steps: int = setting(0, "Steps per body block of block-wise reconstruction before the end-to-end steps, 0 = off.")
    blockwise_pairs: bool = setting(False, "Block-wise: reconstruct two consecutive chained blocks at a time.")
    blockwise_inputs: str = setting("teacher", "Block-wise: a block's inputs: teacher (its own) or student (the reconstructed student's prefix).")
    blockwise_cache_mb: int = setting(512, "Block-wise: most teacher activations (MB) held at once.")
    seed: int = setting(0, "Seed of crops and initial RNG.")
    device: str = setting("auto", "auto, cpu or cuda[:N] (auto: cuda with bf16 autocast if present).")
    autocast: str = setting("auto", "bf16 autocast of the training forward: auto (on CUDA and on CPUs with AMX-BF16, "
                                    "where it measured faster at equal quality), bf16 (on any device) or off (float32).")
    val_every: int = setting(250, "Validate every N steps, 0 = only at the end.")
    save_every: int = setting(250, "Write OUT/state.pt every N steps, 0 = only at the end.")
    log_every: int = setting(10, "Write a train record to OUT/history.jsonl every N steps.")
    workers: int = setting(-1, "DataLoader workers; -1 = sized to the machine (0 on CPU, where they only steal cores).")

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
        from ..inputs import check_device_name  # lazily: inputs needs numpy, `scales --help` must not

        check_device_name(self.device, "--device")
        _choice("two_stage", self.two_stage, TWO_STAGE_MODES)
        _choice("blockwise_inputs", self.blockwise_inputs, BLOCKWISE_INPUTS)
        _choice("autocast", self.autocast, AUTOCAST_MODES)
        if not (isinstance(self.first_stage, int | float) and 0 < self.first_stage < 1):
            raise ConfigError(f"--first-stage {self.first_stage}: expected a fraction of the run in (0, 1)")
        if not (isinstance(self.progressive, int | float) and 0 <= self.progressive < 1):
            raise ConfigError(f"--progressive {self.progressive}: expected a fraction of the run in [0, 1) (0 turns it off)")
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


@dataclass(frozen=True)
class Setting:
    """One :class:`FinetuneConfig` field as a front end sees it (the CLI makes an option of each)."""

    name: str
    type: Any  # the field's type, e.g. int, float | None, tuple[float, ...]
    default: Any
    help: str

    @property
    def flag(self) -> str:
        return f"--{_flag(self.name)}"

    @property
    def help_with_default(self) -> str:
        """The help, ending in the default when there is one (``None`` says its meaning in the help)."""
        return self.help if self.default is None else f"{self.help} (default {_shown(self.default)})"


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join(_shown(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def settings() -> tuple[Setting, ...]:
    """Every :class:`FinetuneConfig` field, in declaration order, with its type, default and help."""
    hints = typing.get_type_hints(FinetuneConfig)
    return tuple(Setting(f.name, hints[f.name], f.default, f.metadata["help"]) for f in fields(FinetuneConfig))


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
