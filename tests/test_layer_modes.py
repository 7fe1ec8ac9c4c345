"""One layer mode: what each mode computes, the context manager restores, export refuses a layer not binary;
a recipe that gives a linear layer channel/skip is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scales_cli.binary import BinaryConv2d, BinaryLinear, BinaryOptions, LayerMode, layer_mode, quantizers_off
from scales_cli.binary.modes import set_mode
from scales_cli.errors import RecipeError, ScalesError


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        BinaryConv2d.from_float(nn.Conv2d(3, 8, 3, padding=1), BinaryOptions()),
        BinaryConv2d.from_float(nn.Conv2d(8, 8, 3, padding=1), BinaryOptions(batchnorm=True)),
    ).eval()


def test_each_mode_bypasses_its_quantizers_and_off_is_the_float_layer():
    conv = nn.Conv2d(8, 8, 3, padding=1)
    layer = BinaryConv2d.from_float(conv, BinaryOptions()).eval()
    x = torch.randn(2, 8, 6, 7)
    with torch.no_grad():
        binary = layer(x)
        for mode, (a, w) in {
            LayerMode.FP_WEIGHTS: (layer.act(x), layer.weight),
            LayerMode.FP_ACTIVATIONS: (x, layer.wbin(layer.weight)),
        }.items():
            with layer_mode(layer, mode):
                assert torch.equal(layer.core(x), F.conv2d(a, w, None, 1, 1))
                assert torch.equal(layer(x), layer.epilogue(layer.core(x), x)) and not torch.equal(layer(x), binary)
                assert layer.bit_widths() == ((32, 1) if mode is LayerMode.FP_WEIGHTS else (1, 32))
        with quantizers_off(layer):
            assert layer.mode is LayerMode.OFF and torch.equal(layer(x), conv(x))
        assert torch.equal(layer(x), binary)


def test_int8_layers_use_the_same_mode_field_and_context_managers():
    from scales_cli.binary import Int8Conv2d, Int8Linear, Int8Layer

    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, padding=1)
    layer = Int8Conv2d.from_float(conv).eval()
    x = torch.randn(2, 8, 6, 7)
    with torch.no_grad():
        quantized = layer(x)
        assert torch.allclose(quantized, F.conv2d(layer.act(x), layer.wq(layer.weight), conv.bias, 1, 1), atol=1e-5)
        for mode, (a, w), bits in (
            (LayerMode.FP_WEIGHTS, (layer.act(x), layer.weight), (32, 8)),
            (LayerMode.FP_ACTIVATIONS, (x, layer.wq(layer.weight)), (8, 32)),
        ):
            with layer_mode(layer, mode):
                assert torch.equal(layer.core(x), F.conv2d(a, w, None, 1, 1)) and layer.bit_widths() == bits
                assert torch.equal(layer(x), layer.epilogue(layer.core(x), x))
        with quantizers_off(layer):
            assert torch.equal(layer(x), conv(x)) and layer.bit_widths() == (32, 32)
        assert torch.equal(layer(x), quantized) and layer.mode is LayerMode.BINARY
    # kind=: only the INT8 layers of a mixed net change (the binary calibration's FP INT8 neighbours)
    net = nn.Sequential(_net(), Int8Conv2d.from_float(nn.Conv2d(8, 8, 1)), Int8Linear.from_float(nn.Linear(4, 4)))
    with layer_mode(net, LayerMode.OFF, Int8Layer):
        assert [m.mode for m in (*net[0], net[1], net[2])] == [LayerMode.BINARY] * 2 + [LayerMode.OFF] * 2
    assert {m.mode for m in (*net[0], net[1], net[2])} == {LayerMode.BINARY}


def test_layer_mode_gives_each_layer_its_own_mode_back_even_after_an_error():
    net = _net()
    net[1].mode = LayerMode.FP_WEIGHTS
    with pytest.raises(RuntimeError, match="inside"):
        with layer_mode(net, LayerMode.OFF):
            assert [m.mode for m in net] == [LayerMode.OFF, LayerMode.OFF]
            raise RuntimeError("inside")
    assert [m.mode for m in net] == [LayerMode.BINARY, LayerMode.FP_WEIGHTS]
    set_mode(net, LayerMode.FP_ACTIVATIONS)
    assert {m.mode for m in net} == {LayerMode.FP_ACTIVATIONS}
    assert "mode" not in net.state_dict() and all("mode" not in k for k in net.state_dict())  # never saved


@pytest.mark.parametrize("mode", [LayerMode.OFF, LayerMode.FP_WEIGHTS, LayerMode.FP_ACTIVATIONS])
def test_export_refuses_a_layer_not_in_binary_mode_naming_it(mode: LayerMode, tmp_path: Path):
    from scales_cli.export.pipeline import export_model

    net = _net()
    net[1].mode = mode
    with pytest.raises(ScalesError) as info:
        export_model(net, tmp_path / "s.onnx", "scales", check=False)
    message = info.value.message
    assert info.value.exit_code == 2 and "layer 1:" in message and f"mode {mode.value}" in message
    assert "\n" not in message and list(tmp_path.iterdir()) == []
    net[1].mode = LayerMode.BINARY
    assert export_model(net, tmp_path / "s.onnx", "float", check=False).binary_layers == 2


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.proj = nn.Linear(8, 8)


RECIPE = """
version: 1
defaults: {{preset: scales, options: {{channel: false}}}}
rules:
  - name: convs
    select: {{type: conv2d}}
  - name: linears
    select: {{type: linear}}
    options: {options}
"""


@pytest.mark.parametrize("option", ["channel", "skip"])
def test_a_recipe_giving_a_linear_layer_channel_or_skip_is_refused_naming_layer_and_option(option: str):
    from scales_cli.recipe import rewrite
    from scales_cli.recipe.schema import parse_recipe

    recipe = parse_recipe(RECIPE.format(options=f"{{{option}: true}}"), source="mine.yaml")
    with pytest.raises(RecipeError) as info:
        rewrite(_Block(), recipe)
    message = info.value.message
    assert info.value.exit_code == 2 and "\n" not in message
    assert "mine.yaml" in message and "layer proj" in message and f"options.{option}: true" in message
    # the preset's own skip (on for convs) is no request: the linear is built, without skip or channel
    student, _ = rewrite(_Block(), parse_recipe(RECIPE.format(options="{spatial: true}")))
    assert isinstance(student.proj, BinaryLinear) and not student.proj.skip and student.proj.channel is None
    assert student.conv.skip
