"""The one input front door (:mod:`scales_cli.inputs`): one image suffix list for every command, one
device grammar, one :class:`Upscaler` that pads to ``min_size`` and leaves the caller's model as it
was; and ``--data`` folders where only some images are smaller than one patch (issue 19, points 4, 7b).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from scales_cli.errors import DataError, ScalesError
from scales_cli.inputs import IMAGE_SUFFIXES, Upscaler, find_images, parse_device, resolve_device


def _write(folder: Path, names_sizes: dict[str, tuple[int, int]], seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, (w, h) in names_sizes.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / name)


class _NeedsSixteen(nn.Module):
    """Nearest x2 that refuses inputs below 16 px (as ESA's strided pooling does) and remembers its mode."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        nn.init.dirac_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.seen_training: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen_training.append(self.training)
        if min(x.shape[-2:]) < 16:
            raise RuntimeError("input smaller than the pooling window")
        return torch.nn.functional.interpolate(self.conv(x), scale_factor=2, mode="nearest")


# -- images -----------------------------------------------------------------------------------------


def test_every_command_reads_the_same_formats(tmp_path: Path):
    """A BMP/TIFF folder: ``--calibrate`` once found "no images" in it while ``report --data`` read it."""
    from scales_cli.export.parity import check_images
    from scales_cli.metrics.datasets import dataset_from_folder
    from scales_cli.recipe.calibrate import calibration_batches, calibration_images
    from scales_cli.train.data import find_images as train_images

    folder = tmp_path / "mixed"
    _write(folder, {"a.bmp": (40, 40), "b.tif": (40, 40), "c.webp": (40, 40)})
    expected = sorted(folder.iterdir())
    assert calibration_images(folder, 16) == expected
    assert train_images(folder) == expected
    assert check_images(folder) == expected
    assert [p.hr for p in dataset_from_folder(folder, 2).pairs] == expected
    assert sum(b.shape[0] for b in calibration_batches(folder, crop=16)) == 3
    assert {p.suffix for p in expected} <= set(IMAGE_SUFFIXES)


def test_recursive_listing_is_a_parameter(tmp_path: Path):
    _write(tmp_path / "top", {"a.png": (8, 8)})
    _write(tmp_path / "top" / "sub", {"b.jpg": (8, 8)})
    (tmp_path / "top" / "notes.txt").write_text("not an image")
    assert [p.name for p in find_images(tmp_path / "top", "--x")] == ["a.png"]
    assert [p.name for p in find_images(tmp_path / "top", "--x", recursive=True)] == ["a.png", "b.jpg"]
    with pytest.raises(DataError, match=r"^--calibrate .*empty: holds no images \(expected \.png"):
        (tmp_path / "empty").mkdir()
        find_images(tmp_path / "empty", "--calibrate")


# -- devices ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["auto", "cpu"])
def test_auto_and_cpu_are_one_grammar(monkeypatch: pytest.MonkeyPatch, name: str):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert parse_device(name) == name
    assert resolve_device(name) == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "cpu:0", "auto:1", "cuda:x", "cuda:"])
def test_device_grammar_refusals_name_the_option(name: str):
    with pytest.raises(ScalesError, match=rf"^--device {name}: expected cpu or cuda\[:N\], or auto"):
        parse_device(name)


