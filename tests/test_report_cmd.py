"""``scales report`` through ``conftest.run_cli`` (the real entry point) on tiny datasets made in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import CliResult, run_cli
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


def _invoke(*args: object) -> CliResult:
    return run_cli("report", *args)


def test_report_writes_json_markdown_pictures(tmp_path: Path):
    data = _tiny_dataset(tmp_path, 2)
    a = _tiny_model(tmp_path / "a.pth", 2, seed=0)
    b = _tiny_model(tmp_path / "b.pth", 2, seed=1)
    outs = ["--json", tmp_path / "r.json", "--markdown", tmp_path / "r.md", "--pictures", tmp_path / "pics"]
    result = _invoke(a, b, "--data", data, "--bicubic", "--ops", "--input-size", "16x8", *outs)
    assert result.code == 0, result.err
    assert "Bicubic" in result.out and "gray-as-y" in result.out and "per-layer" in result.out
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
    again.refused("r.json")
    assert _invoke(a, "--data", data, "--json", tmp_path / "r.json", "--force").code == 0


def test_mixed_scales_are_refused_unless_grouped(tmp_path: Path):
    data = _tiny_dataset(tmp_path, 2)
    _tiny_dataset(tmp_path, 4)  # adds LR_bicubic/X4 to the same folder
    two, four = _tiny_model(tmp_path / "two.pth", 2), _tiny_model(tmp_path / "four.pth", 4)
    _invoke(two, four, "--data", data).refused("different scales")
    wrong = _invoke(two, "--data", data, "--scale", "4")
    wrong.refused("two is x2")
    grouped = _invoke(two, four, "--data", data, "--group-by-scale", "--json", tmp_path / "g.json")
    assert grouped.code == 0, grouped.err
    doc = json.loads((tmp_path / "g.json").read_text())
    assert [g["scale"] for g in doc["groups"]] == [2, 4]


def test_bicubic_alone_and_bad_options(tmp_path: Path):
    data = _tiny_dataset(tmp_path, 3)
    ok = _invoke("--data", data, "--bicubic", "--scale", "3", "--gray-convention", "gray-raw")
    assert ok.code == 0 and "gray-raw" in ok.out
    _invoke("--data", data, "--bicubic").refused()
    _invoke("--data", data, "--bicubic", "--scale", "3", "--input-size", "12").refused()
    _invoke("--bicubic", "--scale", "3").refused()
    _invoke("--data", data, "--gray-convention", "nope").refused("--gray-convention")


def test_report_real_checkpoint_on_tiny_data(tmp_path: Path, checkpoints: Path):
    data = _tiny_dataset(tmp_path, 4)
    result = _invoke(checkpoints / "IMDN_x4.pth", "--data", data, "--json", tmp_path / "r.json")
    assert result.code == 0, result.err
    row = json.loads((tmp_path / "r.json").read_text())["groups"][0]["rows"][0]
    assert (row["arch"], row["cost"]["params"]) == ("imdn", 715_176)
    assert row["cost"]["macs_fp"] == pytest.approx(40.9e9, rel=0.01)
    assert "715.2K" in result.out and "40.89G" in result.out


def test_hr_lr_folders_and_flops(tmp_path: Path):
    data = _tiny_dataset(tmp_path, 2)
    model = _tiny_model(tmp_path / "m.pth", 2)
    args = [model, "--hr", data / "HR", "--lr", data / "LR_bicubic" / "X2", "--input-size", "16x8"]
    result = _invoke(*args, "--flops", "--json", tmp_path / "r.json", "--markdown", tmp_path / "r.md")
    assert result.code == 0, result.err
    assert "FLOPs" in result.out and "FLOPs = 2 x OPs" in result.out
    doc = json.loads((tmp_path / "r.json").read_text())
    (dataset,) = doc["groups"][0]["datasets"]
    assert (dataset["name"], dataset["origin"]) == ("Tiny", "pairs")
    cost = doc["groups"][0]["rows"][0]["cost"]
    assert cost["flops"] == 2 * cost["ops"] > 0
    md = (tmp_path / "r.md").read_text()
    assert "| Method | Params | FLOPs |" in md and "FLOPs = 2 x OPs" in md
    # the same scores as the benchmark layout of the same files
    same = _invoke(model, "--data", data, "--input-size", "16x8", "--json", tmp_path / "d.json")
    assert same.code == 0, same.err
    by_folder = json.loads((tmp_path / "d.json").read_text())["groups"][0]["rows"][0]["results"]
    assert by_folder == doc["groups"][0]["rows"][0]["results"]
    # --hr alone: LR made on the fly (bit-identical to the files, so the same scores again)
    alone = _invoke(model, "--hr", data / "HR", "--input-size", "16x8", "--json", tmp_path / "h.json")
    assert alone.code == 0, alone.err
    assert json.loads((tmp_path / "h.json").read_text())["groups"][0]["rows"][0]["results"] == by_folder


def test_bad_device_and_lonely_lr_are_one_line_errors(tmp_path: Path):
    data = _tiny_dataset(tmp_path, 2)
    model = _tiny_model(tmp_path / "m.pth", 2)
    bogus = _invoke(model, "--data", data, "--device", "tpu")
    bogus.refused("expected cpu or cuda")
    if not torch.cuda.is_available():
        cuda = _invoke(model, "--data", data, "--device", "cuda")
        cuda.refused("CUDA is not available")
    pictures = _invoke("--data", data, "--bicubic", "--scale", "2", "--pictures", tmp_path / "p")
    pictures.refused("at least one MODEL")
    lonely = _invoke(model, "--lr", data / "LR_bicubic" / "X2")
    lonely.refused("--lr needs the --hr")


def test_arch_options_reach_the_loader(tmp_path: Path):
    data = _tiny_dataset(tmp_path, 2)
    model = _tiny_model(tmp_path / "m.pth", 2)
    named = _invoke(model, "--data", data, "--arch", "msrresnet", "--json", tmp_path / "r.json")
    assert named.code == 0, named.err
    assert json.loads((tmp_path / "r.json").read_text())["groups"][0]["rows"][0]["arch"] == "msrresnet"
    unknown = _invoke(model, "--data", data, "--arch", "nope")
    unknown.refused("unknown architecture")
    bad_opt = _invoke(model, "--data", data, "--arch-opt", "noequals")
    bad_opt.refused("expected key=value")


def test_report_on_a_binarized_student_counts_binary_layers(tmp_path: Path):
    from scales_cli.archs._registry import spec_by_name

    data = _tiny_dataset(tmp_path, 2)
    torch.manual_seed(0)
    teacher = tmp_path / "teacher.pth"
    torch.save(spec_by_name("imdn").build(scale=2, in_nc=3, nf=32, num_modules=2, out_nc=3).state_dict(), teacher)
    student = tmp_path / "student.safetensors"
    made = run_cli("binarize", teacher, "-o", student)
    assert made.code == 0, made.err
    result = _invoke(teacher, student, "--data", data, "--input-size", "16x8", "--ops", "--json", tmp_path / "r.json")
    assert result.code == 0, result.err
    fp_row, bin_row = json.loads((tmp_path / "r.json").read_text())["groups"][0]["rows"]
    assert fp_row["cost"]["params_binary"] == 0 and fp_row["cost"]["macs_binary"] == 0
    cost = bin_row["cost"]
    assert cost["params_binary"] > 0 and cost["macs_binary"] > 0
    assert cost["params"] == cost["params_fp"] + cost["params_binary"] / 32
    assert cost["ops"] == cost["macs_fp"] + cost["macs_binary"] / 64 < fp_row["cost"]["ops"]
    assert any(layer["bits"] == [1, 1] for layer in cost["layers"])
    assert set(bin_row["results"]["Tiny"]) == {"psnr", "ssim", "images"}
