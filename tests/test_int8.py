"""INT8 layers (issue 21 step 1): the quantizers' forward/backward, range calibration, the recipe
``precision``, a mixed student's file round trip, the cost counter and export's refusal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import run_cli
from scales_cli.archs._registry import spec_by_name
from scales_cli.binary.int8 import (
    ActInt8STE,
    Int8Activation,
    Int8Conv2d,
    Int8Linear,
    Int8Weight,
    calibrate_int8,
    make_int8,
    mse_range,
    percentile_range,
)
from scales_cli.binary.modes import LayerMode, layer_mode, quantizers_off
from scales_cli.binary.protocol import bit_widths
from scales_cli.errors import RecipeError, ScalesError
from scales_cli.export.pipeline import refuse_unexpressible
from scales_cli.loading import load
from scales_cli.metrics.cost import count_cost
from scales_cli.recipe import load_recipe, parse_recipe, rewrite, save_student
from scales_cli.train.optim import is_side_parameter

IMDN_SMALL = {"scale": 3, "in_nc": 3, "nf": 32, "num_modules": 4, "out_nc": 3}


# ---------------------------------------------------------------------------------------------- quantizers


def test_weight_quantizer_is_per_channel_symmetric_127_levels():
    w = torch.randn(4, 3, 3, 3) * torch.tensor([1.0, 10.0, 0.01, 3.0]).reshape(4, 1, 1, 1)
    q = Int8Weight()(w)
    scale = w.abs().amax(dim=(1, 2, 3)) / 127
    levels = q / scale.reshape(4, 1, 1, 1)
    assert torch.allclose(levels, levels.round(), atol=1e-3)
    assert levels.abs().amax(dim=(1, 2, 3)).round().tolist() == [127.0] * 4  # the max weight is exact
    assert ((q - w).abs() <= scale.reshape(4, 1, 1, 1) / 2 + 1e-6).all()


def test_weight_ste_passes_the_gradient_inside_the_range():
    w = torch.randn(3, 5, requires_grad=True)
    Int8Weight()(w).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


def test_activation_forward_is_quantize_dequantize_half_to_even():
    act = Int8Activation()
    act.set_range(0.0, 255.0)  # s = 1, z = 0: the levels are the integers 0..255
    x = torch.tensor([-3.0, 0.5, 1.5, 2.5, 254.4, 300.0])
    assert act(x).tolist() == [0.0, 0.0, 2.0, 2.0, 254.0, 255.0]  # ties to even, clamped both ends
    act.set_range(-1.0, 1.0)
    s, z = float(act.step().detach()), float(act.integer_zero_point())
    assert s == pytest.approx(2 / 255) and z in (127.0, 128.0)  # -low / s = 127.5 rounds to one of them
    y = act(torch.linspace(-2, 2, 101)).detach()
    assert torch.allclose(y / s, (y / s).round(), atol=1e-4) and y.min() >= -z * s - 1e-6 and y.max() <= (255 - z) * s + 1e-6
    assert act(torch.zeros(3)).tolist() == [0.0, 0.0, 0.0]  # 0 is a level: zero padding stays exact


def test_activation_backward_is_lsq_plus():
    """dx = g inside; ds = round(u) - u inside, -z below, 255 - z above; dz = -s outside, 0 inside."""
    s0, z0 = 0.1, 10.0
    x = torch.tensor([-5.0, 0.23, 1.07, 30.0], requires_grad=True)  # below, inside, inside, above
    scale = torch.tensor([s0], requires_grad=True)
    zero = torch.tensor([z0], requires_grad=True)
    ActInt8STE.apply(x, scale, zero).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]
    u = torch.tensor([0.23, 1.07]) / s0
    expected_ds = -z0 + float((u.round() - u).sum()) + (255 - z0)
    assert scale.grad.item() == pytest.approx(expected_ds, abs=1e-4)
    assert zero.grad.item() == pytest.approx(-2 * s0)


def test_range_methods():
    torch.manual_seed(0)
    x = torch.cat([torch.randn(100_000), torch.tensor([80.0])])  # one outlier
    low, high = percentile_range(x)
    assert -5 < low < -3 and 3 < high < 5  # the outlier is ignored
    low, high = mse_range(x)
    assert high < 80 and low < 0 < high  # MSE shrinks the range below the outlier
    relu = torch.rand(10_000)
    assert percentile_range(relu)[0] >= 0 and mse_range(relu)[0] == 0.0


# ------------------------------------------------------------------------------------------------- layers


def test_int8_layers_off_equal_the_float_layers_and_keep_state_dict_keys():
    conv, linear = nn.Conv2d(4, 6, 3, padding=1, stride=2), nn.Linear(5, 7)
    for float_layer, x in ((conv, torch.randn(2, 4, 9, 9)), (linear, torch.randn(2, 3, 5))):
        layer = make_int8(float_layer)
        assert type(layer) in (Int8Conv2d, Int8Linear)
        assert set(float_layer.state_dict()) < set(layer.state_dict())
        assert {"act.scale", "act.zero_point"} == set(layer.state_dict()) - set(float_layer.state_dict())
        assert bit_widths(layer) == (8, 8)
        with quantizers_off(layer):
            assert torch.equal(layer(x), float_layer(x)) and bit_widths(layer) == (32, 32)
        calibrate_int8(layer, [x])
        err = (layer(x) - float_layer(x)).abs().max()
        assert 0 < err < 0.05 * float_layer(x).abs().max()
    with pytest.raises(RecipeError, match="INT8 layers exist"):
        make_int8(nn.Conv1d(2, 2, 3))


def test_calibration_reads_float_activations_and_train_state_is_restored():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
    student = nn.Sequential(make_int8(net[0]), nn.ReLU(), make_int8(net[2])).train()
    x = torch.rand(2, 3, 16, 16)
    ranges = calibrate_int8(student, [x], "percentile")
    assert [r.path for r in ranges] == ["0", "2"] and student.training
    assert ranges[1].low == pytest.approx(0.0, abs=1e-6)  # after ReLU: one-sided, z = 0
    assert ranges[0].high == pytest.approx(float(x.max()), rel=0.02)
    with pytest.raises(RecipeError, match="INT8 range method"):
        calibrate_int8(student, [x], "minmax")


def test_ranges_are_side_parameters_and_get_gradients():
    layer = make_int8(nn.Conv2d(3, 4, 3))
    names = [n for n, _ in nn.Sequential(layer).named_parameters()]
    assert [n for n in names if is_side_parameter(n)] == ["0.act.scale", "0.act.zero_point"]
    layer.act.set_range(-0.2, 0.2)  # clips most of N(0, 1): scale and zero point both receive gradient
    layer(torch.randn(2, 3, 8, 8)).pow(2).sum().backward()
    assert layer.act.scale.grad.abs() > 0 and layer.act.zero_point.grad.abs() > 0


# ------------------------------------------------------------------------------------------------ recipes


def _recipe(precision: str, extra: str = "") -> str:
    return f"version: 1\nrules:\n  - name: all\n    select: {{}}\n    precision: {precision}\n{extra}"


def test_precision_typo_is_one_line_naming_rule_and_values():
    with pytest.raises(RecipeError) as info:
        parse_recipe(_recipe("int9"), source="r.yaml")
    msg = info.value.message
    assert "\n" not in msg and "rules[0] (all).precision" in msg and "'int8'" in msg
    assert "binary, int8, fp" in msg
    with pytest.raises(RecipeError, match="contradicts action: keep"):
        parse_recipe(_recipe("int8", "    action: keep\n"))
    with pytest.raises(RecipeError, match="preset.*binary layers only"):
        parse_recipe(_recipe("int8", "    preset: xnor\n"))
    assert parse_recipe(_recipe("fp", "    required: true\n")).rules[0].outcome == "fp"


def test_precision_typo_on_the_cli_is_exit_2_and_writes_nothing(tmp_path: Path):
    torch.manual_seed(0)
    teacher = tmp_path / "t.pth"
    torch.save(spec_by_name("imdn").build(**IMDN_SMALL).state_dict(), teacher)
    bad = tmp_path / "bad.yaml"
    bad.write_text(_recipe("int-8"))
    result = run_cli("binarize", teacher, "--recipe", bad, "-o", tmp_path / "s.safetensors")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert "precision" in result.err and "binary, int8, fp" in result.err and "Traceback" not in result.err
    assert not (tmp_path / "s.safetensors").exists()


@pytest.mark.parametrize("name", ["int8", "cnn-int8", "lsf-int8"])
def test_builtin_int8_recipes_round_trip(name: str):
    recipe = load_recipe(name)
    assert parse_recipe(recipe.to_yaml()).to_dict() == recipe.to_dict()


def _teacher(tmp_path: Path):
    torch.manual_seed(0)
    path = tmp_path / "teacher.pth"
    torch.save(spec_by_name("imdn").build(**IMDN_SMALL).state_dict(), path)
    return load(path)


def test_cnn_int8_student_saves_and_loads_back_identically(tmp_path: Path):
    teacher = _teacher(tmp_path)
    recipe = load_recipe("cnn-int8")
    student, report = rewrite(teacher, recipe)
    decisions = {d.path: d.decision for d in report.layers}
    assert decisions["fea_conv"] == "keep" and decisions["upsampler.0"] == "int8" and decisions["IMDB1.c5"] == "int8"
    assert report.binarized and report.int8 and all(d.decision == "binarize" for d in report.layers if d.region == "body" and d.shape[-1] >= 3)
    torch.manual_seed(1)
    calibrate_int8(student, [torch.rand(2, 3, 16, 16)])  # non-default ranges must survive the trip
    student.eval()
    path = save_student(tmp_path / "s.safetensors", student, teacher, recipe)
    loaded = load(path)
    x = torch.rand(1, 3, 13, 11)
    with torch.no_grad():
        assert torch.equal(student(x), loaded.model(x))
    assert isinstance(loaded.model.get_submodule("IMDB1.c5"), Int8Conv2d)
    assert loaded.extra["student"]["int8_layers"] == len(report.int8)
    assert loaded.model.state_dict().keys() == student.state_dict().keys()


def test_int8_recipe_has_no_binary_layer_and_binarize_calibrates_ranges(tmp_path: Path):
    teacher = tmp_path / "t.pth"
    torch.manual_seed(0)
    torch.save(spec_by_name("imdn").build(**IMDN_SMALL).state_dict(), teacher)
    images = tmp_path / "calib"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(images / f"{i}.png")
    out = tmp_path / "s.safetensors"
    result = run_cli("binarize", teacher, "-r", "int8", "--calibrate", images, "--int8-range", "percentile", "-o", out)
    assert result.code == 0, result.err
    assert "changed nothing" not in result.err
    dry = run_cli("binarize", teacher, "-r", "int8", "--dry-run", "--json")
    student_cost = json.loads(dry.out)["student"]
    assert student_cost["macs_int8"] > 0 and student_cost["macs_binary"] == 0
    loaded = load(out)
    info = loaded.extra["student"]
    assert info["binarized_layers"] == 0 and info["int8_layers"] > 0
    assert info["calibration"]["int8_layers"] == info["int8_layers"] and info["calibration"]["int8_range"] == "percentile"
    assert loaded.model.get_submodule("fea_conv").act.range() != Int8Activation().range()
    bad = run_cli("binarize", teacher, "-r", "int8", "--int8-range", "minmax", "-o", tmp_path / "b.safetensors")
    assert bad.code == 2 and "--int8-range" in bad.err and not (tmp_path / "b.safetensors").exists()


# ------------------------------------------------------------------------------------- cost and export


def _mixed_net() -> nn.Module:
    """head 3x3 (FP in cnn-int8), body 1x1 (INT8), body 3x3 (binary), output conv (INT8, never binary)."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 3, 3, padding=1)
    )


