"""SwinIR, HAT and IMDTN: shared Swin pieces, published parameter counts, official state-dict format
(with the attn_mask / relative_position_index buffers), any input size, and the real IMDTN file."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import run_cli
from scales_cli.archs import detect
from scales_cli.loading import load
from scales_cli.archs import hat, imdtn, swinir
from scales_cli.archs._swin import (
    WindowAttention,
    mirror_index,
    overlap_offsets_index,
    pad_to_multiple,
    relative_offsets_index,
    shifted_window_mask,
    window_mask,
    window_partition,
    window_reverse,
)
from scales_cli.binary.protocol import bit_widths

SMALL_SWINIR = {"scale": 3, "embed_dim": 24, "depths": (2,), "num_heads": (2,), "window_size": 8, "mlp_ratio": 2.0,
                "upsampler": "pixelshuffle", "num_feat": 16}
SMALL_HAT = {"scale": 2, "embed_dim": 24, "depths": (2,), "num_heads": (2,), "window_size": 8, "compress_ratio": 3,
             "squeeze_factor": 6, "overlap_ratio": 0.5, "mlp_ratio": 2.0}
SMALL_IMDTN = {"scale": 4, "nf": 16, "num_modules": 2, "depth": 2, "num_heads": 2, "window_size": 6, "mlp_ratio": 2.0}


def _params(model: torch.nn.Module, skip: str | None = None) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if skip is None or skip not in n)


# --- shared Swin pieces -------------------------------------------------------------------------


def test_window_partition_round_trip_and_order():
    x = torch.arange(2 * 8 * 12 * 3, dtype=torch.float32).view(2, 8, 12, 3)
    win = window_partition(x, 4)
    assert win.shape == (2 * 2 * 3, 4, 4, 3)
    assert torch.equal(win[1], x[0, 0:4, 4:8])  # row-major windows of the first image
    assert torch.equal(win[6], x[1, 0:4, 0:4])
    assert torch.equal(window_reverse(win, 4, 8, 12), x)


def test_relative_index_is_the_swin_formula():
    w = 3
    idx = relative_offsets_index(w)
    for i in range(w * w):
        for j in range(w * w):
            (yi, xi), (yj, xj) = divmod(i, w), divmod(j, w)
            assert idx[i, j] == (yi - yj + w - 1) * (2 * w - 1) + (xi - xj + w - 1)


def test_overlap_index_matches_hat_negative_wraparound():
    """HAT indexes with ``(key - query + w - o + 1)`` per axis; negatives wrap to the table's end."""
    w, o = 4, 6
    side = w + o - 1
    idx = overlap_offsets_index(w, o)
    assert idx.shape == (w * w, o * o) and idx.min() >= 0 and idx.max() < side * side
    i, j = 5, 0  # query (1, 1), key (0, 0): offsets (-1 + w - o + 1) = -2 on both axes
    assert idx[i, j] == (-2 * side - 2) % (side * side)


def test_shifted_mask_matches_region_labels():
    h, w, ws, shift = 8, 12, 4, 2

    def region(p: int, size: int) -> int:
        return 0 if p < size - ws else (1 if p < size - shift else 2)

    labels = torch.tensor([[region(r, h) * 3 + region(c, w) for c in range(w)] for r in range(h)], dtype=torch.float32)
    per_window = window_partition(labels.view(1, h, w, 1), ws).view(-1, ws * ws)
    expected = torch.where(per_window[:, :, None] == per_window[:, None, :], 0.0, -100.0)
    assert torch.equal(shifted_window_mask(h, w, ws, shift), expected)
    assert shifted_window_mask(h, w, ws, shift).shape == (6, 16, 16)


def test_pad_to_multiple_matches_official_paddings():
    x = torch.rand(1, 3, 13, 11)
    ref = F.pad(x, (0, 5, 0, 3), mode="reflect")
    assert torch.equal(pad_to_multiple(x, 8), ref)
    # IMDTN: always pad 1..w with flipped copies (edge repeated)
    flip = torch.cat([x, x.flip(2)], 2)[:, :, :18]
    flip = torch.cat([flip, flip.flip(3)], 3)[:, :, :, :12]
    assert torch.equal(pad_to_multiple(x, 6, always=True, mode="symmetric"), flip)
    assert pad_to_multiple(torch.rand(1, 3, 12, 6), 6, always=True, mode="symmetric").shape[-2:] == (18, 12)
    # tiny inputs, where single-step reflect padding would fail
    assert pad_to_multiple(torch.rand(1, 3, 3, 1), 16).shape[-2:] == (16, 16)



