"""Benchmark datasets: HR/LR pairs from a folder, from HR images alone, or from explicit lists.

Three ways to name the data, one result (:class:`Dataset`):

* benchmark layout ``DIR/HR/NAME.png`` + ``DIR/LR_bicubic/X{s}/NAMEx{s}.png`` (the ../shared copy of
  Set5/Set14, EDSR's ``benchmark/``);
* HR images alone (``DIR/HR/`` without ``LR_bicubic/X{s}``, or images directly in ``DIR``): the LR is
  made on the fly as ``imresize(modcrop(HR, s), 1/s)`` with the MATLAB-exact resize, which
  reproduces the published LR files bit for bit;
* explicit HR and LR folders (``--hr DIR --lr DIR``), paired by name: the LR of ``NAME.png`` is
  ``NAMEx{s}.png`` or ``NAME.png`` (:func:`dataset_from_dirs`); or file lists paired by position
  (:func:`dataset_from_pairs`).

Pairs are checked when the dataset is built (sizes from file headers, no decoding): a missing LR,
an LR whose size is not ``modcrop(HR, s) / s``, an HR too small to score (after modcrop and the
``s``-pixel border, SSIM needs at least its 11x11 window), an unreadable file or an empty folder is a
one-line :class:`~scales_cli.errors.DataError`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..inputs import IMAGE_SUFFIXES, list_images
from .color import image_size, load_image, modcrop
from .quality import SSIM_WINDOW
from .resize import imresize

HR_DIR = "HR"
LR_DIR = "LR_bicubic"


@dataclass(frozen=True)
class ImagePair:
    """One test image: its HR file and its LR file (``None``: made from the HR on the fly)."""

    name: str
    hr: Path
    lr: Path | None


@dataclass(frozen=True)
class LoadedPair:
    """Decoded images: ``hr`` is already modcropped; ``lr`` has exactly ``hr.shape / scale``."""

    name: str
    hr: np.ndarray
    lr: np.ndarray


@dataclass(frozen=True)
class Dataset:
    """A named, ordered set of test pairs at one scale."""

    name: str
    scale: int
    pairs: tuple[ImagePair, ...]
    origin: str  # "benchmark", "hr-only" or "pairs": where the LR images come from

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[LoadedPair]:
        return (self.load(pair) for pair in self.pairs)

    def load(self, pair: ImagePair) -> LoadedPair:
        hr = modcrop(load_image(pair.hr), self.scale)
        if pair.lr is None:
            return LoadedPair(pair.name, hr, imresize(hr, 1.0 / self.scale))
        lr = load_image(pair.lr)
        if lr.ndim != hr.ndim:
            kinds = {2: "gray", 3: "RGB"}
            raise DataError(f"{pair.lr}: LR is {kinds[lr.ndim]} but its HR {pair.hr.name} is {kinds[hr.ndim]}")
        _check_lr_size(pair.hr, hr.shape[:2], pair.lr, lr.shape[:2], self.scale)
        return LoadedPair(pair.name, hr, lr)


def _check_lr_size(hr_path: Path, hr_hw: tuple[int, int], lr_path: Path, lr_hw: tuple[int, int], scale: int) -> None:
    """``hr_hw`` is the HR size *before or after* modcrop: both give the same expected LR size."""
    want = (hr_hw[0] // scale, hr_hw[1] // scale)
    if tuple(lr_hw) != want:
        raise DataError(
            f"{lr_path}: LR is {lr_hw[1]}x{lr_hw[0]} but modcrop({hr_path.name}, {scale}) / {scale} "
            f"is {want[1]}x{want[0]} (expected LR = HR / scale)"
        )


# Super-resolution factors in use stop at x8 (x16 in a few papers); anything larger is a typo, and
# would otherwise surface as "image too small" rather than as the scale it is.
MAX_SCALE = 16


def _check_scale(scale: int) -> None:
    """Every builder checks the scale first: 0 would divide by zero in :func:`min_hr_side`."""
    if not 1 <= scale <= MAX_SCALE:
        raise DataError(f"scale {scale}: expected an integer from 1 to {MAX_SCALE} (a super-resolution factor, e.g. --scale 4)")


def min_hr_side(scale: int) -> int:
    """Smallest HR side that can be scored: ``modcrop`` keeps a multiple of ``scale``, the border
    shaves ``scale`` pixels from each side, and SSIM needs an 11x11 window in what is left."""
    return scale * (-(-(SSIM_WINDOW + 2 * scale) // scale))


def _check_hr_size(hr_path: Path, scale: int) -> tuple[int, int]:
    h, w = image_size(hr_path)
    need = min_hr_side(scale)
    if h < need or w < need:
        raise DataError(
            f"{hr_path}: {w}x{h} is too small to score at x{scale} (expected at least {need}x{need}: "
            f"{SSIM_WINDOW}x{SSIM_WINDOW} SSIM window after modcrop and a {scale}-pixel border)"
        )
    return h, w


def _lr_for(lr_dir: Path, hr: Path, scale: int) -> Path | None:
    for suffix in dict.fromkeys((hr.suffix, ".png")):
        candidate = lr_dir / f"{hr.stem}x{scale}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def dataset_from_folder(root: str | Path, scale: int) -> Dataset:
    """A dataset from ``root`` in the benchmark layout, or from HR images alone (see module doc)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such dataset folder (expected DIR/HR[/..] or a folder of images)")
    _check_scale(scale)
    hr_dir = root / HR_DIR
    base = hr_dir if hr_dir.is_dir() else root
    hr_files = list_images(base)
    if not hr_files:
        raise DataError(f"{base}: no images found (expected {', '.join(IMAGE_SUFFIXES)} files)")
    lr_dir = root / LR_DIR / f"X{scale}"
    if not (hr_dir.is_dir() and lr_dir.is_dir()):
        for hr in hr_files:
            _check_hr_size(hr, scale)
        return Dataset(dataset_name(root), scale, tuple(ImagePair(p.stem, p, None) for p in hr_files), "hr-only")
    pairs = []
    missing = []
    for hr in hr_files:
        lr = _lr_for(lr_dir, hr, scale)
        if lr is None:
            missing.append(f"{hr.stem}x{scale}.png")
            continue
        _check_lr_size(hr, _check_hr_size(hr, scale), lr, image_size(lr), scale)
        pairs.append(ImagePair(hr.stem, hr, lr))
    if missing:
        raise DataError(
            f"{lr_dir}: {len(missing)} of {len(hr_files)} LR images missing (e.g. {', '.join(missing[:3])})"
        )
    return Dataset(dataset_name(root), scale, tuple(pairs), "benchmark")


