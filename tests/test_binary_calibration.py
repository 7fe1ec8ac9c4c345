"""Calibration sets beta/alpha from FP statistics and, on request, fits each layer's output to the
FP teacher (sequential inputs, bias / affine correction); presets resolve to the documented options."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from scales_cli.binary import (
    PRESETS,
    BinaryConv2d,
    BinaryLinear,
    BinaryOptions,
    calibrate,
    make_binary,
    preset,
)
from scales_cli.binary.calibration import CalibrationOptions
from scales_cli.binary.modes import LayerMode, quantizers_off
from scales_cli.errors import DataError, RecipeError


class _Tiny(nn.Module):
    """head (FP) -> binary conv -> ReLU -> binary conv, like one SR residual body block."""

    def __init__(self, options: BinaryOptions) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 6, 3, padding=1)
        self.body = nn.Sequential(
            make_binary(nn.Conv2d(6, 6, 3, padding=1), options),
            nn.ReLU(),
            make_binary(nn.Conv2d(6, 6, 3, padding=1), options),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.head(x))


def test_calibrate_sets_mean_threshold_and_mean_abs_deviation() -> None:
    torch.manual_seed(6)
    model = _Tiny(BinaryOptions()).train()
    batches = [torch.rand(2, 3, 8, 8) * 3 + 1, torch.rand(1, 3, 10, 6)]
    # Expected statistics of the FP inputs of body.2: the FP network's body.1 output after ReLU
    with torch.no_grad():
        fp = nn.Sequential(model.head, nn.Conv2d(6, 6, 3, padding=1), nn.ReLU())
        fp[1].load_state_dict({"weight": model.body[0].weight, "bias": model.body[0].bias})
        inputs = [fp(b) for b in batches]
    flat = torch.cat([t.permute(1, 0, 2, 3).reshape(6, -1) for t in inputs], dim=1).double()
    beta = flat.mean(dim=1)
    alpha = (flat - beta[:, None]).abs().mean()

    names = calibrate(model, iter(batches))

    assert names == ["body.0", "body.2"]
    torch.testing.assert_close(model.body[2].act.beta.detach().double(), beta, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.body[2].act.scale().detach().double(), alpha.reshape(1), rtol=1e-5, atol=1e-5)
    assert model.training and model.body[0].mode is LayerMode.BINARY  # modes restored


def test_calibrate_from_single_batch_on_tokens() -> None:
    layer = BinaryLinear.from_float(nn.Linear(4, 8), BinaryOptions())
    x = torch.randn(3, 5, 4) * torch.tensor([1.0, 2.0, 3.0, 4.0]) + torch.tensor([0.0, 1.0, -1.0, 5.0])
    assert layer.calibrate_from(x)
    beta = x.reshape(-1, 4).mean(dim=0)
    torch.testing.assert_close(layer.act.beta.detach(), beta)
    torch.testing.assert_close(layer.act.scale().detach(), (x - beta).abs().mean().reshape(1))


def test_calibrated_alpha_is_least_squares_scale_for_the_centred_input() -> None:
    """alpha = mean|u| minimises ||u - a sign(u)||^2 over a, with u = x - beta."""
    torch.manual_seed(7)
    layer = BinaryConv2d.from_float(nn.Conv2d(4, 4, 3, padding=1), BinaryOptions())
    x = torch.randn(2, 4, 8, 8) * 10 + 20  # large shifted activations, as in EDSR bodies

    def error(scale: float | None = None) -> float:
        u = x - layer.act.beta.detach().reshape(1, -1, 1, 1)
        a = layer.act.scale().detach() if scale is None else scale
        return (u - a * torch.where(u >= 0, 1.0, -1.0)).square().mean().item()

    before = error()
    layer.calibrate_from(x)
    after, alpha = error(), layer.act.scale().item()
    assert after < before / 4
    assert after < error(alpha * 0.9) and after < error(alpha * 1.1)


def test_calibrate_skips_layers_without_statistics_and_rejects_empty_input() -> None:
    model = _Tiny(PRESETS["xnor"])
    assert calibrate(model, [torch.rand(1, 3, 6, 6)]) == []
    with pytest.raises(DataError, match="at least one"):
        calibrate(_Tiny(BinaryOptions()), [])


def _fp_output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with quantizers_off(model), torch.no_grad():
        return model.eval()(x)


def _layer_io(model: _Tiny, x: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, quantized output) of ``model.body[index]`` in the student's own forward pass."""
    with torch.no_grad():
        h = model.head(x)
        for i, layer in enumerate(model.body):
            if i == index:
                return h, layer(h)
            h = layer(h)
    raise IndexError(index)


