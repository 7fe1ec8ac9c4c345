"""EDSR (EDSR-PyTorch and BasicSR layouts), RDN and RCAN: published sizes, detection among every
registered architecture, hyper-parameter recovery at other configurations, non-inferable options,
regions, and a forward pass with hand-set weights whose exact output is known (nearest upsampling).

No official weights of this family are in ../shared, so everything runs on random or constructed weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import run_cli
from scales_cli.archs import all_specs
from scales_cli.loading import load
from scales_cli.archs._registry import spec_by_name
from scales_cli.archs.edsr import EDSR, EDSRBasicSR, MeanShift
from scales_cli.archs.rcan import RCAN
from scales_cli.archs.rdn import RDN
from scales_cli.errors import DetectionError


def _save(model: nn.Module, tmp_path: Path, name: str = "w.pth") -> Path:
    path = tmp_path / name
    torch.save(model.state_dict(), path)
    return path


def _trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _total(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------ published sizes


def test_edsr_baseline_published_trainable_params():
    """EDSR baseline x4 (16 blocks, 64 features): 1,517,571 trainable; the 2 frozen mean shifts add 24."""
    model = EDSR(scale=4, n_resblocks=16, n_feats=64)
    assert _trainable(model) == 1_517_571
    assert _total(model) == 1_517_571 + 2 * (3 * 3 + 3)
    assert _trainable(EDSRBasicSR(scale=4, num_feat=64, num_block=16)) == 1_517_571


@pytest.mark.parametrize(
    ("build", "millions"),
    [
        (lambda: EDSR(scale=4, n_resblocks=32, n_feats=256, res_scale=0.1), 43.1),
        (lambda: EDSRBasicSR(scale=4, num_feat=256, num_block=32, res_scale=0.1), 43.1),
        (lambda: RDN(scale=4, G0=64, D=16, C=8, G=64), 22.3),
        (lambda: RCAN(scale=4, n_resgroups=10, n_resblocks=20, n_feats=64, reduction=16), 15.6),
    ],
    ids=["edsr-x4", "edsr_basicsr-L-x4", "rdn-x4", "rcan-x4"],
)
def test_published_param_counts(build, millions):
    assert round(_trainable(build()) / 1e6, 1) == millions


# ------------------------------------------------------------------ detection and inference


FAMILY = ("edsr", "edsr_basicsr", "rdn", "rcan")


def _family_examples():
    for name in FAMILY:
        spec = spec_by_name(name)
        assert spec is not None, f"{name} not registered"
        for i, ex in enumerate(spec.examples):
            yield pytest.param(spec, dict(ex), id=f"{name}-{i}")


def _meta_state_dict(build, **config) -> dict[str, torch.Tensor]:
    """Keys and shapes without allocating (detection and ``infer`` read nothing else)."""
    with torch.device("meta"):
        return build(**config).state_dict()


@pytest.mark.parametrize(("spec", "config"), list(_family_examples()))
def test_exactly_one_registered_spec_claims_each_example(spec, config):
    """Unambiguous across the whole registry, not only first-match: no other spec accepts these keys."""
    sd = _meta_state_dict(spec.build, **{**spec.defaults, **config})
    claimed = [s.name for s in all_specs() if s.matches(sd)]
    assert claimed == [spec.name]


GENERALISATION = [
    ("edsr", EDSR, {"scale": 8, "n_resblocks": 3, "n_feats": 24}),
    ("edsr", EDSR, {"scale": 3, "n_resblocks": 5, "n_feats": 40}),
    ("edsr_basicsr", EDSRBasicSR, {"scale": 3, "num_feat": 32, "num_block": 4}),
    ("edsr_basicsr", EDSRBasicSR, {"scale": 8, "num_feat": 16, "num_block": 2}),
    ("rcan", RCAN, {"scale": 3, "n_resgroups": 3, "n_resblocks": 2, "n_feats": 48, "reduction": 4}),
    ("rcan", RCAN, {"scale": 8, "n_resgroups": 1, "n_resblocks": 1, "n_feats": 16, "reduction": 16}),
    ("rdn", RDN, {"scale": 3, "G0": 24, "D": 4, "C": 3, "G": 12, "kernel_size": 3}),
    ("rdn", RDN, {"scale": 4, "G0": 16, "D": 2, "C": 2, "G": 8, "kernel_size": 5}),
]


@pytest.mark.parametrize(("name", "cls", "config"), GENERALISATION, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(GENERALISATION)])
def test_hparams_recovered_at_other_configs(name, cls, config, tmp_path):
    torch.manual_seed(0)
    model = cls(**config)
    desc = load(_save(model, tmp_path))
    assert desc.arch == name
    assert {k: desc.hparams[k] for k in config} == config
    assert desc.params == _total(model)
    x = torch.rand(1, 3, 7, 9) * desc.input_range
    with torch.no_grad():
        assert desc.model(x).shape == (1, 3, 7 * config["scale"], 9 * config["scale"])


def test_input_range_read_from_mean_shift(tmp_path):
    """A model trained with rgb_range=1 carries it in its sub_mean bias (-rgb_range * mean)."""
    for cls, kw in ((EDSR, {"n_resblocks": 2, "n_feats": 16}), (RCAN, {"n_resgroups": 1, "n_resblocks": 1, "n_feats": 16})):
        desc = load(_save(cls(scale=2, input_range=1.0, **kw), tmp_path))
        assert desc.input_range == 1.0
        assert load(_save(cls(scale=2, **kw), tmp_path)).input_range == 255.0


def test_res_scale_heuristic_default_and_override(tmp_path):
    for name, build, config in (
        ("edsr", EDSR, {"scale": 2, "n_resblocks": 32, "n_feats": 256}),
        ("edsr_basicsr", EDSRBasicSR, {"scale": 2, "num_feat": 256, "num_block": 32}),
    ):
        sd = _meta_state_dict(build, **config)
        if name == "edsr":  # its input range is read from mean-shift values, which meta tensors lack
            sd.update({f"sub_mean.{k}": v for k, v in MeanShift(255.0, sign=-1).state_dict().items()})
        inferred = spec_by_name(name).infer(sd)
        assert inferred["res_scale"] == 0.1  # the official template value for the 32 x 256 paper model
    small = _save(EDSR(scale=2, n_resblocks=2, n_feats=16), tmp_path)
    assert load(small).hparams["res_scale"] == 1.0
    overridden = load(small, arch_opts={"res_scale": 0.5})
    assert overridden.hparams["res_scale"] == 0.5
    assert all(b.res_scale == 0.5 for b in list(overridden.model.body)[:-1])


def test_res_scale_zero_makes_blocks_identity():
    """res_scale multiplies only the residual branch: at 0 the block weights cannot change the output."""
    torch.manual_seed(0)
    a = EDSR(scale=2, n_resblocks=2, n_feats=8, res_scale=0.0)
    b = EDSR(scale=2, n_resblocks=2, n_feats=8, res_scale=0.0)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        for p in b.body[0].parameters():
            p.normal_()
        x = torch.rand(1, 3, 6, 6) * 255
        assert torch.equal(a(x), b(x))


def test_wrong_upsampler_shape_is_a_detection_error(tmp_path):
    sd = EDSR(scale=2, n_resblocks=1, n_feats=8).state_dict()
    sd["tail.0.0.weight"] = torch.zeros(8 * 5, 8, 3, 3)  # 5 is not r^2
    sd["tail.0.0.bias"] = torch.zeros(8 * 5)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(DetectionError, match="edsr"):
        load(path)


# ------------------------------------------------------------------ regions


@pytest.mark.parametrize(
    ("model", "regions"),
    [
        (EDSR(scale=2, n_resblocks=1, n_feats=8), {"head": ("sub_mean", "head"), "body": ("body",), "tail": ("add_mean", "tail")}),
        (
            EDSRBasicSR(scale=2, num_feat=8, num_block=1),
            {"head": ("conv_first",), "body": ("body", "conv_after_body"), "tail": ("upsample", "conv_last")},
        ),
        (
            RCAN(scale=2, n_resgroups=1, n_resblocks=1, n_feats=16),
            {"head": ("sub_mean", "head"), "body": ("body",), "tail": ("tail", "add_mean")},
        ),
        (RDN(scale=2, G0=8, D=1, C=1, G=4), {"head": ("SFENet1",), "body": ("SFENet2", "RDBs", "GFF"), "tail": ("UPNet",)}),
    ],
    ids=["edsr", "edsr_basicsr", "rcan", "rdn"],
)
def test_region_split(model, regions, tmp_path):
    desc = load(_save(model, tmp_path))
    assert {r: tuple(sorted(v)) for r, v in desc.regions.items()} == {r: tuple(sorted(v)) for r, v in regions.items()}
    convs = [p for p, m in desc.model.named_modules() if isinstance(m, nn.Conv2d)]
    last_conv, first_conv = convs[-1], next(p for p in convs if "mean" not in p)
    assert desc.region_of(first_conv) == "head"
    assert desc.region_of(last_conv) == "tail"


# ------------------------------------------------------------------ forward with known output


def _identity_conv(conv: nn.Conv2d, channels: int) -> None:
    """Centre tap copies input channel c to output channel c for c < channels."""
    k = conv.kernel_size[0] // 2
    for c in range(channels):
        conv.weight[c, c, k, k] = 1.0


def _replicate_conv(conv: nn.Conv2d, channels: int, r: int) -> None:
    """Conv before PixelShuffle(r) that writes channel c into all r^2 sub-pixels: nearest upsampling."""
    k = conv.kernel_size[0] // 2
    for c in range(channels):
        conv.weight[c * r * r : (c + 1) * r * r, c, k, k] = 1.0


def _zero_except_mean_shifts(model: nn.Module) -> None:
    for name, p in model.named_parameters():
        if "mean" not in name.split(".")[0]:
            p.zero_()


def _nearest_edsr_like(model: nn.Module, head: nn.Conv2d, upsampler: nn.Sequential, last: nn.Conv2d) -> None:
    """With every body weight zero the global residual passes the head features straight on."""
    _zero_except_mean_shifts(model)
    _identity_conv(head, 3)
    for i in range(0, len(upsampler), 2):
        _replicate_conv(upsampler[i], 3, upsampler[i + 1].upscale_factor)
    _identity_conv(last, 3)


def _nearest_rdn(model: RDN) -> None:
    _zero_except_mean_shifts(model)
    _identity_conv(model.SFENet1, 3)  # GFF is zero, so UPNet sees the shallow feature alone
    for i in range(0, len(model.UPNet) - 1, 2):
        _replicate_conv(model.UPNet[i], 3, model.UPNet[i + 1].upscale_factor)
    _identity_conv(model.UPNet[-1], 3)


@pytest.mark.parametrize(
    "make",
    [
        lambda: (EDSR(scale=2, n_resblocks=2, n_feats=8), "edsr"),
        lambda: (EDSR(scale=3, n_resblocks=2, n_feats=8, res_scale=0.1), "edsr"),
        lambda: (EDSR(scale=4, n_resblocks=1, n_feats=8), "edsr"),
        lambda: (EDSRBasicSR(scale=4, num_feat=8, num_block=2), "edsr_basicsr"),
        lambda: (RCAN(scale=4, n_resgroups=2, n_resblocks=2, n_feats=16, reduction=4), "rcan"),
        lambda: (RDN(scale=3, G0=8, D=2, C=2, G=4), "rdn"),
        lambda: (RDN(scale=4, G0=8, D=2, C=2, G=4), "rdn"),
    ],
    ids=["edsr-x2", "edsr-x3", "edsr-x4", "edsr_basicsr-x4", "rcan-x4", "rdn-x3", "rdn-x4"],
)
def test_forward_is_nearest_upsampling_with_constructed_weights(make, tmp_path):
    """Mean shifts, global residual, pixel-shuffle order and ranges all have to be right for this to hold."""
    model, name = make()
    with torch.no_grad():
        if isinstance(model, RDN):
            _nearest_rdn(model)
        elif isinstance(model, EDSRBasicSR):
            _nearest_edsr_like(model, model.conv_first, model.upsample, model.conv_last)
        else:
            _nearest_edsr_like(model, model.head[0], model.tail[0], model.tail[1])
    desc = load(_save(model, tmp_path))
    assert desc.arch == name
    torch.manual_seed(1)
    x = torch.rand(1, 3, 5, 7) * desc.input_range
    with torch.no_grad():
        y = desc.model(x)
    expected = x.repeat_interleave(desc.scale, 2).repeat_interleave(desc.scale, 3)
    torch.testing.assert_close(y, expected, atol=1e-4 * desc.input_range, rtol=0)


# ------------------------------------------------------------------ CLI


def test_cli_inspect_json(tmp_path):
    path = _save(RCAN(scale=3, n_resgroups=2, n_resblocks=2, n_feats=16, reduction=4), tmp_path)
    result = run_cli("inspect", path, "--json")
    assert result.code == 0, result.err
    info = json.loads(result.out)
    assert (info["arch"], info["scale"], info["input_range"]) == ("rcan", 3, 255.0)
    assert info["hparams"]["n_resgroups"] == 2 and info["hparams"]["reduction"] == 4
