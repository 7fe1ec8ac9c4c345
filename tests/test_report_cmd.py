"""``scales report`` through Typer's CliRunner on tiny datasets made in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from scales_cli.cli import app
from scales_cli.errors import DataError, OutputExistsError
from scales_cli.metrics.color import modcrop
from scales_cli.metrics.resize import imresize


def _tiny_dataset(root: Path, scale: int, name: str = "Tiny") -> Path:
    rng = np.random.default_rng(0)
    base = root / name
    for i, shape in enumerate([(40, 44, 3), (36, 36)]):  # one RGB, one gray image
        hr = rng.integers(0, 256, shape, dtype=np.uint8)
        (base / "HR").mkdir(parents=True, exist_ok=True)
        Image.fromarray(hr).save(base / "HR" / f"im{i}.png")
        lr_dir = base / "LR_bicubic" / f"X{scale}"
        lr_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(imresize(modcrop(hr, scale), 1 / scale)).save(lr_dir / f"im{i}x{scale}.png")
    return base


def _tiny_model(path: Path, scale: int, seed: int = 0) -> Path:
    from scales_cli.archs.srresnet import SPEC

    torch.manual_seed(seed)
    torch.save(SPEC.build(scale=scale, num_feat=8, num_block=1).state_dict(), path)
    return path


def _invoke(*args: str):  # noqa: ANN202
    return CliRunner().invoke(app, ["report", *map(str, args)])


def test_report_writes_json_markdown_pictures(tmp_path: Path):
    data = _tiny_dataset(tmp_path, 2)
    a = _tiny_model(tmp_path / "a.pth", 2, seed=0)
    b = _tiny_model(tmp_path / "b.pth", 2, seed=1)
    outs = ["--json", tmp_path / "r.json", "--markdown", tmp_path / "r.md", "--pictures", tmp_path / "pics"]
    result = _invoke(a, b, "--data", data, "--bicubic", "--ops", "--input-size", "16x8", *outs)
    assert result.exit_code == 0, result.output
    assert "Bicubic" in result.output and "gray-as-y" in result.output and "per-layer" in result.output
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["schema"] == "scales-report/1" and doc["protocol"]["input_size"] == [16, 8]
    (group,) = doc["groups"]
    assert group["scale"] == 2 and [r["label"] for r in group["rows"]] == ["Bicubic", "a", "b"]
    model_row = group["rows"][1]
    assert model_row["cost"]["layers"] and model_row["cost"]["params_binary"] == 0
    assert [i["name"] for i in model_row["results"]["Tiny"]["images"]] == ["im0", "im1"]
    assert "| Bicubic | - | - |" in (tmp_path / "r.md").read_text()
    pics = sorted(p.name for p in (tmp_path / "pics").iterdir())
    assert pics and all(p.startswith("x2_Tiny_") for p in pics)
    with Image.open(tmp_path / "pics" / pics[0]) as im:
        assert im.width > 3 * im.height / 2  # HR | bicubic | a | b side by side

    again = _invoke(a, "--data", data, "--json", tmp_path / "r.json")
    assert isinstance(again.exception, OutputExistsError) and "r.json" in str(again.exception)
    assert _invoke(a, "--data", data, "--json", tmp_path / "r.json", "--force").exit_code == 0


def test_mixed_scales_are_refused_unless_grouped(tmp_path: Path):
    data = _tiny_dataset(tmp_path, 2)
    _tiny_dataset(tmp_path, 4)  # adds LR_bicubic/X4 to the same folder
    two, four = _tiny_model(tmp_path / "two.pth", 2), _tiny_model(tmp_path / "four.pth", 4)
    refused = _invoke(two, four, "--data", data)
    assert isinstance(refused.exception, DataError) and "different scales" in str(refused.exception)
    wrong = _invoke(two, "--data", data, "--scale", "4")
    assert isinstance(wrong.exception, DataError) and "two is x2" in str(wrong.exception)
    grouped = _invoke(two, four, "--data", data, "--group-by-scale", "--json", tmp_path / "g.json")
    assert grouped.exit_code == 0, grouped.output
    doc = json.loads((tmp_path / "g.json").read_text())
    assert [g["scale"] for g in doc["groups"]] == [2, 4]


def test_bicubic_alone_and_bad_options(tmp_path: Path):
    data = _tiny_dataset(tmp_path, 3)
    ok = _invoke("--data", data, "--bicubic", "--scale", "3", "--gray-convention", "gray-raw")
    assert ok.exit_code == 0 and "gray-raw" in ok.output
    assert isinstance(_invoke("--data", data, "--bicubic").exception, DataError)
    assert isinstance(_invoke("--data", data, "--bicubic", "--scale", "3", "--input-size", "12").exception, DataError)
    assert isinstance(_invoke("--bicubic", "--scale", "3").exception, DataError)
    assert _invoke("--data", data, "--gray-convention", "nope").exit_code == 2


def test_report_real_checkpoint_on_tiny_data(tmp_path: Path, checkpoints: Path):
    data = _tiny_dataset(tmp_path, 4)
    result = _invoke(checkpoints / "IMDN_x4.pth", "--data", data, "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "r.json").read_text())["groups"][0]["rows"][0]
    assert (row["arch"], row["cost"]["params"]) == ("imdn", 715_176)
    assert row["cost"]["macs_fp"] == pytest.approx(40.9e9, rel=0.01)
    assert "715.2K" in result.output and "40.89G" in result.output
