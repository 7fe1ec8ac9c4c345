"""Export of INT8 layers (issue 21 step 2): QDQ in the ONNX formats, FakeQuantize + i8 weights in
OpenVINO running as INT8 kernels, parity of a mixed binary + INT8 + FP student in every format, the
rounding tolerance of the parity diagnosis, and the one-line refusal of bits a format cannot write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import run_cli
from scales_cli.archs._registry import spec_by_name
from scales_cli.binary.int8 import Int8Conv2d, Int8Layer, calibrate_int8
from scales_cli.errors import ScalesError
from scales_cli.export.parity import DEMO_IMAGES, check_layer
from scales_cli.export.graph import export_network
from scales_cli.export.pipeline import FORMATS, export_model
from scales_cli.recipe import load_recipe, rewrite, save_student
from scales_cli.recipe.calibrate import calibrate_student

IMDN_SMALL = {"scale": 2, "in_nc": 3, "nf": 32, "num_modules": 2, "out_nc": 3}


@pytest.fixture(scope="module")
def mixed() -> tuple[nn.Module, nn.Module]:
    """(teacher, calibrated cnn-int8 student): binary body convs, INT8 1x1/upsampler convs, FP head."""
    torch.manual_seed(0)
    teacher = spec_by_name("imdn").build(**IMDN_SMALL).eval()
    student, report = rewrite(teacher, load_recipe("cnn-int8"), region_of=spec_by_name("imdn").region_of)
    assert report.binarized and report.int8 and any(d.decision == "keep" for d in report.layers)
    calibrate_student(student, DEMO_IMAGES, crop=24)
    return teacher, student.eval()


def _zero_points(student: nn.Module) -> set[int]:
    return {int(m.act.integer_zero_point()) for m in student.modules() if isinstance(m, Int8Layer)}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_mixed_student_exports_with_parity_in_every_format(fmt: str, mixed, tmp_path: Path):
    teacher, student = mixed
    assert len(_zero_points(student)) > 1  # one-sided and signed inputs: zero padding must stay exact for both
    chosen, _ = FORMATS[fmt]
    result = export_model(student, tmp_path / f"s{chosen.suffix}", fmt)
    fp = export_model(teacher, tmp_path / f"t{chosen.suffix}", fmt, check=False)
    assert result.parity is not None and result.parity.ok, result.parity.to_json()
    assert result.int8_layers == sum(isinstance(m, Int8Layer) for m in student.modules()) and result.binary_layers > 0
    print(f"\n{fmt}: student {result.sizes} vs FP teacher {fp.sizes}; parity {result.parity.to_json()['min_psnr_db']} dB")
    if fmt != "float":  # float holds the binary layers' +-scale weights (and their branches) in f32: larger
        assert sum(result.sizes.values()) < sum(fp.sizes.values())  # 1-bit and 8-bit weights stored as such


def test_onnx_graph_holds_qdq_pairs_and_int8_weights(mixed):
    import onnx

    from scales_cli.export import onnx_float
    from scales_cli.export._onnx import example_input
    from scales_cli.export.graph import export_network

    _, student = mixed
    graph = onnx.load_from_string(onnx_float.graph_bytes(export_network(student, onnx_float.OPTIONS), example_input(), 17)).graph
    n_int8 = sum(isinstance(m, Int8Layer) for m in student.modules())
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") == n_int8 and ops.count("DequantizeLinear") == 2 * n_int8
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(int8_weights) == n_int8


def test_openvino_runs_the_int8_convs_as_int8_kernels(mixed, tmp_path: Path):
    """The profile's exec type of every INT8 layer's Convolution ends in _I8 (f32 inference hint and all)."""
    from scales_cli.export.openvino import compile_ir, graph_options

    _, student = mixed
    export_model(student, tmp_path / "s.xml", "openvino", check=False)
    compiled = compile_ir(tmp_path / "s.xml", (1, 3, 32, 36), threads=1, profile=True)
    request = compiled.create_infer_request()
    request.infer({0: np.random.default_rng(0).random((1, 3, 32, 36), dtype=np.float32)})
    convs = {p.node_name: p.exec_type for p in request.profiling_info if p.node_type == "Convolution"}
    int8_convs = sum(isinstance(m, Int8Conv2d) for m in student.modules())
    parts = 2 if graph_options().int8_split else 1  # split weights on CPUs whose INT8 kernels saturate
    # only an INT8 layer's convs have a FakeQuantize before them and i8 weights: _I8 each, none f32
    assert sum(kind.endswith("_I8") for kind in convs.values()) == parts * int8_convs, convs
    assert any(kind.endswith("_f32") for kind in convs.values())  # the FP head and re-scaling branches stay f32


def _one_layer() -> Int8Conv2d:
    torch.manual_seed(0)
    layer = Int8Conv2d.from_float(nn.Conv2d(4, 4, 3, padding=1)).eval()
    layer.act.set_range(0.0, 2.55)  # s = 0.01, z = 0
    return layer


def test_rounding_at_a_tie_is_within_the_tolerance_but_a_wrong_level_elsewhere_is_not():
    layer = _one_layer()
    x = torch.rand(1, 4, 6, 6) * 2
    x[0, 1, 2, 3] = 0.125  # u = 12.5: half-to-even gives 12, a runtime rounding half away gives 13
    with torch.no_grad():
        ref = layer(x)
        moved = x.clone()
        moved[0, 1, 2, 3] = 0.13  # what the other rounding computes
        tie_out = layer(moved).numpy()
        check = check_layer(layer, x.numpy(), ref.numpy(), x.numpy(), tie_out)
        assert check.exact and check.flips >= 1 and check.own_db < 80
        x[0, 1, 2, 3] = 0.1215  # u = 12.15: no runtime rounds this to 13
        wrong = check_layer(layer, x.numpy(), layer(x).numpy(), x.numpy(), tie_out)
        assert not wrong.exact


def test_parity_failure_names_the_int8_layer_that_computes_something_else(mixed, tmp_path: Path, monkeypatch):
    import dataclasses

    _, student = mixed
    paths = [p for p, m in student.named_modules() if isinstance(m, Int8Layer)]
    broken = student.get_submodule(paths[0])
    real = Int8Layer.export_view

    def wrong_view(self):  # noqa: ANN001, ANN202 - one layer's exported weights one level off
        view = real(self)
        if not getattr(self, "_broken", False):  # export works on a deep copy: a marker survives it
            return view
        return dataclasses.replace(view, weight=np.clip(view.weight.astype(np.int16) + 1, -127, 127).astype(np.int8))

    monkeypatch.setattr(Int8Layer, "export_view", wrong_view)
    monkeypatch.setattr(broken, "_broken", True, raising=False)
    with pytest.raises(ScalesError, match=rf"parity failed on .*first diverging layer {paths[0]}: layer differs"):
        export_model(student, tmp_path / "s.onnx", "float")
    assert not (tmp_path / "s.onnx").exists()


class _FourBit(nn.Conv2d):
    def bit_widths(self) -> tuple[int, int]:
        return (4, 4)


def test_bits_no_format_writes_are_refused_in_one_line_naming_the_layer(tmp_path: Path):
    net = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), _FourBit(3, 3, 3, padding=1))
    for fmt in FORMATS:
        chosen, _ = FORMATS[fmt]
        with pytest.raises(ScalesError, match=rf"^layer 1: --format {fmt} cannot express its 4-bit weights / 4-bit activations"):
            export_model(net, tmp_path / f"m{chosen.suffix}", fmt)
        assert not list(tmp_path.iterdir())


def test_cli_exports_a_mixed_student_file(mixed, tmp_path: Path):
    from scales_cli.loading import load

    teacher, calibrated = mixed
    torch.save(teacher.state_dict(), tmp_path / "t.pth")
    desc = load(tmp_path / "t.pth")
    student, _ = rewrite(desc, load_recipe("cnn-int8"))
    student.load_state_dict(calibrated.state_dict())
    path = save_student(tmp_path / "s.safetensors", student.eval(), desc, load_recipe("cnn-int8"))
    result = run_cli("export", path, "-o", tmp_path / "s.xml", "--format", "openvino")
    assert result.code == 0, result.err
    assert "INT8 layers" in result.out and (tmp_path / "s.bin").is_file()


def test_a_calibrated_int8_layer_exports_exactly_in_onnx():
    """onnxruntime's QuantizeLinear divides and rounds half-to-even as torch does: bit-exact on the same input."""
    from scales_cli.export import onnx_float
    from scales_cli.export._onnx import example_input
    from scales_cli.export.graph import export_network
    from scales_cli.export.runtime import OnnxRuntime

    layer = _one_layer()
    calibrate_int8(layer, [torch.randn(2, 4, 9, 9)])
    assert int(layer.act.integer_zero_point()) not in (0, 255)
    runner = OnnxRuntime(onnx_float.graph_bytes(export_network(layer, onnx_float.OPTIONS), example_input(4), 17))
    x = torch.randn(1, 4, 11, 13)
    with torch.no_grad():
        np.testing.assert_allclose(runner(x.numpy()), layer(x).numpy(), rtol=0, atol=1e-5)


