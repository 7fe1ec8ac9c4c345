"""BinaryConv2d / BinaryLinear: geometry, branch sizes, float mode, state dicts, export hooks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from scales_cli.binary import (
    PRESETS,
    BinaryConv2d,
    BinaryLinear,
    BinaryOptions,
    LayerMode,
    bit_widths,
    is_binary,
    layer_mode,
    make_binary,
    quantizers_off,
)
from scales_cli.binary.packing import pack_sign_bits, unpack_sign_bits
from scales_cli.binary.rescale import ChannelRescale, SpatialRescale2d, TokenSpatialRescale
from scales_cli.binary.ste import hard_sign
from scales_cli.errors import RecipeError

ALL_ON = BinaryOptions(act="scales", spatial=True, channel=True, skip=True, batchnorm=True)
ALL_OFF = BinaryOptions(act="sign", spatial=False, channel=False, skip=False, batchnorm=False)

CONV_GEOMETRIES = [
    dict(in_channels=8, out_channels=8, kernel_size=3, padding=1),
    dict(in_channels=8, out_channels=8, kernel_size=1),
    dict(in_channels=6, out_channels=10, kernel_size=3, padding=1, stride=2),
    dict(in_channels=8, out_channels=8, kernel_size=3, padding=2, dilation=2),
    dict(in_channels=8, out_channels=12, kernel_size=3, padding=1, groups=4),
    dict(in_channels=4, out_channels=4, kernel_size=5, padding="same"),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 1), padding=(1, 0), stride=(2, 1)),
    dict(in_channels=5, out_channels=5, kernel_size=3, padding=0),
]


def _randomised(layer: nn.Module) -> nn.Module:
    """Give BN statistics and alpha/beta non-trivial values so every piece shows in the output."""
    torch.manual_seed(3)
    with torch.no_grad():
        for name, tensor in layer.named_buffers():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            elif name.endswith("running_mean"):
                tensor.normal_()
        for name, param in layer.named_parameters():
            if name.startswith(("act.", "bn.")):
                param.uniform_(0.3, 1.5)
    return layer.eval()


@pytest.mark.parametrize("geometry", CONV_GEOMETRIES, ids=lambda g: "-".join(f"{k}{v}" for k, v in g.items()))
@pytest.mark.parametrize("options", [ALL_ON, PRESETS["scales"], PRESETS["xnor"]], ids=["all", "scales", "xnor"])
def test_conv_shapes_match_float_conv(geometry: dict, options: BinaryOptions) -> None:
    conv = nn.Conv2d(**geometry)
    layer = BinaryConv2d.from_float(conv, options)
    x = torch.randn(2, geometry["in_channels"], 11, 9)  # odd sizes
    y = layer(x)
    assert y.shape == conv(x).shape
    y.square().mean().backward()
    assert layer.weight.grad is not None and layer.weight.grad.shape == conv.weight.shape


def test_conv_is_drop_in_subclass_with_float_keys() -> None:
    conv = nn.Conv2d(8, 8, 3, padding=1)
    layer = BinaryConv2d.from_float(conv, ALL_ON)
    assert isinstance(layer, nn.Conv2d)
    assert torch.equal(layer.weight, conv.weight) and torch.equal(layer.bias, conv.bias)
    keys = set(layer.state_dict())
    assert set(conv.state_dict()) <= keys
    assert {"act.alpha", "act.beta", "spatial.weight", "spatial.bias", "channel.weight", "bn.weight"} <= keys
    none = BinaryConv2d.from_float(conv, ALL_OFF)
    assert set(none.state_dict()) == {"weight", "bias"}
    assert none.spatial is None and none.channel is None and none.bn is None


@pytest.mark.parametrize("c_in, k", [(8, 3), (16, 5), (3, 1)])
def test_spatial_branch_adds_cin_k_k_plus_one_params(c_in: int, k: int) -> None:
    conv = nn.Conv2d(c_in, c_in, 3, padding=1)
    base = BinaryOptions(spatial=False, channel=False)
    without = sum(p.numel() for p in BinaryConv2d.from_float(conv, base).parameters())
    layer = BinaryConv2d.from_float(conv, BinaryOptions(spatial=True, spatial_kernel=k, channel=False))
    assert sum(p.numel() for p in layer.parameters()) - without == c_in * k * k + 1
    assert sum(p.numel() for p in layer.spatial.parameters()) == c_in * k * k + 1


@pytest.mark.parametrize("c_in, c_out", [(8, 8), (6, 10)])
def test_channel_branch_adds_exactly_five_params(c_in: int, c_out: int) -> None:
    conv = nn.Conv2d(c_in, c_out, 3, padding=1)
    without = sum(p.numel() for p in BinaryConv2d.from_float(conv, BinaryOptions(spatial=False, channel=False)).parameters())
    layer = BinaryConv2d.from_float(conv, BinaryOptions(spatial=False, channel=True))
    assert sum(p.numel() for p in layer.parameters()) - without == 5
    assert layer.channel_from_input == (c_in == c_out)


def test_token_spatial_branch_adds_c_plus_one_params() -> None:
    lin = nn.Linear(12, 36)
    base = sum(p.numel() for p in BinaryLinear.from_float(lin, BinaryOptions(spatial=False)).parameters())
    layer = BinaryLinear.from_float(lin, BinaryOptions(spatial=True))
    assert sum(p.numel() for p in layer.parameters()) - base == 12 + 1


@pytest.mark.parametrize("geometry", CONV_GEOMETRIES, ids=lambda g: "-".join(f"{k}{v}" for k, v in g.items()))
def test_quantizers_off_is_exactly_the_float_conv(geometry: dict) -> None:
    conv = nn.Conv2d(**geometry)
    layer = _randomised(BinaryConv2d.from_float(conv, ALL_ON))
    x = torch.randn(2, geometry["in_channels"], 10, 7)
    with quantizers_off(layer):
        assert torch.equal(layer(x), conv(x))
        assert layer.bit_widths() == (32, 32)
    assert layer.mode is LayerMode.BINARY and layer.bit_widths() == (1, 1)
    assert not torch.equal(layer(x), conv(x))


def test_quantizers_off_is_exactly_the_float_linear() -> None:
    lin = nn.Linear(6, 9)
    model = nn.Sequential(BinaryLinear.from_float(lin, ALL_ON))
    x = torch.randn(2, 5, 6)
    with quantizers_off(model):
        assert torch.equal(model(x), lin(x))


def test_skip_only_where_shapes_allow() -> None:
    cases = {
        (8, 8, 3, 1, 1): True,
        (8, 8, 3, 1, 0): False,  # output smaller than input
        (8, 8, 3, 2, 1): False,  # stride 2
        (8, 12, 3, 1, 1): False,  # channels change
    }
    for (cin, cout, k, s, p), expected in cases.items():
        layer = BinaryConv2d.from_float(nn.Conv2d(cin, cout, k, stride=s, padding=p), BinaryOptions(skip=True))
        assert layer.skip is expected, (cin, cout, k, s, p)
    assert not BinaryConv2d.from_float(nn.Conv2d(8, 8, 3, padding=1), BinaryOptions(skip=False)).skip


def test_conv_forward_composition_by_hand() -> None:
    """y = BN(conv(alpha sign(x - beta), s_o sign(W))) * spatial(x) * channel(x) + bias + x."""
    conv = nn.Conv2d(4, 4, 3, padding=1)
    layer = _randomised(BinaryConv2d.from_float(conv, ALL_ON))
    x = torch.randn(2, 4, 6, 5)
    alpha, beta = layer.act.scale(), layer.act.beta.reshape(1, -1, 1, 1)
    xb = alpha * hard_sign(x - beta)
    assert xb.unique().numel() == 2
    wb = conv.weight.abs().mean(dim=(1, 2, 3)).reshape(-1, 1, 1, 1) * hard_sign(conv.weight)
    z = layer.bn(F.conv2d(xb, wb, padding=1))
    s = torch.sigmoid(F.conv2d(x, layer.spatial.weight, layer.spatial.bias, padding=1))
    c = torch.sigmoid(F.conv1d(x.mean(dim=(2, 3)).unsqueeze(1), layer.channel.weight, padding=2)).reshape(2, 4, 1, 1)
    expected = z * s * c + conv.bias.reshape(1, -1, 1, 1) + x
    torch.testing.assert_close(layer(x), expected)


def test_linear_forward_composition_and_shapes() -> None:
    lin = nn.Linear(6, 9)
    layer = _randomised(BinaryLinear.from_float(lin, ALL_ON))
    for shape in [(2, 5, 6), (7, 6)]:
        x = torch.randn(shape)
        xb = layer.act.scale() * hard_sign(x - layer.act.beta)
        wb = lin.weight.abs().mean(dim=1, keepdim=True) * hard_sign(lin.weight)
        z = layer.bn(F.linear(xb, wb).reshape(-1, 9)).reshape(*shape[:-1], 9)
        expected = z * torch.sigmoid(F.linear(x, layer.spatial.weight, layer.spatial.bias)) + lin.bias
        torch.testing.assert_close(layer(x), expected)
    assert layer.channel is None and layer.skip is False


def test_make_binary_dispatches_on_exact_type() -> None:
    assert type(make_binary(nn.Conv2d(3, 3, 3), BinaryOptions())) is BinaryConv2d
    assert type(make_binary(nn.Linear(3, 3), BinaryOptions())) is BinaryLinear

    class MyConv(nn.Conv2d):
        pass

    for module in (MyConv(3, 3, 3), nn.Conv1d(3, 3, 3), BinaryConv2d(3, 3, 3)):
        with pytest.raises(RecipeError, match="cannot binarize"):
            make_binary(module, BinaryOptions())


def test_bit_width_protocol() -> None:
    layer = make_binary(nn.Conv2d(4, 4, 3, padding=1), BinaryOptions())
    assert is_binary(layer) and bit_widths(layer) == (1, 1)
    assert bit_widths(layer.spatial) == (32, 32) and not is_binary(layer.channel)


def test_unmatchable_spatial_geometry_and_padding_mode_are_recipe_errors() -> None:
    with pytest.raises(RecipeError, match="spatial re-scaling"):
        BinaryConv2d.from_float(nn.Conv2d(4, 4, 2), BinaryOptions(spatial=True))
    with pytest.raises(RecipeError, match="odd"):
        BinaryConv2d.from_float(nn.Conv2d(4, 4, 3, padding=1), BinaryOptions(spatial_kernel=4))
    with pytest.raises(RecipeError, match="padding_mode"):
        BinaryConv2d.from_float(nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), BinaryOptions())
    assert BinaryConv2d.from_float(nn.Conv2d(4, 4, 2), BinaryOptions(spatial=False))(torch.randn(1, 4, 5, 5)).shape == (1, 4, 4, 4)


def test_branches_pass_gradcheck() -> None:
    torch.manual_seed(4)
    spatial = SpatialRescale2d(3, 3, (2, 2), (1, 1)).double()
    channel = ChannelRescale(5).double()
    token = TokenSpatialRescale(4).double()
    assert torch.autograd.gradcheck(spatial, (torch.randn(1, 3, 5, 4, dtype=torch.float64, requires_grad=True),))
    assert torch.autograd.gradcheck(channel, (torch.randn(2, 6, 3, 3, dtype=torch.float64, requires_grad=True),))
    assert torch.autograd.gradcheck(token, (torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True),))


def test_layer_gradients_to_bias_and_branches_match_finite_differences() -> None:
    """The output is smooth in bias and branch weights (binary parts fixed), so gradcheck applies."""
    torch.manual_seed(5)
    layer = _randomised(BinaryConv2d.from_float(nn.Conv2d(3, 3, 3, padding=1), ALL_ON)).double()
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    names = ["bias", "spatial.weight", "channel.weight"]
    params = {n: p.detach().clone().requires_grad_(True) for n, p in layer.named_parameters() if n in names}

    def f(*values: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(layer, dict(zip(params, values)), (x,))

    assert torch.autograd.gradcheck(f, tuple(params.values()))


@pytest.mark.parametrize("options", [ALL_ON, PRESETS["scales"], PRESETS["e2fif"], PRESETS["bibert"]], ids=["all", "scales", "e2fif", "bibert"])
def test_safetensors_round_trip_is_bit_exact(tmp_path: Path, options: BinaryOptions) -> None:
    conv = nn.Conv2d(6, 6, 3, padding=1)
    layer = _randomised(BinaryConv2d.from_float(conv, options))
    lin = _randomised(BinaryLinear.from_float(nn.Linear(6, 10), options))
    save_file(layer.state_dict(), str(tmp_path / "conv.safetensors"))
    save_file(lin.state_dict(), str(tmp_path / "lin.safetensors"))
    fresh = BinaryConv2d.from_float(nn.Conv2d(6, 6, 3, padding=1), options).eval()
    fresh_lin = BinaryLinear.from_float(nn.Linear(6, 10), options).eval()
    fresh.load_state_dict(load_file(str(tmp_path / "conv.safetensors")))
    fresh_lin.load_state_dict(load_file(str(tmp_path / "lin.safetensors")))
    x, t = torch.randn(2, 6, 7, 9), torch.randn(2, 5, 6)
    assert torch.equal(fresh(x), layer(x))
    assert torch.equal(fresh_lin(t), lin(t))


def test_pack_unpack_round_trip_and_bit_order() -> None:
    w = torch.randn(5, 3, 3, 3)
    w.view(-1)[0] = 0.0
    packed = pack_sign_bits(w)
    assert packed.dtype == torch.uint8 and packed.shape == (5, 4)  # 27 bits -> 4 bytes
    assert torch.equal(unpack_sign_bits(packed, 27), hard_sign(w).reshape(5, 27))
    assert pack_sign_bits(torch.tensor([[1.0, -1, -1, -1, -1, -1, -1, 1]])).item() == 0b10000001


def _core_from_view(layer: BinaryConv2d, x: torch.Tensor) -> torch.Tensor:
    """The core z from the export view only (packed bits, scales, threshold: what an exporter ships)."""
    view = layer.export_view()
    wb = torch.from_numpy(view.signs()) * torch.from_numpy(view.weight_scale).reshape(-1, 1, 1, 1)
    xb = view.alpha * hard_sign(x - torch.from_numpy(view.beta).reshape(1, -1, 1, 1))
    top, left, bottom, right = view.padding
    return F.conv2d(F.pad(xb, (left, right, top, bottom)), wb, None, view.stride, 0, view.dilation, view.groups)


@pytest.mark.parametrize("geometry", [CONV_GEOMETRIES[0], CONV_GEOMETRIES[2], CONV_GEOMETRIES[4]], ids=["same", "stride2", "groups"])
@pytest.mark.parametrize("options", [ALL_ON, PRESETS["xnor"]], ids=["all", "xnor"])
def test_view_core_and_the_layers_epilogue_rebuild_conv_forward(geometry: dict, options: BinaryOptions) -> None:
    """An exporter replaces only the core: the view's core followed by the layer's epilogue is the layer."""
    layer = _randomised(BinaryConv2d.from_float(nn.Conv2d(**geometry), options))
    x = torch.randn(2, geometry["in_channels"], 9, 8)
    z = _core_from_view(layer, x)
    torch.testing.assert_close(z, layer.core(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.epilogue(z, x), layer(x), rtol=1e-5, atol=1e-5)


def test_view_core_and_the_layers_epilogue_rebuild_linear_forward() -> None:
    layer = _randomised(BinaryLinear.from_float(nn.Linear(13, 7), BinaryOptions(spatial=True, channel=False, skip=False)))
    view = layer.export_view()
    x = torch.randn(3, 4, 13)
    wb = torch.from_numpy(view.signs()) * torch.from_numpy(view.weight_scale).reshape(-1, 1)
    xb = view.alpha * hard_sign(x - torch.from_numpy(view.beta))
    s = torch.sigmoid(F.linear(x, layer.spatial.weight, layer.spatial.bias))
    torch.testing.assert_close(F.linear(xb, wb) * s + layer.bias, layer(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.epilogue(F.linear(xb, wb), x), layer(x), rtol=1e-5, atol=1e-5)


def test_from_float_keeps_dtype_and_training_flag() -> None:
    conv = nn.Conv2d(4, 4, 3, padding=1).double().eval()
    layer = BinaryConv2d.from_float(conv, ALL_ON)
    assert all(p.dtype == torch.float64 for p in layer.parameters())
    assert not layer.training
    assert layer(torch.randn(1, 4, 5, 5, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_layers_calibration_and_export_hooks_run_on_cuda() -> None:
    from scales_cli.binary import calibrate

    device = torch.device("cuda")
    model = nn.Sequential(
        make_binary(nn.Conv2d(8, 8, 3, padding=1).to(device), ALL_ON),
        make_binary(nn.Conv2d(8, 12, 3, padding=1, stride=2).to(device), ALL_ON),
    )
    assert calibrate(model, [torch.randn(2, 8, 16, 16)]) == ["0", "1"]  # CPU batches are moved
    x = torch.randn(2, 8, 16, 16, device=device, requires_grad=True)
    y = model(x)
    y.square().mean().backward()
    assert y.device.type == "cuda" and x.grad is not None and model[0].act.beta.grad.device.type == "cuda"
    cpu = _randomised(BinaryConv2d.from_float(nn.Conv2d(8, 8, 3, padding=1), ALL_ON))
    gpu = BinaryConv2d.from_float(nn.Conv2d(8, 8, 3, padding=1), ALL_ON).eval().to(device)
    gpu.load_state_dict(cpu.state_dict())
    xc = torch.randn(1, 8, 9, 9)
    torch.testing.assert_close(gpu(xc.to(device)).cpu(), cpu(xc), rtol=1e-4, atol=1e-4)
    assert torch.equal(gpu.packed_weight_bits(), cpu.packed_weight_bits())
    view = gpu.export_view()
    assert view.beta.shape == (8,) and torch.equal(torch.from_numpy(view.bits), cpu.packed_weight_bits())


def test_cost_counter_reads_bit_widths_of_a_scales_conv() -> None:
    """BNN totals of one SCALES conv by hand: binary weight /32 and binary MACs /64, everything else FP."""
    from scales_cli.metrics.cost import count_cost

    c_in, c_out, k, h, w = 8, 8, 3, 6, 5
    layer = BinaryConv2d.from_float(nn.Conv2d(c_in, c_out, k, padding=1), PRESETS["scales"])
    cost = count_cost(layer, input_size=(w, h), in_channels=c_in)
    fp_params = c_out + 1 + c_in + (c_in * k * k + 1) + 5  # bias, alpha, beta, spatial, channel
    assert (cost.params_binary, cost.params_fp) == (c_out * c_in * k * k, fp_params)
    assert cost.params == fp_params + c_out * c_in * k * k / 32
    binary_macs = h * w * c_out * c_in * k * k
    fp_macs = h * w * c_in * k * k + 5 * c_out  # spatial conv C_in -> 1, Conv1d(5) over C_out channels
    assert (cost.macs_binary, cost.macs_fp) == (binary_macs, fp_macs)
    assert cost.ops == fp_macs + binary_macs / 64
    with quantizers_off(layer):  # float mode: the same weights count as FP, the bypassed branches cost nothing
        fp = count_cost(layer, input_size=(w, h), in_channels=c_in)
    assert fp.macs_binary == 0 and fp.macs_fp == binary_macs and fp.params_binary == 0
