"""Tiled inference: the grid covers the image, the blend weights sum to one, memory stays in bands,
and away from seams (more than the receptive-field radius from interior tile edges) the tiled output
equals the untiled one, for a CNN and for a windowed transformer."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from scales_cli.loading import load
from scales_cli.archs._registry import spec_by_name
from scales_cli.errors import ScalesError
from scales_cli.tiling import (
    AUTO_OVERLAP,
    AUTO_TILE,
    TilePlan,
    blend_window,
    iter_tiled_bands,
    plan_tiles,
    tile_spans,
    upscale_tiled,
    window_alignment,
)


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "align"),
    [(100, 32, 8, 1), (100, 32, 8, 8), (33, 32, 8, 1), (20, 32, 8, 1), (257, 64, 16, 4), (1000, 256, 16, 1)],
)
def test_spans_cover_with_overlap_on_the_grid(length: int, tile: int, overlap: int, align: int):
    spans = tile_spans(length, tile, overlap, align)
    assert spans[0][0] == 0 and spans[-1][1] == length
    for (a0, b0), (a1, b1) in zip(spans, spans[1:]):
        assert a0 < a1 and b0 <= b1
        assert b0 - a1 >= min(overlap, length - a1), "neighbours must overlap by at least `overlap`"
    for a, b in spans:
        assert a % align == 0
        assert b - a <= tile + align - 1


@pytest.mark.parametrize("scale", [1, 3])
def test_blend_weights_sum_to_one(scale: int):
    """Where at most two tiles meet the raised-cosine ramps are a partition of unity."""
    spans = tile_spans(100, 32, 8)
    assert all(b0 <= a2 for (_, b0), (a2, _) in zip(spans, spans[2:])), "no pixel in three tiles"
    total = torch.zeros(100 * scale)
    for i, (a, b) in enumerate(spans):
        w = blend_window(spans, i, scale)
        assert w.numel() == scale * (b - a) and (w > 0).all()
        total[scale * a: scale * b] += w
    torch.testing.assert_close(total, torch.ones_like(total))


def test_plan_picks_tiles_for_large_images_and_respects_windows():
    assert plan_tiles(300, 400, None, None) == TilePlan(tile=400, overlap=0)  # small: one tile
    assert plan_tiles(3000, 4000, None, None) == TilePlan(AUTO_TILE, AUTO_OVERLAP)
    assert plan_tiles(3000, 4000, 0, None).tile == 4000  # --tile 0: never tile
    assert plan_tiles(3000, 4000, 100, 10, align=8) == TilePlan(104, 16, 8)
    with pytest.raises(ScalesError, match="overlap"):
        plan_tiles(3000, 4000, 64, 64)
    with pytest.raises(ScalesError, match="window"):
        TilePlan(tile=30, overlap=8, align=8)


def _shuffle_net(scale: int = 2) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale)
    ).eval()


def test_one_tile_is_the_plain_forward():
    net, x = _shuffle_net(), torch.rand(1, 3, 37, 29)
    with torch.inference_mode():
        expected = net(x)
    assert torch.equal(upscale_tiled(net, x, 2, tile=64, overlap=0), expected)


def test_bands_bound_memory_and_arrive_in_order():
    """Only one band of output rows (about a tile high) exists at a time; bands tile the output exactly."""
    net, x, scale = _shuffle_net(), torch.rand(1, 3, 90, 70), 2
    plan = TilePlan(tile=24, overlap=6)
    calls: list[tuple[int, int]] = []
    next_row = 0
    for first, band in iter_tiled_bands(net, x, scale, plan, on_tile=lambda d, t: calls.append((d, t))):
        assert first == next_row and band.shape[0] == 3 and band.shape[2] == scale * 70
        assert band.shape[1] <= scale * plan.tile
        next_row += band.shape[1]
    assert next_row == scale * 90
    n_tiles = len(tile_spans(90, 24, 6)) * len(tile_spans(70, 24, 6))
    assert calls[-1] == (n_tiles, n_tiles) and len(calls) == n_tiles


def test_wrong_output_size_is_reported():
    with pytest.raises(ScalesError, match="expected"):
        upscale_tiled(_shuffle_net(2), torch.rand(1, 3, 40, 40), 3, tile=16, overlap=4)


def _exact_mask(height: int, width: int, tile: int, overlap: int, align: int, radius: int, scale: int) -> torch.Tensor:
    """Output pixels more than ``radius`` LR px from every interior edge of every tile covering them."""

    def axis(length: int) -> torch.Tensor:
        ok = torch.ones(length, dtype=torch.bool)
        p = torch.arange(length)
        for a, b in tile_spans(length, tile, overlap, align):
            inside = (p >= a) & (p < b)
            near = torch.zeros(length, dtype=torch.bool)
            if a > 0:
                near |= p - a < radius
            if b < length:
                near |= b - 1 - p < radius
            ok &= ~(inside & near)
        return ok.repeat_interleave(scale)

    return axis(height)[:, None] & axis(width)[None, :]


def _check_away_from_seams(model: nn.Module, x: torch.Tensor, scale: int, tile: int, overlap: int, radius: int):
    align = window_alignment(model)
    with torch.inference_mode():
        full = model(x)
    tiled = upscale_tiled(model, x, scale, tile, overlap)
    mask = _exact_mask(x.shape[-2], x.shape[-1], tile, overlap, align, radius, scale)
    assert mask.float().mean() > 0.25, "test geometry leaves too few pixels away from seams"
    diff = (full - tiled).abs()[0].amax(0)
    assert diff[mask].max() <= 1e-5
    assert diff[~mask].max() > 1e-5, "tiles see zero padding at their edges: the seam rows must differ a little"
    assert diff.max() < 0.05 * full.abs().max(), "blending keeps the seams close to the untiled output"


def test_cnn_tiled_equals_untiled_away_from_seams():
    """CARN-M (random weights): receptive radius ≤ 1 (entry) + 3 blocks × 3 uses × 2 convs (18)
    + one 3x3 conv at each of x1, x2, x4 resolution (≤ 3) = 22 LR px."""
    spec = spec_by_name("carn-m")
    assert spec is not None
    torch.manual_seed(0)
    model = spec.build(**{**spec.defaults, **spec.examples[0], "num_feat": 16}).eval()  # narrow: fast, same depth
    scale = int(spec.examples[0]["scale"])
    _check_away_from_seams(model, torch.rand(1, 3, 96, 80), scale, tile=64, overlap=24, radius=22)


def test_windowed_transformer_tiled_equals_untiled_away_from_seams():
    """A small SwinIR (window 4, two Swin blocks): attention mixes a token with its window, at most
    window−1 px away, per block (2·3); convs: first, RSTB's, after-body, upsample (4) → radius 10.
    The image sides (93, 86) are not multiples of the window: the last tiles end on the image's end,
    so the model reflect-pads them exactly as it pads the whole image."""
    spec = spec_by_name("swinir")
    assert spec is not None
    torch.manual_seed(0)
    model = spec.build(
        scale=2, embed_dim=12, depths=(2,), num_heads=(2,), window_size=4, mlp_ratio=2.0,
        upsampler="pixelshuffledirect", img_range=1.0,
    ).eval()
    assert window_alignment(model) == 4
    _check_away_from_seams(model, torch.rand(1, 3, 93, 86), 2, tile=48, overlap=24, radius=10)


def test_global_statistics_make_imdn_close_not_equal(checkpoints: Path):
    """IMDN's contrast-aware channel attention pools mean/std over the whole map, so a tile sees other
    statistics than the image: tiled output is near (PSNR well above 40 dB), not equal."""
    desc = load(checkpoints / "IMDN_x4.pth")
    torch.manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 10), size=(60, 50), mode="bicubic").clamp(0, 1)
    with torch.inference_mode():
        full = desc.model(x)
    tiled = upscale_tiled(desc.model, x, desc.scale, tile=32, overlap=8)
    mse = (full.clamp(0, 1) - tiled.clamp(0, 1)).pow(2).mean().item()
    assert mse > 0 and 10 * math.log10(1 / mse) > 40
