"""IMDN, RFDN, RLFN, BSRN and PAN: real checkpoints load by detection alone with the published
parameter counts and beat bicubic on a Set5 crop; other widths/scales are recognised and told
apart from every other registered architecture."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import run_cli
from scales_cli.archs import all_specs, detect
from scales_cli.loading import load
from scales_cli.archs._distill import esa_max_pool
from scales_cli.archs._registry import spec_by_name
from scales_cli.errors import DetectionError

# (file, arch, scale, learnable params as published: IMDN README/paper, NTIRE 2022 ESR report, PAN README)
REAL = [
    ("IMDN_x2.pth", "imdn", 2, 694_404),
    ("IMDN_x3.pth", "imdn", 3, 703_059),
    ("IMDN_x4.pth", "imdn", 4, 715_176),
    ("RFDN_x4.pth", "rfdn", 4, 433_448),
    ("RLFN_x4.pth", "rlfn", 4, 317_218),
    ("BSRN_x4.pth", "bsrn", 4, 156_288),
    ("PAN_x4.pth", "pan", 4, 272_419),
]
MINE = ("imdn", "rfdn", "rlfn", "bsrn", "pan")


@pytest.mark.parametrize(("name", "arch", "scale", "params"), REAL, ids=[r[0] for r in REAL])
def test_real_checkpoint_detected(checkpoints: Path, name: str, arch: str, scale: int, params: int):
    desc = load(checkpoints / name)
    assert (desc.arch, desc.scale, desc.params) == (arch, scale, params)
    claimed = [s.name for s in all_specs() if s.matches(desc.model.state_dict())]
    assert claimed == [arch], f"{name} is claimed by {claimed}"


def test_cli_inspect_json(checkpoints: Path):
    result = run_cli("inspect", checkpoints / "RLFN_x4.pth", "--json")
    assert result.code == 0, result.err
    info = json.loads(result.out)
    assert (info["arch"], info["scale"], info["params"], info["input_range"]) == ("rlfn", 4, 317_218, 255.0)
    assert info["hparams"]["mf"] == 48 and info["hparams"]["esa_channels"] == 16
    assert info["regions"]["tail"] == ["upsampler"]


def _rgb(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


def _psnr(a: torch.Tensor, b: torch.Tensor, shave: int) -> float:
    diff = (a.clamp(0, 1) - b)[..., shave:-shave, shave:-shave]
    return -10 * math.log10(float(diff.pow(2).mean()))


@pytest.mark.slow
@pytest.mark.parametrize(("name", "arch", "scale", "params"), REAL, ids=[r[0] for r in REAL])
def test_real_checkpoint_beats_bicubic(checkpoints: Path, benchmarks: Path, name, arch, scale, params):
    """A 48x48 crop of Set5 baby: the network's RGB PSNR must clear bicubic by a margin (SR gains 1-3 dB)."""
    lr_full = _rgb(benchmarks / "Set5" / "LR_bicubic" / f"X{scale}" / f"babyx{scale}.png")
    hr_full = _rgb(benchmarks / "Set5" / "HR" / "baby.png")
    top, size = 40, 48
    lr = lr_full[..., top : top + size, top : top + size]
    hr = hr_full[..., top * scale : (top + size) * scale, top * scale : (top + size) * scale]
    desc = load(checkpoints / name)
    with torch.no_grad():
        sr = desc.model(lr * desc.input_range) / desc.input_range
    bicubic = F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)
    assert sr.shape == hr.shape
    assert _psnr(sr, hr, scale) > _psnr(bicubic, hr, scale) + 0.5


# Generalisation: every declared example (official and other scales/widths) plus a few more.
EXTRA = [
    ("imdn", {"scale": 2, "in_nc": 1, "nf": 48, "num_modules": 2, "out_nc": 1}),
    ("rfdn", {"scale": 3, "in_nc": 3, "nf": 32, "num_modules": 3, "out_nc": 3, "esa_channels": 8}),
    ("rlfn", {"scale": 3, "in_nc": 3, "nf": 32, "mf": 32, "num_blocks": 3, "out_nc": 3, "esa_channels": 8}),
    ("bsrn", {"scale": 3, "num_in_ch": 3, "num_feat": 32, "num_block": 3, "num_out_ch": 3, "esa_channels": 8}),
    ("pan", {"scale": 4, "in_nc": 3, "out_nc": 3, "nf": 32, "unf": 16, "nb": 8}),
]
GENERAL = [(a, dict(ex)) for a in MINE for ex in spec_by_name(a).examples] + EXTRA