def test_binary_layers_with_channels_padded_to_8_beside_int8_layers_run_in_openvino(tmp_path: Path):
    """RLFN with 46 channels: binary convs padded to 48 channels next to INT8 convs (Concat padding crashed OpenVINO)."""
    spec = spec_by_name("rlfn")
    torch.manual_seed(0)
    teacher = spec.build(**{**spec.defaults, "scale": 4, "nf": 46, "mf": 48, "num_blocks": 1, "esa_channels": 16}).eval()
    student, report = rewrite(teacher, load_recipe("cnn-int8"), region_of=spec.region_of)
    assert report.int8 and any(m.in_channels % 8 for m in student.modules() if getattr(m, "bit_widths", None) and
                               getattr(m, "bit_widths")() == (1, 1) and isinstance(m, nn.Conv2d))
    calibrate_int8(student, [torch.rand(2, 3, 24, 24) * 255])
    result = export_model(student.eval(), tmp_path / "s.xml", "openvino", input_range=255.0)
    assert result.parity is not None and result.parity.ok, result.parity.to_json()


def _saturating_net() -> nn.Module:
    """3 -> 64 channels at the top INT8 input level (255) -> an INT8 1x1 conv with positive weights -> 3 channels:
    every pair of u8 x s8 products is about 2 * 255 * 127, past int16 (what VNNI-less INT8 kernels add pairs in)."""
    torch.manual_seed(0)
    pre, post = nn.Conv2d(3, 64, 1), nn.Conv2d(16, 3, 1)
    layer = Int8Conv2d.from_float(nn.Conv2d(64, 16, 1)).eval()
    with torch.no_grad():
        pre.weight.zero_()
        pre.bias.fill_(2.5)
        layer.weight.abs_()
    layer.act.set_range(0.0, 2.55)  # s = 0.01, z = 0: 2.5 is level 250
    return nn.Sequential(pre, layer, post).eval()


