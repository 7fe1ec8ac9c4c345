"""The rewrite pass: decisions (last rule wins), errors that name the rule and nearest layers,
the teacher untouched, module paths kept, and every registered architecture binarized by its
default recipe and run at an odd input size."""

from __future__ import annotations

import pytest
import torch
from _arch_helpers import smallest_example
from _recipe_helpers import TOY_SPEC, Marked, Toy, fake_maker
from torch import nn

from scales_cli.archs import all_specs
from scales_cli.binary import BinaryLayer
from scales_cli.binary.presets import PRESETS
from scales_cli.errors import RecipeError
from scales_cli.recipe import default_recipe_name, load_recipe, parse_recipe, plan, rewrite

REGION = TOY_SPEC.region_of


def _decisions(report) -> dict[str, tuple[str, str]]:  # noqa: ANN001
    return {d.path: (d.decision, d.rule) for d in report.layers}


def test_cnn_binarizes_body_convs_3x3_only():
    student, report = rewrite(Toy(), load_recipe("cnn"), region_of=REGION, maker=fake_maker)
    assert _decisions(report) == {
        "head": ("keep", "(default)"),
        "body.0": ("binarize", "body-convs"),
        "body.2": ("keep", "(default)"),  # 1x1
        "body.3": ("binarize", "body-convs"),
        "tail.0": ("keep", "(default)"),
        "tail.1": ("keep", "output-conv"),
    }
    assert isinstance(student.body[0], Marked) and student.body[0].options == PRESETS["scales"]
    assert type(student.body[2]) is nn.Conv2d and type(student.tail[0]) is nn.Conv2d
    assert report.binarized[0].shape == (8, 8, 3, 3) and report.binarized[0].region == "body"


def test_cnn_full_adds_the_upsampler_but_not_the_last_conv():
    _, report = rewrite(Toy(), load_recipe("cnn-full"), region_of=REGION, maker=fake_maker)
    d = _decisions(report)
    assert d["tail.0"] == ("binarize", "tail-convs") and d["tail.1"] == ("keep", "output-conv")
    assert d["head"][0] == "keep"


def test_later_rules_override_and_rule_options_apply():
    recipe = parse_recipe(
        "rules:\n"
        "  - {name: all, select: {type: conv2d}}\n"
        "  - {name: keep-head, select: {region: head}, action: keep}\n"
        "  - {name: narrow, select: {path: 'tail.*', last: false}, options: {spatial: false}}\n"
    )
    student, report = rewrite(Toy(), recipe, region_of=REGION, maker=fake_maker)
    d = _decisions(report)
    assert d["head"] == ("keep", "keep-head") and d["body.2"] == ("binarize", "all") and d["tail.1"] == ("binarize", "all")
    assert d["tail.0"] == ("binarize", "narrow") and student.tail[0].options.spatial is False
    assert student.body[0].options.spatial is True


def test_teacher_untouched_and_paths_kept():
    teacher = Toy()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student, report = rewrite(teacher, load_recipe("cnn"), region_of=REGION)
    assert all(type(m) in (nn.Conv2d, nn.Linear, nn.Sequential, nn.ReLU, nn.Identity, nn.LayerNorm, Toy) for m in teacher.modules())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    for d in report.layers:
        s, t = student.get_submodule(d.path), teacher.get_submodule(d.path)
        assert isinstance(s, BinaryLayer) == (d.decision == "binarize")
        assert torch.equal(s.weight, t.weight)  # from_float carries the FP weights over
    x = torch.rand(1, 3, 7, 9)
    with torch.no_grad():
        assert student(x).shape == teacher(x).shape


def test_rule_matching_nothing_names_rule_and_nearest():
    recipe = parse_recipe("rules:\n  - {name: attn, select: {path: 'body.O', type: conv2d}}\n", source="r.yaml")
    with pytest.raises(RecipeError) as info:
        plan(Toy(), recipe, region_of=REGION)
    msg = info.value.message
    assert "r.yaml" in msg and "'attn'" in msg and "nearest: body.0 " in msg and "\n" not in msg
    optional = parse_recipe("rules:\n  - {select: {}}\n  - {name: attn, select: {path: 'body.O'}, required: false}\n")
    assert len(plan(Toy(), optional, region_of=REGION).binarized) == 6


