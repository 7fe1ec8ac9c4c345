"""Calibration sets beta/alpha from FP statistics; presets resolve to the documented options."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from scales_cli.binary import PRESETS, BinaryConv2d, BinaryLinear, BinaryOptions, calibrate, make_binary, preset
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
    assert model.training and model.body[0].quantize  # modes restored


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
