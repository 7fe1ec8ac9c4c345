"""Data-aware initialisation glue: a few LR crops from a folder -> :func:`scales_cli.binary.calibrate`.

``scales binarize --calibrate DIR`` reads up to ``n_images`` images of DIR (any format of :data:`scales_cli.inputs.IMAGE_SUFFIXES`) (sorted by name;
gray files are replicated to RGB), takes one ``crop x crop`` random crop of each with a seeded
generator (the same files and seed give the same crops), scales them to ``[0, input_range]`` and
hands them to :func:`scales_cli.binary.calibrate`, which fits each binary layer in forward order
(by default: beta = per-channel mean, alpha = mean |x - beta| of the FP activations; the other
steps and why they are off by default: docs/method.md "Calibration"). INT8 layers get their
activation ranges from the same crops (:func:`scales_cli.binary.int8.calibrate_int8`, "mse" by default).

Defaults (16 images, 64 px crops): more or larger crops did not change IMDN x4's Set5 PSNR by more
than a few hundredths of a dB in the measurements of docs/method.md, and 16 x 64 px keeps the
calibration to a few seconds on a 2-core CPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..binary.calibration import CalibrationOptions, calibrate
from ..binary.int8 import DEFAULT_RANGE_METHOD, Int8Layer, calibrate_int8
from ..binary.modes import LayerMode, layer_mode
from ..errors import DataError
from ..inputs import find_images
from ..metrics.color import gray_to_rgb, load_image

DEFAULT_IMAGES = 16
DEFAULT_CROP = 64
DEFAULT_SEED = 0
DEFAULT_BATCH = 4


@dataclass(frozen=True)
class CalibrationInfo:
    """What went into the initialisation (stored in the student's metadata)."""

    folder: str
    images: int
    crop: int
    seed: int
    layers: int  # binary layers whose state the calibration changed
    options: CalibrationOptions = field(default_factory=CalibrationOptions)
    int8_layers: int = 0  # INT8 layers whose activation range was set
    int8_range: str = DEFAULT_RANGE_METHOD

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def calibration_images(folder: str | Path, n_images: int) -> list[Path]:
    """The first ``n_images`` images of ``folder`` by name (every format :mod:`scales_cli.inputs` lists)."""
    files = find_images(folder, "--calibrate")
    if n_images < 1:
        raise DataError(f"--calib-images {n_images}: expected at least 1")
    return files[:n_images]


def calibration_batches(
    folder: str | Path,
    n_images: int = DEFAULT_IMAGES,
    *,
    crop: int = DEFAULT_CROP,
    seed: int = DEFAULT_SEED,
    input_range: float = 1.0,
    batch_size: int = DEFAULT_BATCH,
) -> list[torch.Tensor]:
    """Seeded random ``crop x crop`` RGB crops as NCHW float batches in ``[0, input_range]``.

    Images smaller than ``crop`` contribute their largest centred square instead (batched alone).
    """
    rng = np.random.default_rng(seed)
    crops: list[np.ndarray] = []
    for path in calibration_images(folder, n_images):
        img = gray_to_rgb(load_image(path))  # RGB comes back as is
        h, w = img.shape[:2]
        size = min(crop, h, w)
        top = int(rng.integers(0, h - size + 1))
        left = int(rng.integers(0, w - size + 1))
        crops.append(img[top : top + size, left : left + size])
    by_size: dict[int, list[np.ndarray]] = {}
    for c in crops:
        by_size.setdefault(c.shape[0], []).append(c)
    batches = []
    for same in by_size.values():
        for i in range(0, len(same), batch_size):
            arr = np.stack(same[i : i + batch_size]).astype(np.float32) / 255.0 * input_range
            batches.append(torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous())
    return batches


def calibrate_student(
    student: nn.Module,
    folder: str | Path,
    n_images: int = DEFAULT_IMAGES,
    *,
    crop: int = DEFAULT_CROP,
    seed: int = DEFAULT_SEED,
    input_range: float = 1.0,
    options: CalibrationOptions | None = None,
    int8_range: str = DEFAULT_RANGE_METHOD,
) -> CalibrationInfo:
    """Fit the student's binary layers on ``folder``'s crops (see :mod:`scales_cli.binary.calibration`),
    then set its INT8 layers' activation ranges by ``int8_range`` from the float network's activations.

    The binary fit runs with the INT8 layers off, so its FP teacher is the float network.
    """
    options = options or CalibrationOptions()
    batches = calibration_batches(folder, n_images, crop=crop, seed=seed, input_range=input_range)
    with layer_mode(student, LayerMode.OFF, Int8Layer):
        calibrated = calibrate(student, batches, options)
    ranges = calibrate_int8(student, batches, int8_range)
    return CalibrationInfo(
        folder=str(folder),
        images=sum(int(b.shape[0]) for b in batches),
        crop=crop,
        seed=seed,
        layers=len(calibrated),
        options=options,
        int8_layers=len(ranges),
        int8_range=int8_range,
    )