@pytest.mark.parametrize(("arch", "config"), GENERAL, ids=[f"{a}-x{c['scale']}-{i}" for i, (a, c) in enumerate(GENERAL)])
def test_generalisation_roundtrip(arch: str, config: dict, tmp_path: Path):
    spec = spec_by_name(arch)
    torch.manual_seed(0)
    model = spec.build(**{**spec.defaults, **config})
    sd = model.state_dict()
    claimed = [s.name for s in all_specs() if s.matches(sd)]
    assert claimed == [arch], f"{arch} {config} is claimed by {claimed}"
    torch.save(sd, tmp_path / "w.pth")
    not_inferable = {k: v for k, v in config.items() if k in spec.defaults}  # PAN x3: scale
    desc = load(tmp_path / "w.pth", arch_opts=not_inferable)
    assert {k: desc.hparams[k] for k in config} == config
    x = torch.rand(1, config.get("in_nc", config.get("num_in_ch")), 9, 16)
    with torch.no_grad():
        y = desc.model(x)
    assert y.shape[-2:] == (9 * config["scale"], 16 * config["scale"])


def test_pan_x3_needs_scale_option(tmp_path: Path):
    """x2 and x3 PAN are shape-identical: detection says x2 unless told; scale=3 rebuilds the same tensors."""
    spec = spec_by_name("pan")
    model = spec.build(scale=3, in_nc=3, out_nc=3, nf=16, unf=8, nb=2)
    torch.save(model.state_dict(), tmp_path / "pan3.pth")
    assert load(tmp_path / "pan3.pth").scale == 2
    desc = load(tmp_path / "pan3.pth", arch_opts={"scale": 3})
    with torch.no_grad():
        x = torch.rand(1, 3, 7, 5)
        assert torch.equal(desc.model(x), model(x))
        assert desc.model(x).shape[-2:] == (21, 15)


def test_pan_x4_refuses_wrong_scale(checkpoints: Path):
    with pytest.raises(DetectionError, match="scale=3 .*shapes say scale=4"):
        load(checkpoints / "PAN_x4.pth", arch_opts={"scale": 3})


def test_esa_pool_matches_official_and_handles_small_maps():
    x = torch.randn(1, 4, 20, 17)
    assert torch.equal(esa_max_pool(x), F.max_pool2d(x, kernel_size=7, stride=3))
    small = torch.randn(1, 4, 3, 5)
    assert torch.equal(esa_max_pool(small), small.amax(dim=(2, 3), keepdim=True))


def test_esa_pool_equals_the_shrunk_window_bit_for_bit():
    """The -inf padding that makes the exported graph size-independent changes nothing in torch: every
    map of 1..20 x 1..20 pools and back-propagates exactly as the shrunk window ``min(7, side)`` did.
    Small integers make ties common: -inf padding never takes the gradient of a tied maximum."""
    torch.manual_seed(0)
    for h in range(1, 21):
        for w in range(1, 21):
            x = torch.randint(-3, 4, (2, 3, h, w)).float()
            x[0, 0, 0, 0] = float("-inf")  # a map's own -inf still pools as before
            old_in, new_in = x.clone().requires_grad_(), x.clone().requires_grad_()
            old = F.max_pool2d(old_in, kernel_size=(min(7, h), min(7, w)), stride=3)
            new = esa_max_pool(new_in)
            assert new.shape == old.shape and torch.equal(new, old), (h, w)
            upstream = torch.randn_like(old)
            old.backward(upstream)
            new.backward(upstream)
            assert torch.equal(new_in.grad, old_in.grad), (h, w)


@pytest.mark.parametrize("arch", ["rfdn", "rlfn", "bsrn"])
def test_esa_models_accept_tiny_inputs(arch: str):
    spec = spec_by_name(arch)
    model = spec.build(**{**spec.defaults, **spec.examples[0]}).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, 4, 6))
    assert y.shape[-2:] == (16, 24)


def test_rfdn_and_rlfn_are_not_confused():
    rfdn = spec_by_name("rfdn").build(scale=4, in_nc=3, nf=16, num_modules=2, out_nc=3, esa_channels=4).state_dict()
    rlfn = spec_by_name("rlfn").build(scale=4, in_nc=3, nf=16, mf=16, num_blocks=2, out_nc=3, esa_channels=4)
    assert detect(rfdn).name == "rfdn"
    assert detect(rlfn.state_dict()).name == "rlfn"
    bsrn = spec_by_name("bsrn").build(scale=2, num_in_ch=3, num_feat=16, num_block=2, num_out_ch=3, esa_channels=4)
    assert not spec_by_name("rfdn").matches(bsrn.state_dict())  # same c1_d names, Linear shapes