def test_median_threshold_is_the_per_channel_median() -> None:
    torch.manual_seed(1)
    model = _Tiny(BinaryOptions())
    x = torch.rand(2, 3, 7, 7)
    calibrate(model, [x], CalibrationOptions(threshold="median"))
    with quantizers_off(model), torch.no_grad():
        inputs = model.head(x)
    rows = inputs.permute(1, 0, 2, 3).reshape(6, -1)
    torch.testing.assert_close(model.body[0].act.beta.detach(), rows.median(dim=1).values)


@pytest.mark.parametrize("correction", ["bias", "affine"])
def test_output_correction_matches_channel_means_of_the_fp_layer(correction: str) -> None:
    """Non-sequential: each layer's quantized output mean per channel equals its FP output mean."""
    torch.manual_seed(2)
    model = _Tiny(BinaryOptions())
    x = torch.rand(3, 3, 9, 9) * 2
    with quantizers_off(model), torch.no_grad():
        fp_in = model.head(x)
        fp_out = model.body[0](fp_in)
    calibrate(model, [x], CalibrationOptions(correction=correction))
    with torch.no_grad():
        quant_out = model.eval().body[0](fp_in)
    torch.testing.assert_close(quant_out.mean(dim=(0, 2, 3)), fp_out.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-4)


def test_bias_correction_on_tokens_matches_the_fp_means() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 8), make_binary(nn.Linear(8, 5), BinaryOptions()))
    x = torch.randn(2, 6, 4)
    target = _fp_output(model, x)
    calibrate(model, [x], CalibrationOptions(correction="bias"))
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(out.mean(dim=(0, 1)), target.mean(dim=(0, 1)), rtol=1e-4, atol=1e-4)


def test_affine_fit_lowers_layer_error_below_bias_only_and_none() -> None:
    torch.manual_seed(4)
    base = _Tiny(BinaryOptions(spatial=False, channel=False))
    x = torch.rand(4, 3, 12, 12)
    errors = {}
    for correction in ("none", "bias", "affine"):
        model = copy.deepcopy(base)
        calibrate(model, [x], CalibrationOptions(correction=correction))
        with quantizers_off(model), torch.no_grad():
            fp_in = model.head(x)
        with torch.no_grad():
            quant = model.eval().body[0](fp_in)
            with quantizers_off(base):
                target = base.eval().body[0](fp_in)
        errors[correction] = (quant - target).square().mean().item()
    assert errors["affine"] < errors["bias"] < errors["none"]


def test_affine_fit_of_a_learned_weight_scale_goes_into_the_scale_and_matches_channel_mean() -> None:
    """The calibration gain lands in ``wbin.log_scale`` (W keeps its FP values) and the calibrated layer
    computes what the ``channel_mean`` layer computes, whose gain went into W."""
    torch.manual_seed(4)
    mean = _Tiny(BinaryOptions())
    learned = _Tiny(BinaryOptions(weight="channel_learned"))
    learned.load_state_dict(mean.state_dict(), strict=False)
    for layer in (learned.body[0], learned.body[2]):
        layer.wbin.start_from(layer.weight)
    weights = [learned.body[i].weight.detach().clone() for i in (0, 2)]
    x = torch.rand(4, 3, 12, 12)
    for model in (mean, learned):
        calibrate(model, [x], CalibrationOptions(correction="affine"))
    assert all(torch.equal(learned.body[i].weight, w) for i, w in zip((0, 2), weights))
    assert not torch.equal(mean.body[0].weight, weights[0])
    with torch.no_grad():
        torch.testing.assert_close(learned.eval()(x), mean.eval()(x), rtol=1e-4, atol=1e-5)


def test_sequential_fit_lowers_the_output_error_against_the_teacher() -> None:
    """With earlier layers binary, only a fit on the student's real inputs can absorb their error."""
    torch.manual_seed(5)
    base = _Tiny(BinaryOptions())
    x = torch.rand(4, 3, 12, 12) * 2
    teacher = _fp_output(copy.deepcopy(base), x)
    errors = {}
    for sequential in (False, True):
        model = copy.deepcopy(base)
        calibrate(model, [x], CalibrationOptions(sequential=sequential, correction="affine", branches="neutral"))
        with torch.no_grad():
            errors[sequential] = (model.eval()(x) - teacher).square().mean().item()
    assert errors[True] < errors[False]


