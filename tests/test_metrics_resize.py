"""MATLAB-exact imresize: bit-exact against the benchmark LR files, and internal consistency."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scales_cli.metrics.color import load_image, modcrop
from scales_cli.metrics.resize import cubic, imresize, resize_matrix


@pytest.mark.parametrize("dataset", ["Set5", "Set14"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_reproduces_benchmark_lr_bit_exactly(benchmarks: Path, dataset: str, scale: int):
    hr_files = sorted((benchmarks / dataset / "HR").glob("*.png"))
    assert hr_files
    for hr_path in hr_files:
        lr = load_image(benchmarks / dataset / "LR_bicubic" / f"X{scale}" / f"{hr_path.stem}x{scale}.png")
        ours = imresize(modcrop(load_image(hr_path), scale), 1 / scale)
        assert ours.dtype == np.uint8
        assert ours.shape == lr.shape, hr_path.stem
        diff = np.abs(ours.astype(int) - lr.astype(int))
        assert diff.max() == 0, f"{dataset}/{hr_path.stem} x{scale}: {int((diff > 0).sum())} pixels differ"


def test_cubic_kernel_values():
    x = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, -0.5])
    # k(0)=1, k(0.5)=1.5/8-2.5/4+1, k(1)=0, k(1.5)=-0.5*3.375+2.5*2.25-6+2, k(2)=0, outside=0, even
    np.testing.assert_allclose(cubic(x), [1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0, 0.5625])


@pytest.mark.parametrize(("n_in", "scale"), [(10, 0.5), (9, 1 / 3), (12, 0.25), (5, 2.0), (7, 3.0), (6, 4.0)])
def test_weight_rows_sum_to_one(n_in: int, scale: float):
    matrix = resize_matrix(n_in, int(np.ceil(n_in * scale)), scale)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-12)


def test_scale_one_is_identity():
    img = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    assert np.array_equal(imresize(img, 1.0), img)


def test_constant_image_stays_constant_both_ways():
    img = np.full((12, 18), 77, np.uint8)
    assert np.all(imresize(img, 0.25) == 77)
    assert np.all(imresize(img, 3.0) == 77)


def test_mirror_padding_not_edge_replication():
    # A ramp: with symmetric padding the first output sample mirrors about the first pixel.
    n = 8
    matrix = resize_matrix(n, n // 2, 0.5)
    # u for output 1 is 1.5: taps -2..5 mirror to 2,1,1,2,3,4,5 ... so input index 0 and 1 are both
    # weighted twice over; edge replication would pile the outer taps onto index 0 only.
    ramp = np.arange(n, dtype=np.float64)
    expected_first = float(matrix[0] @ ramp)
    sym = np.concatenate([ramp[::-1], ramp, ramp[::-1]])  # mirror: [..., 1, 0 | 0, 1, ...]
    rep = np.concatenate([np.zeros(n), ramp, np.full(n, n - 1.0)])
    u = 1.5
    taps = np.floor(u - 4) + np.arange(10)
    w = 0.5 * cubic(0.5 * (u - taps))
    w /= w.sum()
    idx = taps.astype(int) - 1 + n
    assert expected_first == pytest.approx(float(w @ sym[idx]))
    assert expected_first != pytest.approx(float(w @ rep[idx]))


def test_float_path_matches_uint8_path_within_rounding():
    # A smooth image (no overshoot past 0..255, so no clipping): the uint8 path differs from the
    # float path only by the first pass's rounding (<= 0.5, carried through the second pass's
    # weights, sum |w| per row) plus the final rounding (<= 0.5).
    yy, xx = np.mgrid[0:30, 0:41]
    img = (100 + 60 * np.sin(yy / 5.0) * np.cos(xx / 7.0)).round().astype(np.uint8)
    for scale in (0.5, 1 / 3, 0.25, 2.0, 3.0, 4.0):
        as_float = imresize(img.astype(np.float64), scale)
        as_uint8 = imresize(img, scale)
        assert as_float.dtype == np.float64 and as_uint8.dtype == np.uint8
        assert as_float.shape == as_uint8.shape
        second = resize_matrix(41, as_float.shape[1], scale)
        bound = 0.5 * np.abs(second).sum(axis=1).max() + 0.5
        diff = np.abs(as_float - as_uint8)
        assert diff.max() <= bound + 1e-9
        assert diff.max() > 0  # the paths really differ: the uint8 one rounds in between


def test_uint8_path_is_float_passes_rounded_half_away_from_zero():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (20, 27, 3), dtype=np.uint8)  # noise: overshoots, so clipping matters
    for scale in (0.5, 3.0):
        m1 = resize_matrix(20, int(np.ceil(20 * scale)), scale)
        m2 = resize_matrix(27, int(np.ceil(27 * scale)), scale)
        first = np.tensordot(m1, img.astype(np.float64), axes=(1, 0))
        first = np.clip(np.floor(first + 0.5), 0, 255)
        second = np.moveaxis(np.tensordot(m2, np.moveaxis(first, 1, 0), axes=(1, 0)), 0, 1)
        expected = np.clip(np.floor(second + 0.5), 0, 255).astype(np.uint8)
        assert np.array_equal(imresize(img, scale), expected)


def test_float_path_is_linear():
    rng = np.random.default_rng(2)
    a, b = rng.random((16, 12)), rng.random((16, 12))
    np.testing.assert_allclose(imresize(a + 2 * b, 0.5), imresize(a, 0.5) + 2 * imresize(b, 0.5), atol=1e-12)


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        imresize(np.zeros((2, 2, 2, 2), np.uint8), 0.5)
    with pytest.raises(ValueError):
        imresize(np.zeros((4, 4), np.int32), 0.5)
    with pytest.raises(ValueError):
        imresize(np.zeros((4, 4), np.uint8), 0)
