"""Recipe files: the shipped ones load, typos and bad values fail with one helpful line."""

from __future__ import annotations

from pathlib import Path

import pytest

from scales_cli.binary.options import BinaryOptions
from scales_cli.binary.presets import PRESETS
from scales_cli.errors import RecipeError
from scales_cli.recipe import builtin_names, load_recipe, parse_recipe
from scales_cli.recipe.schema import builtin_dir

REPO = Path(__file__).resolve().parents[1]
REQUIRED = {"cnn", "cnn-full", "transformer", "xnor", "e2fif", "bibert", "lsf", "lsf-chl", "lsf-spatial", "scales"}


def _err(text: str, source: str = "my.yaml") -> str:
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, source=source)
    message = info.value.message
    assert "\n" not in message
    return message


def test_builtin_recipes_ship_and_load():
    assert REQUIRED <= set(builtin_names())
    # the package resource folder is the repository's top-level recipes/ (installed or editable)
    assert sorted(p.name for p in builtin_dir().glob("*.yaml")) == sorted(p.name for p in (REPO / "recipes").glob("*.yaml"))
    for name in builtin_names():
        recipe = load_recipe(name)
        assert recipe.name == name and recipe.rules and recipe.description


def test_baselines_are_cnn_rules_with_their_preset():
    cnn = load_recipe("cnn")
    for name in ("xnor", "e2fif", "bibert", "lsf", "lsf-chl", "lsf-spatial", "scales"):
        recipe = load_recipe(name)
        assert recipe.rules == cnn.rules
        assert recipe.options_for(recipe.rules[0]) == PRESETS[name]


def test_transformer_recipe_has_no_channel_rescaling():
    recipe = load_recipe("transformer")
    options = recipe.options_for(recipe.rules[0])
    assert options.spatial and not options.channel and options.act == "scales"


def test_unknown_key_did_you_mean_with_key_path():
    msg = _err("rules:\n  - name: a\n    select: {region: body, kernal: 3}\n")
    assert "my.yaml" in msg and "rules[0] (a).select.kernal" in msg and "did you mean 'kernel'" in msg
    assert "did you mean 'rules'" in _err("rule:\n  - select: {}\n")
    assert "did you mean 'spatial'" in _err("rules:\n  - select: {}\n    options: {spatail: false}\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("defaults: {preset: scalez}\nrules: [{select: {}}]", "did you mean 'scales'"),
        ("rules: [{select: {}, preset: nope}]", "allowed: xnor"),
        ("rules: [{select: {}, options: {act: sgn}}]", "allowed: approxsign, scales, sign"),
        ("rules: [{select: {}, options: {weight: mean}}]", "channel_mean"),
        ("rules: [{select: {}, options: {spatial: 'yes'}}]", "expected true or false"),
        ("rules: [{select: {}, options: {spatial_kernel: 0}}]", "positive integer"),
        ("rules: [{select: {}, options: {spatial_kernel: 4}}]", "options.spatial_kernel: expected an odd kernel size"),
        ("defaults: {options: {channel_kernel: 2}}\nrules: [{select: {}}]", "defaults.options.channel_kernel"),
        ("rules: [{select: {region: bodyy}}]", "did you mean 'body'"),
        ("rules: [{select: {type: conv}}]", "allowed: conv2d, linear"),
        ("rules: [{select: {kernel: '>=x'}}]", "kernel size or comparison"),
        ("rules: [{select: {}, action: binarise}]", "did you mean 'binarize'"),
        ("rules: []", "has no rules"),
        ("version: 2\nrules: [{select: {}}]", "version 2"),
        ("rules: [{select: {}}\n", "not valid YAML"),
        ("rules: [{name: a, select: {}}, {name: a, select: {}}]", "used twice"),
    ],
)
def test_bad_values_name_the_allowed_ones(text: str, expected: str):
    assert expected in _err(text)


def test_options_resolution_order():
    recipe = parse_recipe(
        "defaults: {preset: scales, options: {channel: false}}\n"
        "rules:\n"
        "  - {name: a, select: {}, options: {spatial_kernel: 5}}\n"
        "  - {name: b, select: {}, preset: xnor, options: {skip: true}}\n"
    )
    a, b = recipe.rules
    assert recipe.options_for(a) == BinaryOptions(**{**PRESETS["scales"].__dict__, "channel": False, "spatial_kernel": 5})
    # a rule's preset replaces the defaults (their channel: false included); its options go on top
    assert recipe.options_for(b) == BinaryOptions(**{**PRESETS["xnor"].__dict__, "skip": True})


def test_kernel_forms():
    recipe = parse_recipe("rules: [{select: {kernel: [1, '>=5', '3']}}]")
    assert recipe.rules[0].select.kernel == (("==", 1), (">=", 5), ("==", 3))


def test_canonical_yaml_round_trips():
    for name in ("cnn-full", "transformer", "xnor"):
        recipe = load_recipe(name)
        again = parse_recipe(recipe.to_yaml(), source="stored")
        assert (again.name, again.defaults, again.rules) == (recipe.name, recipe.defaults, recipe.rules)


def test_load_by_path_and_unknown_name(tmp_path: Path):
    path = tmp_path / "mine.yaml"
    path.write_text("extends: cnn\ndefaults: {options: {channel: false}}\n")
    recipe = load_recipe(path)
    assert recipe.name == "mine" and recipe.rules == load_recipe("cnn").rules
    assert recipe.options_for(recipe.rules[0]) == BinaryOptions(**{**PRESETS["scales"].__dict__, "channel": False})
    with pytest.raises(RecipeError, match="did you mean 'cnn'"):
        load_recipe("cnnn")
    with pytest.raises(RecipeError, match="no such file"):
        load_recipe(tmp_path / "missing.yaml")


def test_a_name_without_its_yaml_suffix_points_at_the_file(tmp_path: Path, monkeypatch):
    (tmp_path / "mine.yaml").write_text("extends: cnn\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RecipeError, match=r"did you mean the file .*mine\.yaml"):
        load_recipe("mine")