def test_sequential_statistics_are_those_of_the_binary_predecessors_output() -> None:
    torch.manual_seed(6)
    model = _Tiny(BinaryOptions())
    x = torch.rand(2, 3, 8, 8)
    calibrate(model, [x], CalibrationOptions(sequential=True))
    h, out = _layer_io(model.eval(), x, 1)
    h = torch.relu(out)  # body.1 is the ReLU; body.2 sees it
    beta = h.permute(1, 0, 2, 3).reshape(6, -1).mean(dim=1)
    torch.testing.assert_close(model.body[2].act.beta.detach(), beta, rtol=1e-5, atol=1e-6)


def test_neutral_branches_make_every_factor_one_half() -> None:
    model = _Tiny(BinaryOptions())
    calibrate(model, [torch.rand(1, 3, 6, 6)], CalibrationOptions(branches="neutral"))
    x = torch.randn(2, 6, 5, 5)
    layer = model.body[0]
    assert torch.all(layer.spatial(x) == 0.5) and torch.all(layer.channel(x) == 0.5)


def test_calibration_leaves_the_teacher_semantics_of_earlier_targets_alone() -> None:
    """Later layers' targets come from the model as it was on entry, not from fitted W and b."""
    torch.manual_seed(7)
    model = _Tiny(BinaryOptions())
    x = torch.rand(2, 3, 8, 8)
    fitted = copy.deepcopy(model)
    calibrate(fitted, [x], CalibrationOptions(correction="affine"))
    with quantizers_off(model), torch.no_grad():
        fp_in = model.eval().body[1](model.body[0](model.head(x)))
        fp_out = model.body[2](fp_in)
    with torch.no_grad():
        quant = fitted.eval().body[2](fp_in)
    torch.testing.assert_close(quant.mean(dim=(0, 2, 3)), fp_out.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-4)


def test_unknown_calibration_option_is_a_recipe_error() -> None:
    with pytest.raises(RecipeError, match="calibration correction 'scale'"):
        CalibrationOptions(correction="scale")
    with pytest.raises(RecipeError, match="calibration threshold"):
        CalibrationOptions(threshold="mode")


@pytest.mark.slow
def test_calibration_lifts_a_real_imdn_student_far_above_uncalibrated(
    checkpoints: Path, benchmarks: Path, train_data: Path
) -> None:
    from scales_cli import load
    from scales_cli.metrics.datasets import dataset_from_folder
    from scales_cli.metrics.evaluate import evaluate, model_upscaler
    from scales_cli.recipe import load_recipe, rewrite
    from scales_cli.recipe.calibrate import calibrate_student

    desc = load(checkpoints / "IMDN_x4.pth")
    torch.manual_seed(0)
    student, _ = rewrite(desc, load_recipe("cnn"))
    full = dataset_from_folder(benchmarks / "Set5", 4)
    two = type(full)(full.name, full.scale, tuple(p for p in full.pairs if p.name in ("bird", "head")), full.origin)

    def psnr(model: nn.Module) -> float:
        return evaluate(model_upscaler(model, desc.input_range), two).mean_psnr

    before = psnr(copy.deepcopy(student))
    info = calibrate_student(student, train_data / "T91", 4, crop=48, input_range=desc.input_range)
    after = psnr(student)
    assert info.layers == 25 and info.images == 4
    assert after > before + 5.0, (before, after)
def test_presets_follow_the_ablation_ladder() -> None:
    assert preset("scales") == BinaryOptions(act="scales", spatial=True, channel=True, skip=True, batchnorm=False)
    ladder = {name: (PRESETS[name].spatial, PRESETS[name].channel) for name in ("lsf", "lsf-chl", "lsf-spatial", "scales")}
    assert ladder == {"lsf": (False, False), "lsf-chl": (False, True), "lsf-spatial": (True, False), "scales": (True, True)}
    assert all(PRESETS[n].act == "scales" and PRESETS[n].skip for n in ladder)
    assert PRESETS["e2fif"].batchnorm and PRESETS["e2fif"].skip and PRESETS["e2fif"].act == "approxsign"
    assert not PRESETS["xnor"].skip and PRESETS["xnor"].act == "sign"
    assert PRESETS["bibert"].act == "sign" and not PRESETS["bibert"].spatial
    with pytest.raises(RecipeError, match="binary preset"):
        preset("bnn")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_conv_and_linear(name: str) -> None:
    conv = make_binary(nn.Conv2d(4, 4, 3, padding=1), PRESETS[name])
    lin = make_binary(nn.Linear(4, 6), PRESETS[name])
    assert conv(torch.randn(2, 4, 5, 5)).shape == (2, 4, 5, 5)
    assert lin(torch.randn(2, 3, 4)).shape == (2, 3, 6)
    assert conv.bit_widths() == lin.bit_widths() == (1, 1)
