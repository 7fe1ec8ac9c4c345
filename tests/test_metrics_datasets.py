"""Datasets from the benchmark layout, HR-only folders and explicit pairs; one-line DataErrors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scales_cli.errors import DataError
from scales_cli.metrics.color import load_image, modcrop
from scales_cli.metrics.datasets import dataset_from_folder, dataset_from_pairs
from scales_cli.metrics.resize import imresize


def _save(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _benchmark(root: Path, scale: int = 2) -> Path:
    for i, (h, w) in enumerate([(33, 40), (24, 27)]):
        hr = _rgb(h, w, i)
        _save(root / "HR" / f"img{i}.png", hr)
        _save(root / "LR_bicubic" / f"X{scale}" / f"img{i}x{scale}.png", imresize(modcrop(hr, scale), 1 / scale))
    return root


def test_benchmark_layout(tmp_path: Path):
    ds = dataset_from_folder(_benchmark(tmp_path / "Tiny"), 2)
    assert (ds.name, ds.scale, ds.origin, len(ds)) == ("Tiny", 2, "benchmark", 2)
    loaded = list(ds)
    assert [p.name for p in loaded] == ["img0", "img1"]
    assert loaded[0].hr.shape == (32, 40, 3) and loaded[0].lr.shape == (16, 20, 3)


def test_hr_only_folder_makes_lr_on_the_fly(tmp_path: Path):
    hr = _rgb(30, 22)
    _save(tmp_path / "flat" / "a.png", hr)
    ds = dataset_from_folder(tmp_path / "flat", 4)
    assert ds.origin == "hr-only"
    pair = next(iter(ds))
    assert pair.hr.shape == (28, 20, 3)
    assert np.array_equal(pair.lr, imresize(modcrop(hr, 4), 0.25))


def test_hr_folder_without_this_scale_falls_back_to_hr_only(tmp_path: Path):
    root = _benchmark(tmp_path / "B", scale=2)
    ds = dataset_from_folder(root, 3)
    assert ds.origin == "hr-only" and len(ds) == 2


def test_shared_benchmark_gray_bridge_stays_gray(benchmarks: Path):
    ds = dataset_from_folder(benchmarks / "Set14", 4)
    assert len(ds) == 14
    bridge = ds.load(next(p for p in ds.pairs if p.name == "bridge"))
    assert bridge.hr.ndim == 2 and bridge.lr.ndim == 2


def test_missing_pair(tmp_path: Path):
    root = _benchmark(tmp_path / "M")
    (root / "LR_bicubic" / "X2" / "img1x2.png").unlink()
    with pytest.raises(DataError, match=r"1 of 2 LR images missing \(e.g. img1x2.png\)"):
        dataset_from_folder(root, 2)


def test_mismatched_size(tmp_path: Path):
    root = _benchmark(tmp_path / "S")
    _save(root / "LR_bicubic" / "X2" / "img0x2.png", _rgb(10, 10))
    with pytest.raises(DataError, match=r"img0x2.png: LR is 10x10 but modcrop\(img0.png, 2\) / 2 is 20x16"):
        dataset_from_folder(root, 2)


def test_unreadable_image(tmp_path: Path):
    root = _benchmark(tmp_path / "U")
    (root / "HR" / "img0.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="img0.png: not a readable image"):
        dataset_from_folder(root, 2)


def test_empty_and_missing_folders(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        dataset_from_folder(tmp_path / "empty", 2)
    with pytest.raises(DataError, match="no such dataset folder"):
        dataset_from_folder(tmp_path / "nope", 2)


def test_gray_lr_for_rgb_hr_is_refused_at_load(tmp_path: Path):
    root = _benchmark(tmp_path / "G")
    _save(root / "LR_bicubic" / "X2" / "img0x2.png", np.zeros((16, 20), np.uint8))
    ds = dataset_from_folder(root, 2)
    with pytest.raises(DataError, match="LR is gray but its HR img0.png is RGB"):
        list(ds)


def test_explicit_pairs(tmp_path: Path):
    root = _benchmark(tmp_path / "P")
    hr = sorted((root / "HR").glob("*.png"))
    lr = sorted((root / "LR_bicubic" / "X2").glob("*.png"))
    ds = dataset_from_pairs(hr, lr, 2, name="mine")
    assert (ds.name, ds.origin, len(ds)) == ("mine", "pairs", 2)
    assert np.array_equal(next(iter(ds)).lr, load_image(lr[0]))
    assert dataset_from_pairs(hr, None, 2).origin == "hr-only"
    with pytest.raises(DataError, match="2 HR but 1 LR"):
        dataset_from_pairs(hr, lr[:1], 2)
    with pytest.raises(DataError, match="LR is"):
        dataset_from_pairs(hr, lr[::-1], 2)
    with pytest.raises(DataError, match="no HR images"):
        dataset_from_pairs([], None, 2)


def test_hr_and_lr_folders_paired_by_name(tmp_path: Path):
    from scales_cli.metrics.datasets import dataset_from_dirs

    root = _benchmark(tmp_path / "Named")
    lr_dir = root / "LR_bicubic" / "X2"
    (lr_dir / "img1x2.png").rename(lr_dir / "img1.png")  # plain NAME.png pairs too
    ds = dataset_from_dirs(root / "HR", lr_dir, 2)
    assert (ds.name, ds.origin, [p.name for p in ds.pairs]) == ("Named", "pairs", ["img0", "img1"])
    assert [p.lr.name for p in ds.pairs] == ["img0x2.png", "img1.png"]
    assert np.array_equal(next(iter(ds)).lr, load_image(lr_dir / "img0x2.png"))


def test_hr_and_lr_folders_unpaired_files_are_named(tmp_path: Path):
    from scales_cli.metrics.datasets import dataset_from_dirs

    root = _benchmark(tmp_path / "U")
    lr_dir = root / "LR_bicubic" / "X2"
    _save(lr_dir / "strayx2.png", _rgb(8, 8))
    with pytest.raises(DataError, match=r"--hr .*: no HR for 1 LR images \(e.g. strayx2.png\)"):
        dataset_from_dirs(root / "HR", lr_dir, 2)
    (lr_dir / "strayx2.png").unlink()
    (lr_dir / "img0x2.png").unlink()
    with pytest.raises(DataError, match=r"no LR for 1 of 2 HR images \(e.g. img0.png; expected NAMEx2.png"):
        dataset_from_dirs(root / "HR", lr_dir, 2)
    with pytest.raises(DataError, match="no LR for 2 of 2"):  # x2 files are not the LR of x3
        dataset_from_dirs(root / "HR", lr_dir, 3)
    with pytest.raises(DataError, match="--lr .*nope: no such folder"):
        dataset_from_dirs(root / "HR", tmp_path / "nope", 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="--lr .*empty: no images found"):
        dataset_from_dirs(root / "HR", tmp_path / "empty", 2)


def test_hr_too_small_to_score_is_refused_up_front(tmp_path: Path):
    from scales_cli.metrics.datasets import min_hr_side

    # modcrop, then a border of s pixels each side, must leave the 11x11 SSIM window
    assert [min_hr_side(s) for s in (2, 3, 4)] == [16, 18, 20]
    _save(tmp_path / "small" / "a.png", _rgb(20, 19))
    with pytest.raises(DataError, match=r"a.png: 19x20 is too small to score at x4 \(expected at least 20x20"):
        dataset_from_folder(tmp_path / "small", 4)
    assert len(dataset_from_folder(tmp_path / "small", 2)) == 1


def test_data_sources_and_hr_folder_names(tmp_path: Path):
    from scales_cli.metrics.datasets import DataSource, data_sources

    root = _benchmark(tmp_path / "Set9")
    assert dataset_from_folder(root / "HR", 2).name == "Set9"  # an HR folder is named after its parent
    sources = data_sources([root], [root / "HR"], [root / "LR_bicubic" / "X2"])
    assert sources == [DataSource(root), DataSource(root / "HR", root / "LR_bicubic" / "X2")]
    assert [s.open(2).origin for s in sources] == ["benchmark", "pairs"]
    assert data_sources([], [root / "HR"], [])[0].open(2).origin == "hr-only"
    with pytest.raises(DataError, match="2 --hr but 1 --lr"):
        data_sources([], [root / "HR", root / "HR"], [root])


@pytest.mark.parametrize("scale", [0, -2, 17, 1000])
def test_scale_out_of_range_is_a_data_error_in_every_builder(tmp_path: Path, scale: int):
    """A zero scale once reached min_hr_side's integer division (ZeroDivisionError, not exit 2)."""
    from scales_cli.metrics.datasets import dataset_from_dirs

    root = _benchmark(tmp_path / "S")
    hr = sorted((root / "HR").glob("*.png"))
    for build in (
        lambda: dataset_from_folder(root, scale),
        lambda: dataset_from_dirs(root / "HR", root / "LR_bicubic" / "X2", scale),
        lambda: dataset_from_pairs(hr, None, scale),
    ):
        with pytest.raises(DataError, match=f"scale {scale}: expected an integer from 1 to 16"):
            build()
