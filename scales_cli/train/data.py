"""Training crops: folders of images -> seeded, aligned LR (and HR) patches, cached in memory.

Two kinds of folder, both searched recursively for images (:data:`scales_cli.inputs.IMAGE_SUFFIXES`):

* ``data`` (HR folders): each image is an HR image. Its LR is made once, when the set is built, with
  the project's MATLAB-exact bicubic after modcrop (``imresize(modcrop(HR, s), 1/s)``, uint8 after
  each pass, the same LR the benchmarks use), and both are kept in memory as uint8.
* ``data_lr`` (LR-only folders): each image *is* a student input; there is no HR. The teacher's
  output is the target, so a user can distil on their own domain's images at their native
  resolution. ``hr_weight > 0`` needs HR and refuses these folders.

Every image is decoded by :func:`scales_cli.imaging.read_image`, the project's one decoder (gray,
16-bit, palette and alpha handled exactly as ``scales upscale`` handles them; alpha is dropped).

Sampling is a pure function of ``(seed, sample index)``: sample ``i`` picks an image, a crop and one
of the 8 flips/rotations from ``numpy.random.default_rng([seed, i])``. Step ``t`` of a run with
world size ``W`` and per-process batch ``B`` reads the indices ``t*W*B + rank*B + j``. So resuming
at step ``k`` needs no sampler state, workers cannot change the order, and ranks never overlap.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .. import inputs
from ..errors import DataError

def find_images(folder: str | Path, option: str = "--data") -> list[Path]:
    """Every image under ``folder`` (recursive, sorted; :func:`scales_cli.inputs.find_images`)."""
    return inputs.find_images(folder, option, recursive=True)


def _uint8_hwc(path: Path) -> np.ndarray:
    from ..imaging import read_image, to_uint8_

    rgb = read_image(path).rgb  # (1, 3, H, W) float in [0, 1], gray replicated
    return to_uint8_(rgb[0].clone()).permute(1, 2, 0).contiguous().numpy()


@dataclass(frozen=True)
class TrainImage:
    """One cached training image: ``lr`` (3, h, w) uint8 and its ``hr`` (3, s*h, s*w) uint8, or None."""

    path: Path
    lr: torch.Tensor
    hr: torch.Tensor | None


class TrainSet(Dataset):
    """All training images in memory; ``self[i]`` is sample ``i``'s aligned crop pair.

    Returns ``(lr, hr)`` float32 in ``[0, 1]``: ``lr`` (3, P, P); ``hr`` (3, sP, sP) when
    ``with_hr``, else an empty (0,) tensor.
    """

    def __init__(self, images: Sequence[TrainImage], scale: int, patch: int, seed: int, with_hr: bool) -> None:
        self.images = tuple(images)
        self.scale = scale
        self.patch = patch
        self.seed = seed
        self.with_hr = with_hr

    def __len__(self) -> int:  # samples are drawn by index; the set itself is unbounded
        return 2**62

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(index)])
        image = self.images[int(rng.integers(len(self.images)))]
        p, s = self.patch, self.scale
        _, h, w = image.lr.shape
        top, left = int(rng.integers(h - p + 1)), int(rng.integers(w - p + 1))
        turns, flip = int(rng.integers(4)), bool(rng.integers(2))
        lr = _augment(image.lr[:, top : top + p, left : left + p], turns, flip)
        if self.with_hr and image.hr is not None:
            hr = _augment(image.hr[:, top * s : (top + p) * s, left * s : (left + p) * s], turns, flip)
            return lr, hr
        return lr, torch.empty(0)


def _augment(patch: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    if flip:
        patch = patch.flip(-1)
    if turns:
        patch = torch.rot90(patch, turns, dims=(-2, -1))
    return patch.to(torch.float32).div_(255.0)


class StepSampler(Sampler[int]):
    """Indices ``t*W*B + rank*B + j`` for steps ``t = start .. steps-1`` (see the module doc)."""

    def __init__(self, start: int, steps: int, batch: int, rank: int = 0, world: int = 1) -> None:
        self.start, self.steps, self.batch, self.rank, self.world = start, steps, batch, rank, world

    def __len__(self) -> int:
        return max(0, self.steps - self.start) * self.batch

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start, self.steps):
            base = (step * self.world + self.rank) * self.batch
            yield from range(base, base + self.batch)


def load_train_images(
    hr_folders: Sequence[str | Path], lr_folders: Sequence[str | Path], scale: int, patch: int
) -> list[TrainImage]:
    """Decode every image once, make the LR of HR images, check each is at least one patch."""
    from ..metrics.color import modcrop
    from ..metrics.resize import imresize

    if not hr_folders and not lr_folders:
        raise DataError("no training data: give --data DIR (HR images) or --data-lr DIR (LR-only images)")
    images: list[TrainImage] = []
    for folder in hr_folders:
        for path in find_images(folder, "--data"):
            hr = modcrop(_uint8_hwc(path), scale)
            h, w = hr.shape[0] // scale, hr.shape[1] // scale
            if h < patch or w < patch:
                raise DataError(
                    f"{path}: {hr.shape[1]}x{hr.shape[0]} is smaller than one training patch at x{scale} "
                    f"(expected at least {patch * scale}x{patch * scale} for --patch {patch}; "
                    "lower --patch, or give its folder as --data-lr to use the images as LR inputs)"
                )
            lr = imresize(hr, 1.0 / scale)
            images.append(TrainImage(path, _chw(lr), _chw(hr)))
    for folder in lr_folders:
        for path in find_images(folder, "--data-lr"):
            lr = _uint8_hwc(path)
            if lr.shape[0] < patch or lr.shape[1] < patch:
                raise DataError(
                    f"{path}: {lr.shape[1]}x{lr.shape[0]} is smaller than one training patch "
                    f"(expected at least {patch}x{patch} for --patch {patch})"
                )
            images.append(TrainImage(path, _chw(lr), None))
    return images


def _chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).contiguous()


def default_workers(device: torch.device, world: int) -> int:
    """Crops are slices of cached tensors: on a CPU, worker processes only take cores from the step."""
    import os

    if device.type == "cpu":
        return 0
    return max(0, min(4, (os.cpu_count() or 1) // max(1, world) - 1))
