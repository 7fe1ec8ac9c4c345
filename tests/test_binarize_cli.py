"""``scales binarize``: default recipe and output name, dry run writes nothing, recipe mistakes exit 2
with one line, --calibrate records what it used, and every shared checkpoint binarizes as is."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from conftest import run_cli
from scales_cli.loading import load
from scales_cli.archs._registry import spec_by_name
from scales_cli.recipe import default_recipe_name, load_recipe, rewrite

IMDN_SMALL = {"scale": 2, "in_nc": 3, "nf": 32, "num_modules": 2, "out_nc": 3}


@pytest.fixture
def teacher(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    torch.manual_seed(0)
    path = tmp_path / "tiny.pth"
    torch.save(spec_by_name("imdn").build(**IMDN_SMALL).state_dict(), path)
    return path


def test_default_recipe_and_output_name(teacher: Path):
    code, out, err = run_cli("binarize", str(teacher))
    assert code == 0, err
    written = teacher.parent / "tiny-cnn.safetensors"
    assert written.is_file() and "layers binarized" in out
    code, _, err = run_cli("binarize", str(teacher))
    assert code == 2 and "--force" in err and err.count("\n") == 1 and "Traceback" not in err
    code, _, err = run_cli("binarize", str(teacher), "--force", "-r", "xnor", "-o", "x.safetensors", "--json")
    assert code == 0, err


def test_dry_run_writes_nothing(teacher: Path):
    before = sorted(teacher.parent.iterdir())
    code, out, err = run_cli("binarize", str(teacher), "--dry-run", "--json")
    assert code == 0, err
    payload = json.loads(out)
    layers = payload["rewrite"]["layers"]
    assert {d["decision"] for d in layers} == {"binarize", "keep"} and all(d["rule"] for d in layers)
    assert payload["student"]["ops"] < payload["teacher"]["ops"]
    code, out, _ = run_cli("binarize", str(teacher), "--dry-run")
    assert code == 0 and "body-convs" in out and "dry run" in out
    assert sorted(teacher.parent.iterdir()) == before


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("rules:\n  - name: convs\n    select: {regoin: body}\n", "did you mean 'region'"),
        ("rules:\n  - name: ghosts\n    select: {path: 'IMDB9.*'}\n", "rule 'ghosts'"),
        ("defaults: {preset: scale}\nrules: [{select: {}}]\n", "did you mean 'scales'"),
    ],
)
def test_recipe_mistakes_exit_2_with_one_line(teacher: Path, yaml_text: str, expected: str):
    recipe = teacher.parent / "bad.yaml"
    recipe.write_text(yaml_text)
    code, out, err = run_cli("binarize", str(teacher), "--recipe", str(recipe))
    assert code == 2 and expected in err and "bad.yaml" in err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not list(teacher.parent.glob("*.safetensors"))


def test_unknown_recipe_name_exits_2(teacher: Path):
    code, _, err = run_cli("binarize", str(teacher), "--recipe", "trasnformer")
    assert code == 2 and "did you mean 'transformer'" in err and "Traceback" not in err


def test_calibrate_records_its_inputs(teacher: Path):
    images = teacher.parent / "imgs"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)).save(images / f"{i}.png")
    code, _, err = run_cli(
        "binarize", str(teacher), "--calibrate", str(images), "--calib-images", "2", "-o", "c.safetensors"
    )
    assert code == 0, err
    with safe_open(str(teacher.parent / "c.safetensors"), framework="pt") as fh:
        calib = json.loads(fh.metadata()["scales.calibration"])
    assert calib["images"] == 2 and calib["layers"] > 0
    code, _, err = run_cli("binarize", str(teacher), "--calibrate", str(teacher.parent / "none"))
    assert code == 2 and "--calibrate" in err and "Traceback" not in err


@pytest.mark.slow
def test_every_shared_checkpoint_binarizes_with_zero_configuration(checkpoints: Path):
    for path in sorted(checkpoints.glob("*.pth")):
        desc = load(path)
        recipe = load_recipe(default_recipe_name(desc))
        student, report = rewrite(desc, recipe)
        assert report.binarized, path.name
        with torch.no_grad():
            y = student.eval()(torch.rand(1, 3, 13, 11) * desc.input_range)
        assert y.shape == (1, 3, 13 * desc.scale, 11 * desc.scale) and torch.isfinite(y).all(), path.name


def test_a_student_is_not_binarized_again(teacher: Path):
    assert run_cli("binarize", str(teacher), "-o", "s.safetensors").code == 0
    code, _, err = run_cli("binarize", "s.safetensors")
    assert code == 2 and "already a binarized student" in err and "Traceback" not in err


def test_dry_run_table_keeps_every_figure_on_a_narrow_terminal():
    """Long transformer-style paths wrap; params, OPs and option names are never cut (100 columns)."""
    from rich.console import Console
    from torch import nn

    from scales_cli.cli.binarize_cmd import _layer_table
    from scales_cli.metrics.cost import count_cost
    from scales_cli.recipe import apply_plan, parse_recipe, plan

    deep = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 3, 3, padding=1))
    for _ in range(4):  # nest so that the paths read like "0.0.0.0.1"-style transformer block paths
        deep = nn.Sequential(deep)
    long_names = nn.ModuleDict({"residual_group_blocks_with_a_very_long_name": deep})

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.trunk = long_names

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.trunk["residual_group_blocks_with_a_very_long_name"](x)

    net = Net()
    recipe = parse_recipe("rules:\n  - {name: attention-mlp-convs, select: {last: false}, options: {channel: false}}\n")
    report = plan(net, recipe)
    cost = count_cost(apply_plan(net, report), input_size=(16, 16))
    console = Console(width=100, record=True)
    console.print(_layer_table(Path("net.pth"), report, cost))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 100
    for d in report.layers:
        params = sum(c.params for c in cost.layers if c.name == d.path or c.name.startswith(d.path + "."))
        assert f"{params:,.0f}" in text
    assert text.count("lsf-spatial") == 2 and text.count("attention-mlp") == 2


def test_existing_output_and_bad_calibration_folder_fail_before_any_work(teacher: Path, monkeypatch):
    import scales_cli.recipe as recipe_pkg

    def no_rewrite(*args, **kwargs):
        raise AssertionError("the rewrite ran although the command was bound to fail")

    (teacher.parent / "taken.safetensors").write_bytes(b"user data")
    (teacher.parent / "folder").mkdir()
    monkeypatch.setattr(recipe_pkg, "apply_plan", no_rewrite)
    for args, expected in [
        (("-o", "taken.safetensors"), "already exists (pass --force"),
        (("-o", "folder", "--force"), "is a directory"),
        (("-o", "new.safetensors", "--calibrate", "nowhere"), "--calibrate nowhere"),
    ]:
        code, _, err = run_cli("binarize", str(teacher), *args)
        assert code == 2 and expected in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert (teacher.parent / "taken.safetensors").read_bytes() == b"user data"


def test_calibrating_a_recipe_without_thresholds_warns(teacher: Path):
    images = teacher.parent / "imgs"
    images.mkdir()
    Image.fromarray(np.full((40, 40, 3), 128, dtype=np.uint8)).save(images / "a.png")
    code, _, err = run_cli("binarize", str(teacher), "-r", "xnor", "--calibrate", str(images))
    assert code == 0 and "--calibrate changed nothing" in err


def test_student_file_gets_the_usual_permissions(teacher: Path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        assert run_cli("binarize", str(teacher), "-o", "perm.safetensors").code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((teacher.parent / "perm.safetensors").stat().st_mode) == 0o644


def test_library_binarize_equals_the_cli(teacher: Path, tmp_path: Path):
    """`scales_cli.binarize` writes the file the CLI writes (same tensors), refuses students and
    existing outputs before any work, and a dry run writes nothing."""
    import scales_cli
    from scales_cli.errors import CheckpointError, ScalesError

    code, _, err = run_cli("binarize", str(teacher), "-o", "cli.safetensors")
    assert code == 0, err
    made = scales_cli.binarize(teacher, "cnn", tmp_path / "lib.safetensors")
    assert made.written == tmp_path / "lib.safetensors" and made.recipe.name == "cnn"
    assert made.student_cost.ops < made.teacher_cost.ops and len(made.report.binarized) > 0
    with safe_open(str(tmp_path / "cli.safetensors"), "pt") as a, safe_open(str(made.written), "pt") as b:
        assert sorted(a.keys()) == sorted(b.keys())
        assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())
    with pytest.raises(ScalesError, match="--force"):
        scales_cli.binarize(teacher, "cnn", made.written)
    with pytest.raises(CheckpointError, match="already a binarized student"):
        scales_cli.binarize(made.written, "cnn", tmp_path / "again.safetensors")
    before = sorted(tmp_path.iterdir())
    plan = scales_cli.binarize(load(teacher), "xnor", dry_run=True)
    assert plan.written is None and plan.to_json()["recipe"] == "xnor" and sorted(tmp_path.iterdir()) == before
