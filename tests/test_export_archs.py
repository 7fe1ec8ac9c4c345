"""Export parity over architectures: small random configurations of the paper's networks (windowed
ones at sizes other than the traced one), and (slow) a real checkpoint binarized with its default recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scales_cli.archs._registry import spec_by_name
from scales_cli.export.openvino import UnsupportedLayerError
from scales_cli.export.pipeline import FORMATS, export_model
from scales_cli.recipe import default_recipe_name, load_recipe, rewrite

SMALL = {
    "edsr": {"scale": 2, "n_resblocks": 2, "n_feats": 16},
    "rdn": {"scale": 2, "G0": 16, "D": 2, "C": 2, "G": 8, "kernel_size": 3},
    "rcan": {"scale": 2, "n_resgroups": 1, "n_resblocks": 2, "n_feats": 16, "reduction": 4},
    "msrresnet": {"scale": 2, "num_feat": 16, "num_block": 2},
    "swinir": {"scale": 2, "embed_dim": 16, "depths": (2,), "num_heads": (2,), "window_size": 4, "mlp_ratio": 2.0,
               "upsampler": "pixelshuffledirect"},
    "hat": {"scale": 2, "embed_dim": 16, "depths": (2,), "num_heads": (2,), "window_size": 4, "compress_ratio": 4,
            "squeeze_factor": 4, "overlap_ratio": 0.5, "mlp_ratio": 2.0},
    "imdtn": {"scale": 2, "nf": 16, "num_modules": 1, "depth": 2, "num_heads": 2, "window_size": 4, "mlp_ratio": 2.0},
}


WINDOWED = ("swinir", "hat", "imdtn")
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
    model = spec.build(**{**spec.defaults, **SMALL[arch]}).eval()
    student, report = rewrite(model, load_recipe(default_recipe_name(model, region_of=spec.region_of)), region_of=spec.region_of)
    assert report.binarized, arch
    return student.eval(), spec.input_range


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("arch", [a for a in SMALL if a not in WINDOWED])
def test_small_students_export_with_parity(arch: str, fmt: str, lr_dir: Path, tmp_path: Path):
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