def _head_first(path: str) -> str:
    return "head" if path == "0" else "body"


def test_cost_counter_counts_int8_layers_at_their_bit_width():
    student, report = rewrite(_mixed_net(), load_recipe("cnn-int8"), region_of=_head_first)
    assert [d.decision for d in report.layers] == ["keep", "int8", "binarize", "int8"]
    cost = count_cost(student, input_size=(4, 2))
    px = 8
    assert cost.macs_int8 == px * (8 * 8 + 3 * 72) and cost.macs_binary == px * 8 * 72
    assert next(layer for layer in cost.layers if layer.name == "0").macs_fp == px * 8 * 27
    assert cost.params_int8 == 8 * 8 + 3 * 72
    assert cost.ops == pytest.approx(cost.macs_fp + cost.macs_int8 / 4 + cost.macs_binary / 64)
    layer = next(layer for layer in cost.layers if layer.name == "1")
    assert (layer.weight_bits, layer.act_bits) == (8, 8) and layer.macs_int8 == px * 8 * 8
    as_json = cost.to_json()
    assert as_json["macs_int8"] == cost.macs_int8 and "int8 MACs/4" in as_json["convention"]


def test_a_format_without_int8_refuses_int8_layers_naming_the_layer():
    """Every format writes INT8 now (tests/test_int8_export.py); one that did not would refuse in one line."""
    import dataclasses

    from scales_cli.binary.protocol import FP_BITS
    from scales_cli.export.pipeline import FORMATS

    student, _ = rewrite(_mixed_net(), load_recipe("cnn-int8"), region_of=_head_first)
    no_int8 = dataclasses.replace(FORMATS["openvino"][0], expresses=frozenset({FP_BITS, (1, 1)}))
    with pytest.raises(ScalesError, match=r"^layer 1: --format openvino cannot express its 8-bit weights / 8-bit activations"):
        refuse_unexpressible(student, no_int8)
    with quantizers_off(student):
        refuse_unexpressible(student, no_int8)  # FP layers pass
    refuse_unexpressible(student, FORMATS["scales"][0])


