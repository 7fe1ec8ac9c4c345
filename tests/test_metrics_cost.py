"""Cost counter: formulas per layer type, FP/binary split via bit_widths(), extra_macs, real models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from scales_cli.metrics.cost import CONVENTION, count_cost


class _FakeBinaryConv(nn.Conv2d):
    """A conv that says it is 1-bit: its weight is binary storage, its MACs binary ops."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.alpha = nn.Parameter(torch.ones(1))  # a direct FP side parameter

    def bit_widths(self) -> tuple[int, int]:
        return (1, 1)


class _Attention(nn.Module):
    """Window attention stand-in: q @ k^T and attn @ v are matmuls, declared through extra_macs."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return (q @ k.transpose(-2, -1)).softmax(-1) @ v

    def extra_macs(self, inputs: tuple, output: torch.Tensor) -> int:
        b, n, c = inputs[0].shape
        return 2 * b * n * n * c


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.body = _FakeBinaryConv(8, 8, 3, padding=1, bias=True)
        self.up = nn.ConvTranspose2d(8, 3, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.body(self.body(self.head(x))))  # body called twice: counted twice


def test_conv_linear_transpose_formulas_and_split():
    report = count_cost(_Net(), input_size=(5, 4))
    px = 5 * 4
    layers = {layer.name: layer for layer in report.layers}
    assert layers["head"].macs_fp == px * 8 * 3 * 9 and layers["head"].params_fp == 8 * 27 + 8
    body = layers["body"]
    assert (body.calls, body.macs_binary, body.macs_fp) == (2, 2 * px * 8 * 8 * 9, 0)
    assert (body.params_binary, body.params_fp) == (8 * 8 * 9, 8 + 1)  # weight binary; bias, alpha FP
    assert layers["up"].macs_fp == px * 8 * 3 * 4  # per input element: C_out/groups * k^2
    assert report.output_size == (10, 8) and report.input_size == (5, 4)
    assert report.params == report.params_fp + report.params_binary / 32
    assert report.ops == report.macs_fp + report.macs_binary / 64
    assert report.flops == 2 * report.ops
    assert "binary/32" in CONVENTION and "/64" in CONVENTION


def test_extra_macs_and_linear():
    model = _Attention(6)
    tokens = 7

    class Tokens(nn.Module):  # cost counts from an image-shaped input: flatten it into tokens
        def __init__(self) -> None:
            super().__init__()
            self.attn = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.attn(x.flatten(2).transpose(1, 2))

    report = count_cost(Tokens(), input_size=(tokens, 1), in_channels=6)
    (layer_attn,) = [lay for lay in report.layers if lay.name == "attn"]
    (layer_qkv,) = [lay for lay in report.layers if lay.name == "attn.qkv"]
    assert layer_qkv.macs_fp == tokens * 18 * 6
    assert layer_attn.macs_fp == 2 * tokens * tokens * 6


def test_falls_back_to_a_real_pass_for_data_dependent_models():
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.mean().item() > 10:  # .item() cannot run on the meta device
                return x
            return self.conv(x)

    report = count_cost(DataDependent(), input_size=(4, 4))
    assert report.macs_fp == 16 * 3 * 3


def test_shared_parameters_counted_once():
    conv = nn.Conv2d(3, 3, 1)
    model = nn.Sequential(conv, conv)
    report = count_cost(model, input_size=(2, 2))
    assert report.params_total == 12
    assert report.macs_fp == 2 * 4 * 9


def test_msrresnet_x4_at_320x180():
    from scales_cli.archs.srresnet import SPEC

    model = SPEC.build(scale=4, num_feat=64, num_block=16)
    report = count_cost(model)  # default 320x180 -> 1280x720
    assert report.output_size == (1280, 720)
    assert report.params_total == 1_517_571 and report.params_binary == 0
    assert report.macs_total == pytest.approx(146.1e9, rel=0.005)


def test_imdn_x4_real_checkpoint(checkpoints: Path):
    from scales_cli.loading import load

    report = count_cost(load(checkpoints / "IMDN_x4.pth").model)
    assert report.params_total == 715_176
    assert report.macs_total == pytest.approx(40.9e9, rel=0.01)


def test_binarized_layer_from_the_library_is_split():
    from scales_cli.binary.layers import BinaryConv2d
    from scales_cli.binary.options import BinaryOptions

    conv = nn.Conv2d(16, 16, 3, padding=1)
    layer = BinaryConv2d.from_float(conv, BinaryOptions())
    report = count_cost(nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), layer), input_size=(8, 8))
    main = next(lay for lay in report.layers if lay.name == "1")
    assert main.params_binary == 16 * 16 * 9 and main.macs_binary == 64 * 16 * 16 * 9
    assert report.macs_fp < report.macs_binary  # only the head conv and the small branches are FP


def test_json_carries_flops_as_twice_ops():
    doc = count_cost(_Net(), input_size=(5, 4)).to_json()
    assert doc["flops"] == 2 * doc["ops"] and doc["ops"] == doc["macs_fp"] + doc["macs_binary"] / 64


def test_attention_macs_can_be_left_out_as_swinir_publishes():
    """--no-attention-macs drops exactly the window-attention matmuls: 2 * B_ * heads * N^2 * head_dim
    per attention call, i.e. 2 * tokens * window^2 * embed_dim per Swin block (tokens after padding)."""
    from scales_cli.archs._registry import spec_by_name
    from scales_cli.metrics.cost import count_cost

    spec = spec_by_name("swinir")
    config = {"scale": 2, "embed_dim": 12, "depths": (2, 2), "num_heads": (2, 2), "window_size": 4,
              "mlp_ratio": 2.0, "upsampler": "pixelshuffledirect"}
    model = spec.build(**{**spec.defaults, **config}).eval()
    with_attn = count_cost(model, (16, 12))
    without = count_cost(model, (16, 12), attention=False)
    blocks, tokens = 4, 16 * 12  # 16x12 is a multiple of the window: no padding
    assert with_attn.macs_fp - without.macs_fp == 2 * blocks * tokens * 4**2 * 12
    assert with_attn.attention and not without.attention
    assert without.to_json()["attention_macs_counted"] is False