def _hr_name_for(lr: Path, scale: int) -> str:
    """``NAMEx{s}.png`` and ``NAME.png`` both name the LR of HR ``NAME``."""
    tag = f"x{scale}"
    return lr.stem[: -len(tag)] if lr.stem.endswith(tag) and len(lr.stem) > len(tag) else lr.stem


def dataset_name(folder: Path) -> str:
    """A folder's dataset name: ``Set5/HR`` is ``Set5``."""
    folder = folder.resolve()
    return folder.parent.name if folder.name == HR_DIR else folder.name


def dataset_from_dirs(hr_dir: str | Path, lr_dir: str | Path, scale: int, name: str | None = None) -> Dataset:
    """HR images in ``hr_dir`` paired by name with LR images in ``lr_dir`` (``NAMEx{s}`` or ``NAME``).

    Every HR needs its LR and every LR its HR: an unpaired file is a :class:`DataError` naming it.
    """
    _check_scale(scale)
    hr_dir, lr_dir = Path(hr_dir), Path(lr_dir)
    for flag, folder in (("--hr", hr_dir), ("--lr", lr_dir)):
        if not folder.is_dir():
            raise DataError(f"{flag} {folder}: no such folder (expected a folder of images)")
    hr_files, lr_files = list_images(hr_dir), list_images(lr_dir)
    for flag, folder, files in (("--hr", hr_dir, hr_files), ("--lr", lr_dir, lr_files)):
        if not files:
            raise DataError(f"{flag} {folder}: no images found (expected {', '.join(IMAGE_SUFFIXES)} files)")
    by_name: dict[str, Path] = {}
    for lr in lr_files:
        key = _hr_name_for(lr, scale)
        if key in by_name:
            raise DataError(f"--lr {lr_dir}: {by_name[key].name} and {lr.name} both pair with HR {key!r}")
        by_name[key] = lr
    hr_names = {hr.stem for hr in hr_files}
    missing = [hr.name for hr in hr_files if hr.stem not in by_name]
    if missing:
        raise DataError(
            f"--lr {lr_dir}: no LR for {len(missing)} of {len(hr_files)} HR images (e.g. {', '.join(missing[:3])}; "
            f"expected NAMEx{scale}.png or NAME.png)"
        )
    extra = [lr.name for key, lr in by_name.items() if key not in hr_names]
    if extra:
        raise DataError(f"--hr {hr_dir}: no HR for {len(extra)} LR images (e.g. {', '.join(extra[:3])})")
    return dataset_from_pairs(hr_files, [by_name[hr.stem] for hr in hr_files], scale, name=name or dataset_name(hr_dir))