def test_finetune_trains_the_int8_ranges(tmp_path: Path):
    from scales_cli import finetune
    from scales_cli.train import FinetuneConfig

    from _train_helpers import TINY_IMDN, write_images

    torch.manual_seed(0)
    teacher_path = tmp_path / "teacher.pth"
    torch.save(spec_by_name("imdn").build(**TINY_IMDN).state_dict(), teacher_path)
    desc = load(teacher_path)
    recipe = load_recipe("cnn-int8")
    student, report = rewrite(desc, recipe)
    calibrate_int8(student, [torch.rand(2, 3, 16, 16)])
    path = save_student(tmp_path / "s.safetensors", student, desc, recipe)
    before = {n: p.detach().clone() for n, p in student.named_parameters() if n.endswith((".act.scale", ".act.zero_point"))}
    assert len(before) == 2 * len(report.int8)
    lr = write_images(tmp_path / "lr", 2, (20, 16))
    config = FinetuneConfig(steps=4, batch=2, patch=8, warmup=1, log_every=2, val_every=4, save_every=4, lr=1e-2)
    finetune(path, teacher_path, [], config, data_lr=[lr], out=tmp_path / "run")
    after = dict(load(tmp_path / "run" / "last.safetensors").model.named_parameters())
    moved = [n for n, p in before.items() if n.endswith(".act.scale") and not torch.equal(after[n].detach(), p)]
    assert moved, "no INT8 step was trained"
