"""The layers and shape readers several architecture families share (``archs._layers``, ``archs._shapes``)."""

from __future__ import annotations

import pytest
import torch

from scales_cli.archs._layers import MeanShift, PixelShuffleUpsampler, pixel_shuffle_steps
from scales_cli.archs._shapes import seq_len, upsampler_scale


@pytest.mark.parametrize(("scale", "steps"), [(2, [2]), (3, [3]), (4, [2, 2]), (8, [2, 2, 2])])
def test_pixel_shuffle_steps(scale: int, steps: list[int]):
    assert pixel_shuffle_steps(scale) == steps


@pytest.mark.parametrize("scale", [0, 1, 5, 6, 9])
def test_pixel_shuffle_steps_rejects_other_scales(scale: int):
    with pytest.raises(ValueError, match=f"scale {scale}"):
        pixel_shuffle_steps(scale)


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_upsampler_scale_reads_back_what_was_built(scale: int):
    """Built -> state dict -> scale: the round trip every EDSR/RCAN/SwinIR/HAT/CARN-M infer relies on."""
    up = PixelShuffleUpsampler(scale, num_feat=4)
    sd = {f"tail.0.{k}": v for k, v in up.state_dict().items()}
    assert upsampler_scale(sd, "tail.0.", 4) == scale
    assert up(torch.zeros(1, 4, 3, 5)).shape == (1, 4, 3 * scale, 5 * scale)


def test_upsampler_scale_without_convs_is_an_error():
    with pytest.raises(ValueError, match="no upsampler convs"):
        upsampler_scale({"head.0.weight": torch.zeros(4, 3, 3, 3)}, "tail.0.", 4)


def test_seq_len_counts_to_the_largest_index():
    sd = {"body.0.w": torch.zeros(1), "body.3.w": torch.zeros(1), "bodyx.9.w": torch.zeros(1)}
    assert seq_len(sd, "body.") == 4
    assert seq_len(sd, "head.") == 0


def test_mean_shift_round_trip():
    """``add_mean(sub_mean(x)) == x`` and neither is trainable."""
    sub, add = MeanShift(255.0, sign=-1), MeanShift(255.0, sign=1)
    x = torch.rand(1, 3, 4, 4) * 255
    assert torch.allclose(add(sub(x)), x, atol=1e-4)
    assert not any(p.requires_grad for p in (*sub.parameters(), *add.parameters()))
