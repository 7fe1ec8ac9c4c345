"""Student files: safetensors round trip is bit-exact, metadata is complete, overwrite needs force,
and ``scales_cli.archs.load`` / ``scales inspect`` open students."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import scales_cli
from scales_cli.loading import load
from scales_cli.archs._registry import spec_by_name
from scales_cli.binary import calibrate
from scales_cli.errors import OutputExistsError
from scales_cli.recipe import load_recipe, rewrite, save_student

IMDN_SMALL = {"scale": 3, "in_nc": 3, "nf": 32, "num_modules": 4, "out_nc": 3}


@pytest.fixture
def teacher(tmp_path: Path):
    torch.manual_seed(0)
    model = spec_by_name("imdn").build(**IMDN_SMALL)
    path = tmp_path / "teacher.pth"
    torch.save(model.state_dict(), path)
    return load(path)


def _student(teacher, recipe_name: str = "cnn"):  # noqa: ANN001, ANN202
    recipe = load_recipe(recipe_name)
    student, report = rewrite(teacher, recipe)
    torch.manual_seed(1)
    calibrate(student, [torch.rand(2, 3, 24, 24)])  # non-default alpha/beta must survive the trip
    return student.eval(), recipe, report


def test_round_trip_is_bit_exact(teacher, tmp_path: Path):
    student, recipe, report = _student(teacher, "cnn-full")
    path = save_student(tmp_path / "s.safetensors", student, teacher, recipe, calibration={"images": 2})
    loaded = load(path)
    x = torch.rand(1, 3, 13, 11)
    with torch.no_grad():
        expected, got = student(x), loaded.model(x)
    assert torch.equal(expected, got)
    assert loaded.arch == "imdn" and loaded.scale == 3 and loaded.hparams == teacher.hparams
    info = loaded.extra["student"]
    assert info["recipe"] == "cnn-full" and info["teacher_sha256"] == teacher.sha256
    assert info["binarized_layers"] == len(report.binarized) and info["calibration"] == {"images": 2}


def test_metadata(teacher, tmp_path: Path):
    student, recipe, report = _student(teacher)
    path = save_student(tmp_path / "s.safetensors", student, teacher, recipe)
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["scales.format"] == "student" and meta["scales.arch"] == "imdn"
    assert json.loads(meta["scales.hparams"]) == dict(teacher.hparams)
    assert meta["scales.recipe_text"] == recipe.text and "body-convs" in meta["scales.recipe"]
    assert meta["scales.teacher_sha256"] == teacher.sha256 and meta["scales.version"] == scales_cli.__version__
    assert int(meta["scales.binarized"]) == len(report.binarized)


def test_overwrite_needs_force(teacher, tmp_path: Path):
    student, recipe, _ = _student(teacher)
    path = save_student(tmp_path / "s.safetensors", student, teacher, recipe)
    stamp = path.stat().st_mtime_ns
    with pytest.raises(OutputExistsError, match="--force"):
        save_student(path, student, teacher, recipe)
    assert path.stat().st_mtime_ns == stamp
    save_student(path, student, teacher, recipe, force=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".s.safetensors")]  # no temp left over


def test_inspect_student(teacher, tmp_path: Path):
    from conftest import run_cli

    student, recipe, _ = _student(teacher)
    path = save_student(tmp_path / "s.safetensors", student, teacher, recipe)
    result = run_cli("inspect", path, "--json")
    assert result.code == 0, result.err
    payload = json.loads(result.out)
    assert payload["arch"] == "imdn" and payload["student"]["recipe"] == "cnn"


def test_transformer_round_trip_is_bit_exact(tmp_path: Path):
    spec = spec_by_name("swinir")
    config = {"scale": 2, "embed_dim": 16, "depths": (2,), "num_heads": (2,), "window_size": 4, "mlp_ratio": 2.0,
              "upsampler": "pixelshuffledirect"}
    torch.manual_seed(0)
    torch.save(spec.build(**{**spec.defaults, **config}).state_dict(), tmp_path / "swin.pth")
    teacher = load(tmp_path / "swin.pth")
    student, recipe, report = _student(teacher, "transformer")
    assert {d.type for d in report.binarized} == {"linear", "conv2d"}
    loaded = load(save_student(tmp_path / "s.safetensors", student, teacher, recipe))
    x = torch.rand(1, 3, 9, 7)  # not a multiple of the window: the model pads
    with torch.no_grad():
        assert torch.equal(student(x), loaded.model(x))
