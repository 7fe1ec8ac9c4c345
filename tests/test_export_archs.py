"""Export parity over every registered architecture (its smallest declared example, random weights;
windowed ones at sizes other than the traced one), and (slow) a real checkpoint binarized with its
default recipe. The architectures come from the registry: a new one is tested without editing this file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _arch_helpers import is_windowed, smallest_example
from scales_cli.archs._registry import all_specs, spec_by_name
from scales_cli.export.openvino import UnsupportedLayerError
from scales_cli.export.pipeline import FORMATS, export_model
from scales_cli.recipe import default_recipe_name, load_recipe, rewrite

SPECS = all_specs()
WINDOWED = [s.name for s in SPECS if is_windowed(s)]
CONVOLUTIONAL = [s.name for s in SPECS if not is_windowed(s)]
TRACED_SIZE = (40, 44)  # _onnx.example_input: every graph is traced at this size


@pytest.fixture(scope="module")
def lr_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lr")
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a.png": (19, 23), "b.png": (16, 12)}.items():
        coarse = (rng.random((h // 3 + 2, w // 3 + 2, 3)) * 255).astype(np.uint8)
        Image.fromarray(coarse).resize((w, h), Image.BICUBIC).save(folder / name)
    return folder


@pytest.fixture(scope="module")
def untraced_sizes(tmp_path_factory) -> Path:
    """LR images at sizes other than the traced one, none a multiple of the window (4).

    Each output holds >= 1000 values: at 8x9 (864 values) one value on a rounding edge of the uint8
    grid (seen once, at 141.8 dB) would already miss the 99.9 % uint8 criterion.
    """
    folder = tmp_path_factory.mktemp("lr_sizes")
    rng = np.random.default_rng(1)
    for name, (h, w) in {"a.png": (19, 23), "b.png": (37, 41), "c.png": (9, 11)}.items():
        assert (h, w) != TRACED_SIZE
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(folder / name)
    return folder


def _student(arch: str):  # noqa: ANN202
    spec = spec_by_name(arch)
    torch.manual_seed(0)
    model = spec.build(**{**spec.defaults, **smallest_example(spec)}).eval()
    student, report = rewrite(model, load_recipe(default_recipe_name(model, region_of=spec.region_of)), region_of=spec.region_of)
    assert report.binarized, arch
    return student.eval(), spec.input_range


@pytest.mark.parametrize("arch", [s.name for s in SPECS])
def test_every_architecture_declares_a_tiny_example(arch: str):
    """The export parity tests below run each architecture's smallest example in every format: an
    architecture without a tiny one would slow the whole suite (each declares one of at most 200K parameters)."""
    spec = spec_by_name(arch)
    model = spec.build(**{**spec.defaults, **smallest_example(spec)})
    assert sum(p.numel() for p in model.parameters()) <= 200_000, smallest_example(spec)


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("arch", CONVOLUTIONAL)
def test_small_students_export_with_parity(arch: str, fmt: str, lr_dir: Path, tmp_path: Path, one_thread):
    """Traced at 40x44, checked at 19x23 and 16x12 (ESA's 7x7 pool then sees a 7x5 map: RFDN/RLFN/BSRN)."""
    student, input_range = _student(arch)
    chosen, _ = FORMATS[fmt]
    try:
        result = export_model(student, tmp_path / f"m{chosen.suffix}", fmt, input_range=input_range, check_dir=lr_dir)
    except UnsupportedLayerError as exc:  # a clear refusal naming the layer is the documented outcome
        assert fmt == "openvino" and exc.message.startswith("layer ") and len(exc.message.splitlines()) == 1
        return
    assert result.parity is not None and result.parity.ok, result.parity.to_json()


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("arch", WINDOWED)
def test_windowed_students_hold_at_untraced_sizes(arch: str, fmt: str, untraced_sizes: Path, tmp_path: Path, one_thread):
    """SwinIR/HAT/IMDTN pad and mask inside the graph: traced at 40x44, exact at 19x23, 37x41 and 9x11."""
    student, input_range = _student(arch)
    chosen, _ = FORMATS[fmt]
    result = export_model(student, tmp_path / f"m{chosen.suffix}", fmt, input_range=input_range, check_dir=untraced_sizes)
    assert result.parity is not None and result.parity.ok and result.binary_layers > 0, result.parity.to_json()
    assert all(i.exact for i in result.parity.images), result.parity.to_json()  # no threshold flip needed


ESA_ARCHS = ("rfdn", "rlfn", "bsrn")  # the networks with a size-dependent op (ESA's pool); the others are
# covered at 16x12 by test_small_students_export_with_parity


@pytest.mark.parametrize("arch", ESA_ARCHS)
def test_esa_graphs_hold_at_small_sizes(arch: str, one_thread):
    """The FP network's graph, traced at 40x44, computes torch's output at small sizes in onnxruntime and
    OpenVINO (compiled per size): ESA's pool (RFDN/RLFN/BSRN) pads a map under 7 px with -inf inside the
    graph (archs/_distill.esa_max_pool): 3 px sides give a 1-px map, 16x12 a 7x5 one."""
    from scales_cli.export._onnx import example_input
    from scales_cli.export.onnx_float import graph_bytes
    from scales_cli.export.openvino import model_of
    from scales_cli.export.runtime import OnnxRuntime, OpenVinoRuntime

    spec = spec_by_name(arch)
    torch.manual_seed(0)
    model = spec.build(**{**spec.defaults, **smallest_example(spec)}).eval()
    example = example_input(size=TRACED_SIZE)
    runners = [OnnxRuntime(graph_bytes(model, example, 17)), OpenVinoRuntime(model_of(model, example, 17))]
    for hw in [(3, 4), (5, 14), (16, 12)]:
        x = torch.rand(1, 3, *hw) * spec.input_range
        with torch.no_grad():
            expected = model(x).numpy()
        for runner in runners:
            got = runner(x.numpy())
            assert got.shape == expected.shape, (runner.name, hw)
            assert np.abs(got - expected).max() <= 1e-5 * spec.input_range, (runner.name, hw)


@pytest.mark.parametrize("arch", WINDOWED)
def test_windowed_graph_pads_inputs_smaller_than_a_window(arch: str, one_thread):
    """Inputs smaller than the window are mirrored several times inside the graph (eager: the same gather)."""
    from scales_cli.export._onnx import example_input
    from scales_cli.export.graph import export_network
    from scales_cli.export.onnx_float import OPTIONS, graph_bytes
    from scales_cli.export.runtime import OnnxRuntime

    student, _ = _student(arch)
    runner = OnnxRuntime(graph_bytes(export_network(student, OPTIONS), example_input(size=TRACED_SIZE), 17))
    for hw in [(1, 5), (3, 2), (2, 7)]:
        x = torch.rand(1, 3, *hw)
        with torch.no_grad():
            expected = student(x).numpy()
        got = runner(x.numpy())
        assert got.shape == expected.shape and np.abs(got - expected).max() < 1e-5, hw

@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["openvino"])
def test_real_checkpoint_student_parity(fmt: str, checkpoints: Path, benchmarks: Path, tmp_path: Path):
    """RLFN x4 (the embedded demo network's checkpoint) with its default recipe, parity on Set5.

    OpenVINO only in CI (40 s on the shared 2-core machine): ``scales`` (185 s, NumPy reference
    kernels) and ``float`` (170 s, flip diagnosis on several images) passed too but exceed the budget.
    """
    from scales_cli.loading import load

    desc = load(checkpoints / "RLFN_x4.pth")
    student, _ = rewrite(desc, load_recipe(default_recipe_name(desc)))
    chosen, _ = FORMATS[fmt]
    result = export_model(student, tmp_path / f"m{chosen.suffix}", fmt, input_range=desc.input_range,
                          check_dir=benchmarks / "Set5" / "LR_bicubic" / "X4")
    assert result.parity is not None and result.parity.ok and len(result.parity.images) == 5
