"""MATLAB-compatible bicubic ``imresize`` (the one every SR benchmark's LR images come from).

MATLAB's algorithm, per dimension of length ``n_in`` resized to ``n_out = ceil(n_in * scale)``:

* cubic kernel (Keys, a = -0.5)::

      k(x) = 1.5|x|^3 - 2.5|x|^2 + 1              for |x| <= 1
           = -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2      for 1 < |x| <= 2
           = 0                                    otherwise

* when downscaling (scale < 1) the kernel is stretched: ``h(x) = scale * k(scale * x)`` and its
  support widens from 4 to ``4 / scale`` (this *is* the antialiasing);
* output sample ``x`` (1-based) reads input position ``u = x / scale + 0.5 (1 - 1/scale)``;
  taps are ``floor(u - width/2) + (0 .. ceil(width) + 1)``; weights ``h(u - tap)`` are normalised to
  sum 1 for each output sample;
* taps outside ``1..n_in`` are mirrored (symmetric padding: ``0 -> 1``, ``-1 -> 2``, ``n+1 -> n``);
* dimension 1 (rows, i.e. along the height) is resized first, then dimension 2 (along the width);
* uint8 input: each 1-D pass is rounded half away from zero and clipped to 0..255 before the next.
  Float input: no rounding, no clipping.

Each pass is one dense matrix product ``W @ image`` with ``W`` of shape ``(n_out, n_in)``; the
benchmark images are at most a few hundred pixels a side, so this is fast and exact.

>>> import numpy as np
>>> imresize(np.zeros((8, 6, 3), np.uint8), 0.5).shape
(4, 3, 3)
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

KERNEL_WIDTH = 4.0  # support of the cubic kernel at scale 1


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


@lru_cache(maxsize=64)
def resize_matrix(n_in: int, n_out: int, scale: float) -> np.ndarray:
    """The ``(n_out, n_in)`` float64 matrix that resizes one dimension exactly like MATLAB."""
    antialias = scale < 1
    width = KERNEL_WIDTH / scale if antialias else KERNEL_WIDTH
    x = np.arange(1, n_out + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based input positions
    dist = u[:, None] - indices
    weights = scale * cubic(scale * dist) if antialias else cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in - 1, -1, -1)])  # symmetric padding
    cols = mirror[np.mod(indices.astype(np.int64) - 1, 2 * n_in)]
    matrix = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.repeat(np.arange(n_out), taps)
    np.add.at(matrix, (rows, cols.ravel()), weights.ravel())
    matrix.setflags(write=False)
    return matrix


def _round_uint8(x: np.ndarray) -> np.ndarray:
    """MATLAB's double->uint8 cast: round half away from zero, saturate at 0 and 255."""
    return np.clip(np.sign(x) * np.floor(np.abs(x) + 0.5), 0, 255).astype(np.uint8)


def _resize_axis(img: np.ndarray, axis: int, scale: float, quantise: bool) -> np.ndarray:
    n_in = img.shape[axis]
    n_out = int(math.ceil(n_in * scale))
    matrix = resize_matrix(n_in, n_out, float(scale))
    moved = np.moveaxis(img.astype(np.float64, copy=False), axis, 0)
    out = np.tensordot(matrix, moved, axes=(1, 0))
    out = np.moveaxis(out, 0, axis)
    return _round_uint8(out) if quantise else out


def imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """Resize an HxW or HxWxC image by ``scale`` like MATLAB ``imresize(img, scale, 'bicubic')``.

    uint8 in -> uint8 out (rounded after each 1-D pass); any float dtype -> float64 out, unrounded.
    The output size is ``ceil(H * scale) x ceil(W * scale)``.
    """
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize expects an HxW or HxWxC image, got shape {img.shape}")
    if scale <= 0:
        raise ValueError(f"imresize scale must be positive, got {scale}")
    quantise = img.dtype == np.uint8
    if not quantise and not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"imresize expects uint8 or float input, got {img.dtype}")
    out = _resize_axis(img, 0, scale, quantise)
    return _resize_axis(out, 1, scale, quantise)