def test_zero_binarized_is_an_error():
    recipe = parse_recipe("rules:\n  - {name: nothing, select: {}, action: keep}\n", source="k.yaml")
    with pytest.raises(RecipeError, match="binarizes none of the network's 6 conv/linear layers"):
        plan(Toy(), recipe, region_of=REGION)


def test_a_layer_the_options_cannot_build_is_named_with_its_rule():
    # a 4x4 conv with padding 1 shrinks the map by one pixel: no odd spatial-branch kernel matches it
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 4, padding=1), nn.Conv2d(8, 3, 3, padding=1))
    recipe = parse_recipe("rules:\n  - {name: all-convs, select: {last: false}}\n", source="s.yaml", name="s")
    with pytest.raises(RecipeError) as info:
        rewrite(net, recipe)
    msg = info.value.message
    assert "layer 1 (rule 'all-convs')" in msg and "spatial: false" in msg and "\n" not in msg
    fixed = parse_recipe(
        "rules:\n  - {name: all-convs, select: {last: false}}\n  - {name: k4, select: {kernel: 4}, options: {spatial: false}}\n"
    )
    student, _ = rewrite(net, fixed)
    assert student(torch.rand(1, 3, 9, 7)).shape == (1, 3, 8, 6)


def test_default_recipe_by_content():
    assert default_recipe_name(Toy(), region_of=REGION) == "cnn"
    assert default_recipe_name(Toy(with_linear=True), region_of=REGION) == "transformer"
    linear_only = Toy()
    linear_only.mix = nn.Linear(8, 8)  # BSRN-style 1x1 "convs" written as nn.Linear: still a CNN
    assert default_recipe_name(linear_only, region_of=REGION) == "cnn"


def test_exact_types_only():
    class MyConv(nn.Conv2d):
        pass

    net = nn.Sequential(MyConv(3, 3, 3), nn.Conv2d(3, 3, 3), nn.Conv2d(3, 3, 3))
    _, report = rewrite(net, load_recipe("cnn"), maker=fake_maker)
    assert [d.path for d in report.layers] == ["1", "2"]


@pytest.mark.parametrize("spec", all_specs(), ids=lambda s: s.name)
def test_every_architecture_binarizes_with_its_default_recipe(spec):
    torch.manual_seed(0)
    model = spec.build(**{**spec.defaults, **smallest_example(spec)}).eval()
    name = default_recipe_name(model, region_of=spec.region_of)
    student, report = rewrite(model, load_recipe(name), region_of=spec.region_of)
    assert report.binarized
    assert all(d.region == "body" for d in report.binarized)
    if any(type(m) is nn.LayerNorm for m in model.modules()):
        assert name == "transformer" and {d.type for d in report.binarized} >= {"linear"}
    scale = int(smallest_example(spec)["scale"])
    with torch.no_grad():
        y = student.eval()(torch.rand(1, 3, 13, 11))
    assert y.shape == (1, 3, 13 * scale, 11 * scale) and torch.isfinite(y).all()


def test_rewrite_is_deterministic_and_leaves_the_global_rng_alone():
    import torch
    from torch import nn

    from scales_cli.recipe import load_recipe, rewrite

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 3, 3, padding=1))
    region = lambda path: {"0": "head", "2": "tail"}.get(path, "body")  # noqa: E731
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a, _ = rewrite(model, load_recipe("cnn"), region_of=region)
    assert torch.equal(torch.rand(3), expected_next)
    b, _ = rewrite(model, load_recipe("cnn"), region_of=region)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka


def test_cnn_recipe_keeps_depthwise_convs_fp():
    from torch import nn

    from scales_cli.recipe import load_recipe, plan

    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.Conv2d(8, 8, 3, padding=1),  # full 3x3: binary
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise: FP
        nn.Conv2d(8, 8, 3, padding=1, groups=2),  # grouped, not depthwise: binary
        nn.Conv2d(8, 3, 3, padding=1),
    )
    region = lambda path: {"0": "head", "4": "tail"}.get(path, "body")  # noqa: E731
    decisions = {d.path: (d.decision, d.rule) for d in plan(model, load_recipe("cnn"), region_of=region).layers}
    assert decisions["1"] == ("binarize", "body-convs")
    assert decisions["2"] == ("keep", "depthwise-convs")
    assert decisions["3"] == ("binarize", "body-convs")
