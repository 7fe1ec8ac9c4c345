"""The project's one image decoder: any file Pillow reads -> integer pixels + alpha + what it was.

Every command that reads images (``upscale``, ``report``, ``binarize --calibrate``, ``finetune``'s data)
goes through :func:`decode_image`, so a file is accepted or refused the same way everywhere:

=========================  ===============================================  =====================
file mode (Pillow)         ``pixels``                                       ``gray`` / ``alpha``
=========================  ===============================================  =====================
``RGB``                    ``uint8 HxWx3``                                  no / none
``L``, ``1``               ``uint8 HxW``                                    yes / none
``I;16*``, ``I`` (16 bit)  ``uint16 HxW`` (values checked to be 0..65535)   yes / none
``RGBA``, ``LA``           colour as above                                  as above / ``L`` plane
``P`` (palette)            expanded to ``RGB`` (``RGBA`` with transparency)  no / if transparent
16-bit RGB PNG             Pillow keeps the high byte: ``uint8 HxWx3``      no / none
``F`` (32-bit float)       refused: the range of float samples is unknown
=========================  ===============================================  =====================

Gray stays 2-D so that consumers can see an image *is* gray (the scoring conventions depend on it).
NumPy only: the metrics use it without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DataError
from .inputs import IMAGE_SUFFIXES  # noqa: F401 - the one list lives with image discovery

# What Pillow raises for a file that is not an image, or whose data is cut short or corrupt.
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)
_NATIVE_MODES = {"RGB", "RGBA", "L", "LA"}
SIXTEEN_BIT_GRAY = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
# Modes with no faithful 8-bit mapping (the range of float samples is unknown); known from the header.
_UNSUPPORTED_MODES = {"F"}


@dataclass(frozen=True)
class DecodedImage:
    """Pixels as the file holds them: ``uint8`` (or ``uint16`` for 16-bit gray), ``HxW`` gray or ``HxWx3``."""

    path: Path
    pixels: np.ndarray
    alpha: Image.Image | None
    mode: str  # the file's original Pillow mode, for messages and reports

    @property
    def gray(self) -> bool:
        return self.pixels.ndim == 2

    @property
    def max_value(self) -> int:
        """255 for 8-bit samples, 65535 for 16-bit gray: ``pixels / max_value`` is in ``[0, 1]``."""
        return 65535 if self.pixels.dtype == np.uint16 else 255

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    def as_uint8(self) -> np.ndarray:
        """8-bit pixels (16-bit gray rounded to the nearest 8-bit level, ``v / 257``)."""
        if self.pixels.dtype == np.uint8:
            return self.pixels
        return np.floor(self.pixels.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)


def decode_image(path: str | Path) -> DecodedImage:
    """Decode ``path``; any unreadable or unsupported file is a one-line :class:`DataError` naming it."""
    p = existing_image_file(path)
    try:
        with Image.open(p) as im:
            im.load()
            return _decoded(p, im)
    except _DECODE_ERRORS as exc:
        raise unreadable(p, exc) from None


def probe_image(path: str | Path) -> tuple[int, int]:
    """Read only the header of ``path``: its (width, height); a one-line :class:`DataError` if it is no image.

    Used to reject bad inputs (and unsupported modes) before a model is loaded or any output is
    written; pixel data errors surface in :func:`decode_image`.
    """
    p = existing_image_file(path)
    try:
        with Image.open(p) as im:
            if im.mode in _UNSUPPORTED_MODES:
                raise _unsupported(p, im.mode)
            return im.size
    except _DECODE_ERRORS as exc:
        raise unreadable(p, exc) from None


def existing_image_file(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{p}: is a directory (expected an image file)")
    if not p.is_file():
        raise DataError(f"{p}: no such image file")
    return p


def unreadable(p: Path, exc: BaseException) -> DataError:
    """One line naming the file: Pillow's messages can span lines (or be empty), so only the first is kept."""
    text = str(exc).strip().splitlines()
    return DataError(f"{p}: not a readable image ({text[0][:160] if text else exc.__class__.__name__})")


def _unsupported(p: Path, mode: str) -> DataError:
    return DataError(f"{p}: {mode} (32-bit float) images are not supported (expected 8/16-bit RGB, gray or palette)")


def _decoded(p: Path, im: Image.Image) -> DecodedImage:
    mode = im.mode
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
    elif mode in _UNSUPPORTED_MODES:
        raise _unsupported(p, mode)
    elif mode not in _NATIVE_MODES and mode not in SIXTEEN_BIT_GRAY:  # 1, CMYK, YCbCr, RGBX, La ...
        im = im.convert("RGBA" if mode.endswith(("A", "a")) else ("L" if mode == "1" else "RGB"))

    alpha: Image.Image | None = None
    if im.mode in ("RGBA", "LA"):
        alpha = im.getchannel("A")
        im = im.convert("RGB" if im.mode == "RGBA" else "L")

    if im.mode in SIXTEEN_BIT_GRAY:
        values = np.asarray(im)
        if values.size and (values.max() > 65535 or values.min() < 0):
            raise DataError(f"{p}: {mode} image has values outside 0..65535 (expected 16-bit gray)")
        return DecodedImage(p, values.astype(np.uint16), alpha, mode)
    if im.mode not in ("L", "RGB"):
        raise DataError(f"{p}: unsupported image mode {mode} (expected RGB, RGBA, L, LA, P or 16-bit gray)")
    return DecodedImage(p, np.array(im, dtype=np.uint8), alpha, mode)