def dataset_from_pairs(
    hr: Sequence[str | Path], lr: Sequence[str | Path] | None, scale: int, name: str = "pairs"
) -> Dataset:
    """A dataset from explicit HR files and LR files paired by position (no LR: made on the fly)."""
    _check_scale(scale)
    hr_paths = [Path(p) for p in hr]
    if not hr_paths:
        raise DataError("--hr: no HR images given")
    lr_paths: list[Path | None] = [Path(p) for p in lr] if lr else [None] * len(hr_paths)
    if len(lr_paths) != len(hr_paths):
        raise DataError(f"--hr/--lr: {len(hr_paths)} HR but {len(lr_paths)} LR images (expected one LR per HR)")
    pairs = []
    for hr_path, lr_path in zip(hr_paths, lr_paths, strict=True):
        if not hr_path.is_file():
            raise DataError(f"{hr_path}: no such HR image")
        hw = _check_hr_size(hr_path, scale)
        if lr_path is not None:
            if not lr_path.is_file():
                raise DataError(f"{lr_path}: no such LR image")
            _check_lr_size(hr_path, hw, lr_path, image_size(lr_path), scale)
        pairs.append(ImagePair(hr_path.stem, hr_path, lr_path))
    names = [p.name for p in pairs]
    if len(set(names)) != len(names):
        raise DataError(f"--hr: image names repeat ({', '.join(sorted({n for n in names if names.count(n) > 1}))})")
    return Dataset(name, scale, tuple(pairs), "pairs" if lr else "hr-only")


@dataclass(frozen=True)
class DataSource:
    """Where one dataset is, before the scale is known: a folder (``--data DIR``: benchmark layout or
    HR images alone) or an HR folder with its LR folder (``--hr DIR --lr DIR``)."""

    folder: Path
    lr: Path | None = None

    def open(self, scale: int) -> Dataset:
        if self.lr is None:
            return dataset_from_folder(self.folder, scale)
        return dataset_from_dirs(self.folder, self.lr, scale)


def data_sources(data: Sequence[str | Path], hr: Sequence[str | Path], lr: Sequence[str | Path]) -> list[DataSource]:
    """``--data`` folders, then ``--hr`` folders paired by position with ``--lr`` folders (if any)."""
    if lr and len(lr) != len(hr):
        raise DataError(f"--hr/--lr: {len(hr)} --hr but {len(lr)} --lr folders (give one --lr per --hr, or none)")
    sources = [DataSource(Path(d)) for d in data]
    lrs: list[Path | None] = [Path(p) for p in lr] if lr else [None] * len(hr)
    sources += [DataSource(Path(h), low) for h, low in zip(hr, lrs, strict=True)]
    return sources
