"""PSNR and SSIM under the SR benchmark protocol, with the grayscale convention made explicit.

Protocol (written once, checked against the published figures in the tests):

* the SR output is rounded to ``uint8`` first (it is an image), then scored in float64;
* channel ``y``: BT.601 ``Y = 16 + (65.481 R + 128.553 G + 24.966 B)/255``, not rounded;
  channel ``rgb``: the three channels (PSNR over all of them, SSIM averaged over them);
* ``border = scale`` pixels are shaved from every side;
* ``PSNR = 10 log10(255^2 / MSE)`` (``inf`` for identical images);
* SSIM of Wang et al. (2004): 11x11 Gaussian window, sigma 1.5, ``C1 = (0.01 L)^2``,
  ``C2 = (0.03 L)^2``, ``L = 255``, statistics on the *valid* region only (no padding)::

      SSIM = mean over windows of (2 mu_x mu_y + C1)(2 sigma_xy + C2)
                                / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))

Single-channel images (Set14 ``bridge``) have two conventions in the literature, and the
published tables disagree, so the caller picks one and it is printed with every result:

* ``gray-raw``: score the gray image's raw intensity (a colour SR output of it is reduced to
  full-range luma ``0.299 R + 0.587 G + 0.114 B``) — the published bicubic Set14 baselines;
* ``gray-as-y``: replicate the gray image to RGB and take its Y like any colour image — what
  IMDN's published Set14 figures use. Y of a gray value v is ``16 + 219 v / 255``.

The default is ``gray-as-y``: it is what BasicSR-style pipelines (and so most published model
figures) do, since they read every file as 3-channel. On Set14 the two differ by about
0.094 dB in the mean (1.32 dB on ``bridge`` alone, ``20 log10(255/219)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .color import gray_to_rgb, is_gray, rgb_to_luma, rgb_to_y, shave
from .conventions import Channel, GrayConvention

DATA_RANGE = 255.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


# Colour image (HxWx3, 0..255) -> scored planes (HxW or HxWx3 float64).
CHANNEL_PLANES: dict[Channel, Callable[[np.ndarray], np.ndarray]] = {
    Channel.Y: rgb_to_y,
    Channel.RGB: lambda img: img.astype(np.float64),
}


def _gray_raw(img: np.ndarray, channel: Channel) -> np.ndarray:
    # The raw intensity whatever the channel choice: a gray image has one plane.
    return img.astype(np.float64) if is_gray(img) else rgb_to_luma(img)


def _gray_as_y(img: np.ndarray, channel: Channel) -> np.ndarray:
    return CHANNEL_PLANES[channel](gray_to_rgb(img))


# Image of a gray *source* (the gray original, or a colour network output of it) -> scored planes.
GRAY_PLANES: dict[GrayConvention, Callable[[np.ndarray, Channel], np.ndarray]] = {
    GrayConvention.RAW: _gray_raw,
    GrayConvention.AS_Y: _gray_as_y,
}


def scored_planes(img: np.ndarray, *, source_gray: bool, channel: Channel, gray: GrayConvention) -> np.ndarray:
    """The float64 planes that are compared for ``img`` (HR or SR) under the given conventions."""
    if source_gray:
        return GRAY_PLANES[GrayConvention(gray)](img, Channel(channel))
    if is_gray(img):
        raise ValueError("a gray image cannot stand for a colour source")
    return CHANNEL_PLANES[Channel(channel)](img)


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = DATA_RANGE) -> float:
    """``10 log10(L^2 / MSE)`` in float64 over all elements; ``inf`` when the images are identical."""
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ {a.shape} vs {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(data_range * data_range / mse)


def gaussian_kernel(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian; its outer product is MATLAB's ``fspecial('gaussian', size, sigma)``."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of a 2-D image with ``outer(g, g)``."""
    windows = np.lib.stride_tricks.sliding_window_view(img, g.size, axis=0)  # (H-k+1, W, k)
    rows = windows @ g
    windows = np.lib.stride_tricks.sliding_window_view(rows, g.size, axis=1)  # (H-k+1, W-k+1, k)
    return windows @ g


def ssim_plane(a: np.ndarray, b: np.ndarray, data_range: float = DATA_RANGE) -> float:
    """SSIM of two 2-D float images (Wang et al., Gaussian 11x11 sigma 1.5, valid region)."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"ssim: expected two equal 2-D planes, got {a.shape} and {b.shape}")
    if min(a.shape) < SSIM_WINDOW:
        raise ValueError(f"ssim: planes of {a.shape} are smaller than the {SSIM_WINDOW}x{SSIM_WINDOW} window")
    x, y = a.astype(np.float64), b.astype(np.float64)
    g = gaussian_kernel()
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = _filter_valid(x, g), _filter_valid(y, g)
    var_x = _filter_valid(x * x, g) - mu_x * mu_x
    var_y = _filter_valid(y * y, g) - mu_y * mu_y
    cov = _filter_valid(x * y, g) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return float(np.mean(num / den))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = DATA_RANGE) -> float:
    """SSIM of 2-D planes, or the mean of per-channel SSIM for ``HxWxC`` arrays."""
    if a.ndim == 3:
        return float(np.mean([ssim_plane(a[..., c], b[..., c], data_range) for c in range(a.shape[2])]))
    return ssim_plane(a, b, data_range)


@dataclass(frozen=True)
class Score:
    """PSNR (dB) and SSIM of one image."""

    psnr: float
    ssim: float


def score(
    sr: np.ndarray,
    hr: np.ndarray,
    *,
    border: int,
    channel: Channel | str = Channel.Y,
    gray: GrayConvention | str = GrayConvention.AS_Y,
) -> Score:
    """Score a ``uint8`` SR image against its ``uint8`` HR (already modcropped) under the protocol.

    ``hr`` decides whether the source is gray (``HxW``); ``sr`` may be gray or a colour output.
    """
    if sr.dtype != np.uint8 or hr.dtype != np.uint8:
        raise ValueError(f"score expects uint8 images (round the SR output first), got {sr.dtype} and {hr.dtype}")
    if sr.shape[:2] != hr.shape[:2]:
        raise ValueError(f"score: SR is {sr.shape[:2]} but HR is {hr.shape[:2]}")
    channel, gray = Channel(channel), GrayConvention(gray)
    source_gray = is_gray(hr)
    a = shave(scored_planes(sr, source_gray=source_gray, channel=channel, gray=gray), border)
    b = shave(scored_planes(hr, source_gray=source_gray, channel=channel, gray=gray), border)
    return Score(psnr=psnr(a, b), ssim=ssim(a, b))
