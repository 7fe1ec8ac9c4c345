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

import itertools
from collections.abc import Callable, Iterator, Sequence
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
    """Indices ``t*W*B + rank*B + j`` for steps ``t = start .. steps-1`` (see the module doc).

    ``steps=None``: no end (a time-budgeted run, whose end moves while it trains, stops by itself).
    """

    def __init__(self, start: int, steps: int | None, batch: int, rank: int = 0, world: int = 1) -> None:
        self.start, self.steps, self.batch, self.rank, self.world = start, steps, batch, rank, world

    def __len__(self) -> int:
        if self.steps is None:
            raise TypeError("a StepSampler without an end has no length")
        return max(0, self.steps - self.start) * self.batch

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start, self.steps) if self.steps is not None else itertools.count(self.start):
            base = (step * self.world + self.rank) * self.batch
            yield from range(base, base + self.batch)


def load_train_images(
    hr_folders: Sequence[str | Path],
    lr_folders: Sequence[str | Path],
    scale: int,
    patch: int,
    *,
    warn: Callable[[str], None] | None = None,
) -> list[TrainImage]:
    """Decode every image once, make the LR of HR images, keep those at least one patch large.

    Images smaller than one patch are skipped, with one ``warn`` line per folder saying how many and the
    size needed (default: a ``warning:`` line on stderr); a folder with no usable image is refused.
    """
    if not hr_folders and not lr_folders:
        raise DataError("no training data: give --data DIR (HR images) or --data-lr DIR (LR-only images)")
    say = warn if warn is not None else _warn_on_stderr
    images: list[TrainImage] = []
    for folder in hr_folders:
        images += _usable(folder, "--data", scale, patch, say)
    for folder in lr_folders:
        images += _usable(folder, "--data-lr", 1, patch, say)
    return images


def _usable(folder: str | Path, option: str, scale: int, patch: int, warn: Callable[[str], None]) -> list[TrainImage]:
    """``folder``'s images as training pairs (``scale`` 1: LR-only, no HR made); too small ones skipped."""
    from ..metrics.color import modcrop
    from ..metrics.resize import imresize

    kept: list[TrainImage] = []
    small: list[tuple[Path, int, int]] = []
    for path in find_images(folder, option):
        pixels = _uint8_hwc(path)
        hr = modcrop(pixels, scale) if scale > 1 else pixels
        if hr.shape[0] // scale < patch or hr.shape[1] // scale < patch:
            small.append((path, pixels.shape[1], pixels.shape[0]))  # the file's size, before modcrop
            continue
        if scale > 1:
            kept.append(TrainImage(path, _chw(imresize(hr, 1.0 / scale)), _chw(hr)))
        else:
            kept.append(TrainImage(path, _chw(hr), None))
    need = f"{patch * scale}x{patch * scale}"
    how = f"--patch {patch}" + (f" at x{scale}" if scale > 1 else "")
    if small and not kept:
        path, w, h = small[0]
        hint = "; lower --patch, or give the folder as --data-lr to use the images as LR inputs" if scale > 1 else "; lower --patch"
        raise DataError(
            f"{option} {folder}: every image is smaller than one training patch (e.g. {path.name}: {w}x{h}; "
            f"expected at least {need} for {how}{hint})"
        )
    if small:
        names = ", ".join(f"{p.name} {w}x{h}" for p, w, h in small[:3]) + (", ..." if len(small) > 3 else "")
        warn(f"{option} {folder}: skipped {len(small)} of {len(small) + len(kept)} images smaller than one training patch "
             f"({names}; at least {need} is needed for {how})")
    return kept


def _warn_on_stderr(message: str) -> None:
    import sys

    print(f"warning: {message}", file=sys.stderr)


def _chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).contiguous()


def default_workers(device: torch.device, world: int) -> int:
    """Crops are slices of cached tensors: on a CPU, worker processes only take cores from the step."""
    import os

    if device.type == "cpu":
        return 0
    return max(0, min(4, (os.cpu_count() or 1) // max(1, world) - 1))