def test_split_int8_weights_keep_every_level_within_the_pair_safe_range():
    from scales_cli.export.graph import PAIR_SAFE_LEVEL, split_levels

    levels = np.arange(-127, 128, dtype=np.int8)
    high, low = split_levels(levels)
    assert np.array_equal(high.astype(np.int16) + low, levels)
    assert max(np.abs(high.astype(np.int16)).max(), np.abs(low.astype(np.int16)).max()) == PAIR_SAFE_LEVEL
    assert 2 * 255 * PAIR_SAFE_LEVEL <= np.iinfo(np.int16).max


def test_split_int8_weights_run_exactly_in_openvino_even_where_pairs_would_saturate(tmp_path: Path):
    """Written split, the saturating net is exact on any CPU (without VNNI, unsplit, it is not: docstring of
    Int8ExportedLayer); and the exporter splits by itself exactly where this CPU's kernels would saturate."""
    from scales_cli.export import openvino
    from scales_cli.export.runtime import OpenVinoRuntime
    from scales_cli.machine import local_isa

    net = _saturating_net()
    path = tmp_path / "s.xml"
    ir = openvino.model_of(export_network(net, openvino.graph_options(isa=("avx2",))), torch.rand(1, 3, 8, 8), 17)
    openvino.save_ir(ir, path)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        np.testing.assert_allclose(OpenVinoRuntime(path)(x.numpy()), net(x).numpy(), rtol=0, atol=1e-4)
    assert openvino.graph_options(isa=("avx2",)).int8_split and not openvino.graph_options(isa=("avx512_vnni",)).int8_split
    assert openvino.graph_options().int8_split == openvino.int8_saturates(local_isa())
    result = export_model(net, tmp_path / "auto.xml", "openvino", input_range=1.0)  # as `scales export` writes it
    assert result.parity is not None and result.parity.ok, result.parity.to_json()
