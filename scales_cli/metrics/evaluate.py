"""Run an upscaler (a loaded network, or MATLAB bicubic) over a dataset and score every image.

An *upscaler* is any ``uint8 LR -> uint8 SR`` function; the network and the bicubic baseline are
two of them, so both are scored by exactly the same code.

Network protocol (what the official test scripts do):
``x = LR_rgb_uint8 / 255 * input_range`` (float32, NCHW) -> ``model(x)`` ->
``round(clip(y / input_range * 255, 0, 255))`` as ``uint8``. A gray LR is fed as replicated RGB;
its colour output is brought back to the gray source by the grayscale convention at scoring time
(:mod:`.quality`). Bicubic baseline: ``imresize(LR, scale)`` MATLAB-exact, uint8 after each pass.

>>> from scales_cli.metrics.evaluate import bicubic_upscaler, evaluate      # doctest: +SKIP
>>> evaluate(bicubic_upscaler(4), dataset_from_folder("Set5", 4)).mean_psnr  # doctest: +SKIP
28.429...
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import DataError
from ..inputs import Upscaler
from .color import gray_to_rgb
from .datasets import Dataset
from .quality import Channel, GrayConvention, score
from .resize import imresize

if TYPE_CHECKING:
    from ..archs.descriptor import SRDescriptor

UpscaleFn = Callable[[np.ndarray], np.ndarray]
ProgressCallback = Callable[[str], None]

BICUBIC_LABEL = "Bicubic"


@dataclass(frozen=True)
class ImageResult:
    """Scores of one image."""

    name: str
    psnr: float
    ssim: float


@dataclass(frozen=True)
class EvalResult:
    """Per-image and mean PSNR/SSIM of one upscaler on one dataset, with the protocol used."""

    label: str
    dataset: str
    scale: int
    gray: GrayConvention
    channel: Channel
    images: tuple[ImageResult, ...]
    # SR outputs by image name, only when asked for (``keep_outputs``): the picture maker needs them.
    outputs: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def mean_psnr(self) -> float:
        """Mean of per-image PSNR (the benchmark convention), ``inf`` only if every image is exact."""
        return float(np.mean([r.psnr for r in self.images])) if self.images else math.nan

    @property
    def mean_ssim(self) -> float:
        return float(np.mean([r.ssim for r in self.images])) if self.images else math.nan

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "dataset": self.dataset,
            "scale": self.scale,
            "gray_convention": self.gray.value,
            "channel": self.channel.value,
            "psnr": _finite_or_none(self.mean_psnr),
            "ssim": self.mean_ssim,
            "images": [{"name": r.name, "psnr": _finite_or_none(r.psnr), "ssim": r.ssim} for r in self.images],
        }


def _finite_or_none(x: float) -> float | None:
    """JSON has no ``inf``: an exact reconstruction's PSNR is written as ``null``."""
    return x if math.isfinite(x) else None


def bicubic_upscaler(scale: int) -> UpscaleFn:
    """MATLAB-exact bicubic upscaling (``imresize(LR, scale)``, uint8 after each 1-D pass)."""
    return lambda lr: imresize(lr, float(scale))


def model_upscaler(model: torch.nn.Module, input_range: float, device: str = "cpu", min_size: int = 1) -> UpscaleFn:
    """A network mapping NCHW RGB in ``[0, input_range]`` to the same range, as a uint8 upscaler.

    Runs through :class:`scales_cli.inputs.Upscaler` (padding to ``min_size``, eval mode and ``device``
    for each call only: the caller's model keeps its train/eval flags and device).
    """
    return Upscaler(model, None, float(input_range), min_size, device).upscale_uint8


def evaluate(
    upscale: UpscaleFn,
    dataset: Dataset,
    *,
    label: str = "",
    gray: GrayConvention | str = GrayConvention.AS_Y,
    channel: Channel | str = Channel.Y,
    keep_outputs: bool = False,
    on_image: ProgressCallback | None = None,
) -> EvalResult:
    """Upscale every LR image of ``dataset``, check the output size, score it against the HR."""
    gray, channel = GrayConvention(gray), Channel(channel)
    images = []
    outputs: dict[str, np.ndarray] = {}
    for pair in dataset:
        sr = upscale(pair.lr)
        if sr.shape[:2] != pair.hr.shape[:2]:
            lh, lw = pair.lr.shape[:2]
            raise DataError(
                f"{label or 'model'} on {dataset.name}/{pair.name}: output is {sr.shape[1]}x{sr.shape[0]} for a "
                f"{lw}x{lh} LR, expected x{dataset.scale} = {pair.hr.shape[1]}x{pair.hr.shape[0]}"
            )
        s = score(sr, pair.hr, border=dataset.scale, channel=channel, gray=gray)
        images.append(ImageResult(pair.name, s.psnr, s.ssim))
        if keep_outputs:
            outputs[pair.name] = sr
        if on_image is not None:
            on_image(pair.name)
    return EvalResult(label, dataset.name, dataset.scale, gray, channel, tuple(images), outputs)


def evaluate_model(
    desc: SRDescriptor, dataset: Dataset, *, label: str | None = None, device: str = "cpu", **kwargs: Any
) -> EvalResult:
    """Evaluate a loaded :class:`~scales_cli.archs.SRDescriptor` (``.model``, ``.input_range``)."""
    if desc.scale != dataset.scale:
        raise DataError(f"{label or desc.arch}: model is x{desc.scale} but dataset {dataset.name} is x{dataset.scale}")
    upscaler = Upscaler.of(desc, device)
    with upscaler.placed():  # moved and set to eval once for the whole dataset, restored after
        return evaluate(upscaler.upscale_uint8, dataset, label=label or desc.arch, **kwargs)


def evaluate_bicubic(dataset: Dataset, **kwargs: Any) -> EvalResult:
    """The bicubic baseline row."""
    return evaluate(bicubic_upscaler(dataset.scale), dataset, label=BICUBIC_LABEL, **kwargs)