def _mirrored_by_steps(x: torch.Tensor, pad: int, dim: int, mode: str) -> torch.Tensor:
    """The padding as first written: append mirrored copies step by step (the specification)."""
    while pad > 0:
        size = x.shape[dim]
        limit = size if mode == "symmetric" else size - 1
        if limit == 0:
            return x.repeat(*[pad + 1 if d == dim % x.dim() else 1 for d in range(x.dim())])
        step = min(pad, limit)
        x = torch.cat([x, x.flip(dim).narrow(dim, 0 if mode == "symmetric" else 1, step)], dim=dim)
        pad -= step
    return x


@pytest.mark.parametrize("mode", ["reflect", "symmetric"])
def test_mirror_gather_equals_stepwise_mirroring(mode: str):
    """One gather of mirror_index rows = mirroring again and again, for pads far beyond the size."""
    for size in (1, 2, 3, 5):
        x = torch.rand(1, 2, size, 3)
        for pad in range(0, 20):
            expected = _mirrored_by_steps(x, pad, 2, mode)
            assert torch.equal(x.index_select(2, mirror_index(size, size + pad, mode)), expected), (size, pad)


def test_traced_padding_and_masks_hold_for_every_size():
    """Traced at one size, the padding (both modes) and the shifted-window mask follow the input's size."""
    def pads(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_to_multiple(x, 8), pad_to_multiple(x, 6, always=True, mode="symmetric")

    def mask(x: torch.Tensor) -> torch.Tensor:
        return shifted_window_mask(x.shape[-2], x.shape[-1], 4, 2)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced_pads = torch.jit.trace(pads, torch.rand(1, 3, 13, 11))
        traced_mask = torch.jit.trace(mask, torch.rand(1, 1, 8, 12))
    for hw in [(1, 1), (3, 2), (8, 9), (19, 23), (40, 44)]:
        x = torch.rand(1, 3, *hw)
        for got, want in zip(traced_pads(x), pads(x), strict=True):
            assert torch.equal(got, want), hw
    for hw in [(4, 4), (8, 12), (16, 8), (20, 24)]:
        assert torch.equal(traced_mask(torch.rand(1, 1, *hw)), window_mask(*hw, 4, 2)), hw
        assert torch.equal(window_mask(*hw, 4, 2), shifted_window_mask(*hw, 4, 2)), hw

def test_window_attention_reports_attention_macs():
    att = WindowAttention(dim=12, window_size=4, num_heads=3)
    x = torch.rand(5, 16, 12)
    y = att(x)
    # B_ * heads * N * N * head_dim * 2
    assert att.extra_macs((x,), y) == 5 * 3 * 16 * 16 * 4 * 2
    assert bit_widths(att) == (32, 32)
    assert "relative_position_index" not in att.state_dict()  # recomputed, not stored


def test_ocab_reports_overlap_macs():
    model = hat.HAT(**SMALL_HAT, conv_scale=0.01)
    ocab = model.layers[0].residual_group.overlap_attn
    x = torch.rand(1, 16 * 16, 24)
    # per query: o*o keys (o = 8 + 4 = 12) in C dims, for q@k^T and attn@v
    assert ocab.extra_macs((x, (16, 16)), None) == 2 * 256 * 144 * 24


# --- published parameter counts -----------------------------------------------------------------

BIAS = "relative_position_bias_table"


@pytest.mark.parametrize("scale, published_k", [(2, 878), (4, 897)])
def test_swinir_lightweight_published_params(scale: int, published_k: int):
    """The SwinIR paper's 878K / 897K leave out the 24 relative-position bias tables (24 * 225 * 6 = 32,400)."""
    model = swinir.SwinIR(**{**swinir.SPEC.examples[0], "scale": scale})
    assert round(_params(model, skip=BIAS) / 1000) == published_k
    assert _params(model) - _params(model, skip=BIAS) == 24 * 225 * 6


def test_swinir_classical_x4_params():
    model = swinir.SwinIR(**next(ex for ex in swinir.SPEC.examples if ex["embed_dim"] == 180))
    assert round(_params(model) / 1e5) / 10 == 11.9  # SwinIR paper: 11.9M


@pytest.mark.parametrize("embed_dim, published_m", [(144, 9.6), (180, 20.8)])  # HAT README: HAT-S 9.6M, HAT 20.8M
def test_hat_published_params(embed_dim: int, published_m: float):
    config = next(ex for ex in hat.SPEC.examples if ex["embed_dim"] == embed_dim and ex["window_size"] == 16)
    model = hat.HAT(**hat.SPEC.defaults, **config)
    assert round(_params(model) / 1e5) / 10 == published_m


# --- detection and the official state-dict format ------------------------------------------------


def _official_format(model: torch.nn.Module, windows: dict[str, tuple[int, int]], train_size: int) -> dict:
    """Our state dict plus the buffers official checkpoints carry, wrapped as BasicSR does."""
    sd = dict(model.state_dict())
    for name, module in model.named_modules():
        if isinstance(module, WindowAttention):
            sd[f"{name}.relative_position_index"] = relative_offsets_index(module.window_size)
            block = name.rsplit(".", 1)[0]
            shift = model.get_submodule(block).shift_size
            if shift:
                sd[f"{block}.attn_mask"] = shifted_window_mask(train_size, train_size, module.window_size, shift)
    for key, (w, o) in windows.items():
        sd[key] = overlap_offsets_index(w, o) if o != w else relative_offsets_index(w)
    return {"params": sd}


@pytest.mark.parametrize(
    "module, config, extra",
    [
        (swinir, SMALL_SWINIR, {}),
        (hat, SMALL_HAT, {"relative_position_index_SA": (8, 8), "relative_position_index_OCA": (8, 12)}),
        (imdtn, SMALL_IMDTN, {}),
    ],
    ids=["swinir", "hat", "imdtn"],
)
def test_official_state_dict_format_loads_strictly(module, config, extra, tmp_path: Path):
    model = module.SPEC.build(**{**module.SPEC.defaults, **config})
    path = tmp_path / "official.pth"
    torch.save(_official_format(model, extra, train_size=48), path)
    assert any(k.endswith("attn_mask") for k in torch.load(path)["params"])
    desc = load(path)
    assert desc.arch == module.SPEC.name
    assert {k: desc.hparams[k] for k in config} == config
    x = torch.rand(1, 3, 13, 11)
    with torch.no_grad():
        assert torch.equal(desc.model(x), model.eval()(x))


def test_hat_and_swinir_are_told_apart():
    hat_sd = hat.HAT(**SMALL_HAT, conv_scale=0.01).state_dict()
    swinir_sd = swinir.SwinIR(**SMALL_SWINIR).state_dict()
    assert not swinir.SPEC.matches(hat_sd)
    assert not hat.SPEC.matches(swinir_sd)
    assert detect(hat_sd).name == "hat" and detect(swinir_sd).name == "swinir"


@pytest.mark.parametrize(
    "module, config",
    [(swinir, SMALL_SWINIR), (hat, SMALL_HAT), (imdtn, SMALL_IMDTN)],
    ids=["swinir", "hat", "imdtn"],
)
@pytest.mark.parametrize("size", [(13, 11), (5, 3), (1, 1), (16, 24)])
def test_any_input_size(module, config, size):
    model = module.SPEC.build(**{**module.SPEC.defaults, **config}).eval()
    with torch.no_grad():
        y = model(torch.rand(2, 3, *size))
    s = config["scale"]
    assert y.shape == (2, 3, size[0] * s, size[1] * s)
    assert torch.isfinite(y).all()


def test_window_padding_crops_back_consistently():
    """Internal padding is the official one: a 13x19 input gives exactly the crop of the output for its
    reflect-padded 16x24 version (which is a window multiple, so not padded again)."""
    model = swinir.SwinIR(**SMALL_SWINIR).eval()
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        assert model(x).shape == (1, 3, 48, 72)
        padded_input = model(F.pad(x[..., :13, :19], (0, 5, 0, 3), mode="reflect"))[..., : 13 * 3, : 19 * 3]
        cropped = model(x[..., :13, :19])
    assert torch.allclose(padded_input, cropped, atol=1e-6)


# --- the real IMDTN file --------------------------------------------------------------------------


def test_imdtn_real_checkpoint(checkpoints: Path, benchmarks: Path):
    desc = load(checkpoints / "IMDTN_x4.pth")
    assert (desc.arch, desc.scale, desc.params) == ("imdtn", 4, 371_532)
    assert desc.hparams["num_modules"] == 3 and desc.hparams["window_size"] == 6 and desc.hparams["nf"] == 64
    assert desc.regions["head"] == ("fea_conv",) and desc.regions["tail"] == ("upsampler",)

    def rgb(p: Path) -> torch.Tensor:
        return torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]

    lr = rgb(benchmarks / "Set5" / "LR_bicubic" / "X4" / "babyx4.png")[..., 40:88, 40:88]
    hr = rgb(benchmarks / "Set5" / "HR" / "baby.png")[..., 160:352, 160:352]
    with torch.no_grad():
        sr = desc.model(lr).clamp(0, 1)
    bic = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)

    def psnr(a: torch.Tensor) -> float:
        return float(10 * torch.log10(1 / ((a - hr) ** 2).mean()))

    assert (sr - bic).abs().mean() < 0.02  # close to bicubic ...
    assert psnr(sr) > psnr(bic) + 1.0  # ... and clearly better (measured: 34.5 vs 32.2 dB)


def test_imdtn_inspect_json(checkpoints: Path):
    result = run_cli("inspect", checkpoints / "IMDTN_x4.pth", "--json")
    assert result.code == 0, result.err
    info = json.loads(result.out)
    assert (info["arch"], info["scale"], info["params"]) == ("imdtn", 4, 371_532)
