"""Readable row labels (issue 19, point 7c): ``report --label`` names each model's row and picture panel
in full; the demo uses it for ``calibrated``, ``fine-tuned`` and ``zoo`` instead of ``last`` and a
stem cut to 16 characters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image

from scales_cli.report.pictures import label_lines


def _set(root: Path) -> Path:
    rng = np.random.default_rng(0)
    (root / "Tiny").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)).save(root / "Tiny" / "im0.png")
    return root / "Tiny"


def _model(path: Path, seed: int) -> Path:
    from scales_cli.archs.srresnet import SPEC

    torch.manual_seed(seed)
    torch.save(SPEC.build(scale=2, num_feat=8, num_block=1).state_dict(), path)
    return path


def test_labels_name_the_rows_and_the_pictures(tmp_path: Path):
    data = _set(tmp_path)
    a, b = _model(tmp_path / "RLFN_x4-calibrated.pth", 0), _model(tmp_path / "last.pth", 1)
    result = run_cli("report", a, b, "--label", "calibrated", "--label", "a fine-tuned student", "--data", data,
                     "--json", tmp_path / "r.json", "--pictures", tmp_path / "pics")
    assert result.code == 0, result.err
    rows = json.loads((tmp_path / "r.json").read_text())["groups"][0]["rows"]
    assert [r["label"] for r in rows] == ["calibrated", "a fine-tuned student"]
    (picture,) = (tmp_path / "pics").glob("*.png")
    assert Image.open(picture).height > 40 + 14  # the long label took a second line under its panel


@pytest.mark.parametrize(("labels", "says"), [
    (["one"], "1 labels for 2 models"),
    (["same", "same"], "expected distinct, non-empty labels"),
])
def test_bad_labels_are_one_line(tmp_path: Path, labels: list[str], says: str):
    data = _set(tmp_path)
    a, b = _model(tmp_path / "a.pth", 0), _model(tmp_path / "b.pth", 1)
    flags = [arg for label in labels for arg in ("--label", label)]
    result = run_cli("report", a, b, *flags, "--data", data, "--json", tmp_path / "r.json")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1 and says in result.err, result.err
    assert "--label" in result.err and not (tmp_path / "r.json").exists()


def test_picture_labels_are_wrapped_never_cut():
    for label in ("RLFN_x4-calibrated", "zoo/rlfn_x4-cnn-2000steps", "x" * 40, "fine-tuned"):
        lines = label_lines(label, 96)
        assert "".join(lines).replace(" ", "") == label.replace(" ", "")
        assert all(len(line) <= 16 for line in lines)
    assert label_lines("calibrated", 96) == ["calibrated"]