def test_cuda_resolves_to_the_local_rank(monkeypatch: pytest.MonkeyPatch):
    """Under torchrun a bare cuda (or auto) is the process's own device; cuda:N is device N."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda", local_rank=3) == torch.device("cuda", 1)
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda:0", local_rank=1) == torch.device("cuda", 0)


def test_report_and_finetune_share_the_grammar(monkeypatch: pytest.MonkeyPatch):
    """The commands check --device through inputs.parse_device itself (no wrapper of their own)."""
    from scales_cli.inputs import parse_device as cli_parse

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli_parse("auto") == "auto"
    with pytest.raises(ScalesError, match="CUDA is not available"):
        cli_parse("cuda:0")


# -- the Upscaler -----------------------------------------------------------------------------------


def test_upscaler_pads_small_inputs_and_crops_back():
    model = _NeedsSixteen()
    lr = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    sr = Upscaler(model, 2, 1.0, min_size=16).upscale_uint8(lr)
    assert sr.shape == (10, 14, 3)
    assert np.array_equal(sr, lr.repeat(2, 0).repeat(2, 1))
    with pytest.raises(RuntimeError, match="pooling window"):  # without the padding the network fails
        Upscaler(model, 2, 1.0).upscale_uint8(lr)


def test_evaluate_model_pads_like_upscale(tmp_path: Path):
    """``report`` (evaluate) once skipped the ``min_size`` padding that ``upscale`` did."""
    from dataclasses import replace

    from scales_cli.archs._registry import spec_by_name
    from scales_cli.loading import load
    from scales_cli.metrics.datasets import dataset_from_folder
    from scales_cli.metrics.evaluate import evaluate_model

    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pth"
    torch.save(spec_by_name("imdn").build(scale=2, in_nc=3, nf=16, num_modules=1, out_nc=3).state_dict(), ckpt)
    _write(tmp_path / "set", {"a.png": (30, 30)})
    desc = replace(load(ckpt), model=_NeedsSixteen(), min_size=16)  # LR of the 30 px HR is 15 px: below 16
    result = evaluate_model(desc, dataset_from_folder(tmp_path / "set", 2))
    assert len(result.images) == 1 and np.isfinite(result.mean_psnr)


def test_upscaler_leaves_the_callers_flags_and_device():
    """Validation once put the training model in eval mode (the loop called ``model.train()`` back)."""
    from scales_cli.metrics.evaluate import model_upscaler

    model = _NeedsSixteen()
    model.train()
    model.conv.eval()  # a mixed state must come back as it was, module by module
    lr = np.zeros((16, 16, 3), dtype=np.uint8)
    model_upscaler(model, 1.0)(lr)
    assert model.seen_training == [False]
    assert model.training and not model.conv.training
    moves: list[torch.device] = []
    model.to = lambda device: moves.append(torch.device(device)) or model  # no second device on a CPU machine
    with Upscaler(model, 2, 255.0, device="cuda:0").placed():  # a device the model is not on: moved for the call only
        assert moves == [torch.device("cuda", 0)] and not model.training
    assert moves == [torch.device("cuda", 0), torch.device("cpu")] and model.training


def test_upscaler_tiles_whole_images_through_the_same_padding(tmp_path: Path):
    from scales_cli.imaging import read_image
    from scales_cli.tiling import TilePlan

    _write(tmp_path, {"tiny.png": (9, 6)})
    image = read_image(tmp_path / "tiny.png")
    out = Upscaler(_NeedsSixteen(), 2, 1.0, min_size=16).upscale_image(image, TilePlan(4, 0))
    assert out.size == (18, 12)
    assert np.array_equal(np.asarray(out), np.asarray(Image.open(tmp_path / "tiny.png")).repeat(2, 0).repeat(2, 1))


# -- training folders with a few small images (7b) --------------------------------------------------


def test_small_training_images_are_skipped_with_one_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from scales_cli.train.data import load_train_images

    _write(tmp_path / "t91", {"big1.png": (64, 64), "big2.png": (80, 72), "t2.png": (28, 29)})
    images = load_train_images([tmp_path / "t91"], [], 2, 16)
    assert [i.path.name for i in images] == ["big1.png", "big2.png"]
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: --data ")
    assert "skipped 1 of 3 images" in lines[0] and "t2.png 28x29" in lines[0] and "at least 32x32" in lines[0]

    heard: list[str] = []
    load_train_images([], [tmp_path / "t91"], 2, 40, warn=heard.append)  # LR-only folder: the patch itself
    assert len(heard) == 1 and "--data-lr" in heard[0] and "at least 40x40" in heard[0]


def test_a_folder_with_no_usable_image_is_refused(tmp_path: Path):
    from scales_cli.train.data import load_train_images

    _write(tmp_path / "small", {"a.png": (20, 20), "b.png": (24, 20)})
    with pytest.raises(DataError, match=r"--data .*small: every image is smaller than one training patch .*at least 64x64"):
        load_train_images([tmp_path / "small"], [], 4, 16)
