"""PSNR/SSIM protocol: known values, a straightforward SSIM reference, the gray conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scales_cli.metrics.color import gray_to_rgb, modcrop, rgb_to_luma, rgb_to_y, shave
from scales_cli.metrics.quality import Channel, GrayConvention, gaussian_kernel, psnr, score, ssim, ssim_plane


def _ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. written out window by window (2-D Gaussian, valid positions only)."""
    g = gaussian_kernel()
    w = np.outer(g, g)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    k = w.shape[0]
    vals = []
    for i in range(a.shape[0] - k + 1):
        for j in range(a.shape[1] - k + 1):
            x, y = a[i : i + k, j : j + k], b[i : i + k, j : j + k]
            mx, my = (w * x).sum(), (w * y).sum()
            vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
            cxy = (w * (x - mx) * (y - my)).sum()
            vals.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


def test_gaussian_window_is_fspecial():
    g = gaussian_kernel(11, 1.5)
    w = np.outer(g, g)
    assert w.sum() == pytest.approx(1.0)
    assert w[5, 5] == pytest.approx(0.0707, abs=1e-4)  # fspecial('gaussian', 11, 1.5) centre


def test_ssim_matches_windowed_reference():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (23, 19)).astype(np.float64)
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255)
    assert ssim_plane(a, b) == pytest.approx(_ssim_reference(a, b), rel=1e-10)


def test_ssim_identical_is_one_and_constant_shift_lowers_it():
    rng = np.random.default_rng(1)
    a = rng.random((20, 20)) * 255
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, a + 30) < 1.0


def test_ssim_rgb_is_mean_of_channels():
    rng = np.random.default_rng(2)
    a = rng.random((16, 16, 3)) * 255
    b = a + rng.normal(0, 10, a.shape)
    assert ssim(a, b) == pytest.approx(np.mean([ssim_plane(a[..., c], b[..., c]) for c in range(3)]))


def test_ssim_rejects_tiny_planes():
    with pytest.raises(ValueError):
        ssim_plane(np.zeros((8, 30)), np.zeros((8, 30)))


def test_psnr_identical_is_inf():
    a = np.arange(12.0).reshape(3, 4)
    assert psnr(a, a) == math.inf


def test_psnr_known_value():
    a = np.zeros((4, 4))
    b = np.full((4, 4), 255.0 / 10)  # MSE = 255^2 / 100 -> 20 dB
    assert psnr(a, b) == pytest.approx(20.0)


def test_y_of_black_white_and_primaries():
    img = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0]]], np.uint8)
    np.testing.assert_allclose(rgb_to_y(img), [[16.0, 235.0, 16 + 65.481]])
    np.testing.assert_allclose(rgb_to_luma(img), [[0.0, 255.0, 0.299 * 255]])


def test_modcrop_and_shave():
    img = np.zeros((11, 14, 3))
    assert modcrop(img, 4).shape == (8, 12, 3)
    assert shave(np.zeros((10, 12)), 2).shape == (6, 8)


def _noisy_pair(shape: tuple[int, ...], seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    hr = rng.integers(30, 220, shape).astype(np.uint8)
    sr = np.clip(hr.astype(int) + rng.integers(-12, 13, shape), 0, 255).astype(np.uint8)
    return sr, hr


def test_gray_conventions_differ_by_the_y_swing():
    sr, hr = _noisy_pair((40, 40))
    raw = score(sr, hr, border=2, gray=GrayConvention.RAW)
    as_y = score(sr, hr, border=2, gray=GrayConvention.AS_Y)
    # Y = 16 + 219 v / 255 scales every error by 219/255, i.e. + 20 log10(255/219) dB.
    assert as_y.psnr - raw.psnr == pytest.approx(20 * math.log10(255 / 219))


def test_gray_raw_scores_colour_output_by_luma_and_as_y_by_y():
    sr_gray, hr = _noisy_pair((30, 30), seed=4)
    sr_rgb = gray_to_rgb(sr_gray)  # a network fed the replicated gray image returns colour
    for convention in GrayConvention:
        assert score(sr_rgb, hr, border=3, gray=convention).psnr == pytest.approx(
            score(sr_gray, hr, border=3, gray=convention).psnr
        )


def test_colour_images_ignore_the_gray_convention():
    sr, hr = _noisy_pair((30, 30, 3), seed=5)
    assert score(sr, hr, border=2, gray="gray-raw") == score(sr, hr, border=2, gray="gray-as-y")
    rgb = score(sr, hr, border=2, channel=Channel.RGB)
    expected = psnr(shave(sr.astype(float), 2), shave(hr.astype(float), 2))
    assert rgb.psnr == pytest.approx(expected)


def test_score_shaves_the_border():
    sr, hr = _noisy_pair((30, 30, 3), seed=6)
    sr = sr.copy()
    sr[:2] = 0  # damage only the top two rows
    clean = score(np.where(np.arange(30)[:, None, None] < 2, hr, sr), hr, border=2)
    assert score(sr, hr, border=2) == clean
    assert score(sr, hr, border=1).psnr < clean.psnr


def test_score_requires_uint8_and_equal_sizes():
    sr, hr = _noisy_pair((20, 20, 3))
    with pytest.raises(ValueError, match="uint8"):
        score(sr.astype(np.float32), hr, border=2)
    with pytest.raises(ValueError, match="SR is"):
        score(sr[:18], hr, border=2)
