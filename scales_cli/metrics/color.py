"""Colour conversion, modcrop and image file helpers shared by the metrics.

Images travel as numpy ``uint8`` arrays: ``HxW`` for single-channel (grayscale) files — Set14
``bridge`` is PIL mode ``L`` — and ``HxWx3`` RGB for everything else. Keeping gray images 2-D lets
the scoring conventions (:mod:`.quality`) see that an image *is* gray rather than guessing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


# ITU-R BT.601 "studio swing" luma as MATLAB's rgb2ycbcr computes it from 8-bit RGB:
#   Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, Y in [16, 235].
Y_OFFSET = 16.0
Y_COEFFS = np.array([65.481, 128.553, 24.966], dtype=np.float64)
# The same weights without the offset and the 219/255 swing: full-range luma (PIL's mode-L formula).
LUMA_COEFFS = Y_COEFFS / 219.0  # (0.299, 0.587, 0.114)



def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 Y in float64 (not rounded) from an ``HxWx3`` RGB image with values in 0..255."""
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"rgb_to_y expects HxWx3 RGB, got shape {img.shape}")
    return Y_OFFSET + img.astype(np.float64) @ Y_COEFFS / 255.0


def rgb_to_luma(img: np.ndarray) -> np.ndarray:
    """Full-range luma ``0.299 R + 0.587 G + 0.114 B`` in float64: ``(Y - 16) * 255 / 219``.

    Used to bring a colour network output back onto a gray image's raw intensity scale.
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"rgb_to_luma expects HxWx3 RGB, got shape {img.shape}")
    return img.astype(np.float64) @ LUMA_COEFFS


def gray_to_rgb(img: np.ndarray) -> np.ndarray:
    """Replicate an ``HxW`` image into ``HxWx3`` (R = G = B); RGB input is returned as is."""
    return np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img


def is_gray(img: np.ndarray) -> bool:
    """True for a single-channel (``HxW``) image."""
    return img.ndim == 2


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Keep the top-left corner, cutting H and W down to multiples of ``scale``."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def shave(img: np.ndarray, border: int) -> np.ndarray:
    """Drop ``border`` pixels from every side (the benchmark protocol shaves ``scale`` pixels)."""
    if border <= 0:
        return img
    return img[border:-border, border:-border]


def load_image(path: str | Path) -> np.ndarray:
    """Read an image as ``uint8``: ``HxW`` for gray files (L/1/16-bit gray), else ``HxWx3`` RGB.

    Decoded by the project's one decoder (:func:`scales_cli.decode.decode_image`): alpha is dropped,
    palettes expanded, 16-bit gray rounded to 8 bits; any failure is a one-line :class:`DataError`.
    """
    from ..decode import decode_image

    return decode_image(path).as_uint8()


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` read from the file header only (no decoding)."""
    from ..decode import probe_image

    w, h = probe_image(path)
    return h, w
