"""Files ``scales export`` wrote, given where they do not belong or changed by another tool: one line
naming the file, exit 2, nothing written, no traceback (issue 19, point 6); and ``demo --out FILE``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image

from scales_cli.archs._registry import spec_by_name

DEMO = Path(__file__).resolve().parents[1] / "scales_cli" / "demo"


def _one_line(result, *names: str) -> str:
    lines = result.err.strip().splitlines()
    assert result.code == 2, result.err
    assert "Traceback" not in result.err
    assert len(lines) == 1, result.err
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """A tiny IMDN x2 teacher, its calibrated student, the student exported as ONNX and OpenVINO IR, and
    copies of both that another tool pinned to a 16x16 input (metadata kept, other sizes cannot run)."""
    import onnx
    import openvino as ov
    from openvino import opset13 as ops

    from scales_cli import binarize
    from scales_cli.export.pipeline import export_model
    from scales_cli.loading import load

    root = tmp_path_factory.mktemp("exported")
    torch.manual_seed(0)
    teacher = root / "tiny.pth"
    torch.save(spec_by_name("imdn").build(scale=2, in_nc=3, nf=16, num_modules=1, out_nc=3).state_dict(), teacher)
    student = root / "student.safetensors"
    binarize(teacher, "cnn", student)
    desc = load(student)
    meta = {"arch": desc.arch, "scale": desc.scale}
    files = {"teacher": teacher, "student": student}
    for fmt, name in (("float", "student.onnx"), ("openvino", "student.xml")):
        export_model(desc.model, root / name, fmt, input_range=desc.input_range, source=str(student), metadata=meta, check=False)
        files[name] = root / name

    graph = onnx.load(str(root / "student.onnx"))
    for dim, value in zip(graph.graph.input[0].type.tensor_type.shape.dim, (1, 3, 16, 16), strict=True):
        dim.ClearField("dim_param")
        dim.dim_value = value
    onnx.save(graph, str(root / "pinned.onnx"))
    files["pinned.onnx"] = root / "pinned.onnx"

    ir = ov.Core().read_model(str(root / "student.xml"))
    param = ir.get_parameters()[0]
    users = list(param.output(0).get_target_inputs())
    pinned = ops.reshape(param, ops.constant(np.array([1, 3, 16, 16], dtype=np.int64)), special_zero=False)
    for user in users:
        user.replace_source_output(pinned.output(0))
    ov.save_model(ir, str(root / "pinned.xml"))
    files["pinned.xml"] = root / "pinned.xml"

    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)).save(images / "a.png")
    files["images"] = images
    return files


@pytest.mark.parametrize("name", ["student.onnx", "student.xml"])
@pytest.mark.parametrize("command", ["export", "binarize", "finetune"])
def test_an_exported_file_is_an_end_product(made: dict[str, Path], tmp_path: Path, command: str, name: str):
    """``export`` once ended in a traceback on it, ``binarize`` in a recipe error that did not name it."""
    given = made[name]
    args = {
        "export": ["export", given, "-o", tmp_path / "again.onnx", "--format", "float", "--no-check"],
        "binarize": ["binarize", given, "-o", tmp_path / "again.safetensors"],
        "finetune": ["finetune", given, "--teacher", made["teacher"], "--data", made["images"], "--steps", "1",
                     "--patch", "8", "--out", tmp_path / "run"],
    }[command]
    line = _one_line(run_cli(*args), str(given), "end product", str(made["student"]))
    assert line.startswith("error: ")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["pinned.onnx", "pinned.xml"])
@pytest.mark.parametrize("command", ["upscale", "report", "bench"])
def test_a_rewritten_export_that_cannot_run_at_the_size_is_one_line(made: dict[str, Path], tmp_path: Path, command: str, name: str):
    """Metadata intact, input pinned to 16x16: the runtime's own error once surfaced as a traceback."""
    given = made[name]
    args = {
        "upscale": ["upscale", given, made["images"] / "a.png", "-o", tmp_path / "up"],
        "report": ["report", given, "--data", made["images"], "--json", tmp_path / "r.json"],
        "bench": ["bench", given, "--size", "24x20", "--repeats", "1"],
    }[command]
    line = _one_line(run_cli(*args), str(given), "cannot run it on a 1x3x")
    assert "openvino" in line if name.endswith(".xml") else "onnxruntime" in line
    assert list(tmp_path.iterdir()) == []


def test_the_unchanged_export_still_runs_everywhere(made: dict[str, Path], tmp_path: Path):
    """The refusals above are about the files, not the commands: the exported student itself runs."""
    for name in ("student.onnx", "student.xml"):
        result = run_cli("upscale", made[name], made["images"] / "a.png", "-o", tmp_path / name)
        assert result.code == 0, result.err
        assert Image.open(tmp_path / name / "a_x2.png").size == (88, 80)


def test_demo_out_naming_a_file_is_one_line(tmp_path: Path):
    target = tmp_path / "taken"
    target.write_text("keep me")
    _one_line(run_cli("demo", "--out", target, "--force"), str(target), "is a file")
    assert target.read_text() == "keep me" and sorted(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("name", ["student.onnx", "student.xml"])
def test_an_exported_teacher_is_an_end_product_too(made: dict[str, Path], tmp_path: Path, name: str):
    """``finetune --teacher`` on an exported file once gave a sha256 mismatch instead of naming what it is."""
    given = made[name]
    args = ["finetune", made["student"], "--teacher", given, "--data", made["images"], "--steps", "1",
            "--patch", "8", "--out", tmp_path / "run"]
    line = _one_line(run_cli(*args), str(given), "end product")
    assert line.startswith("error: ")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def esa_made(tmp_path_factory) -> dict[str, Path]:
    """A tiny RLFN x2 student (ESA blocks) exported by ``scales export`` (traced at 40x44) in every format,
    tiny LR images (1x1 and 2x9 below ESA's 3 px, 16x12 giving the 7x5 map under the 7x7 pool) and HR
    images whose x2 LR images are 16x12 and 8x15."""
    from scales_cli import binarize
    from scales_cli.export.pipeline import FORMATS

    root = tmp_path_factory.mktemp("esa")
    torch.manual_seed(0)
    teacher = root / "rlfn.pth"
    spec = spec_by_name("rlfn")
    torch.save(spec.build(scale=2, in_nc=3, nf=16, mf=16, num_blocks=1, out_nc=3, esa_channels=8).state_dict(), teacher)
    student = root / "student.safetensors"
    binarize(teacher, "cnn", student)
    files = {"student": student}
    rng = np.random.default_rng(0)
    for folder, sizes in (("lr", [(1, 1), (2, 9), (5, 7), (16, 12)]), ("hr", [(32, 24), (16, 30)])):
        (root / folder).mkdir()
        for h, w in sizes:
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / folder / f"{h}x{w}.png")
        files[folder] = root / folder
    for fmt, (chosen, _) in FORMATS.items():  # the parity check too takes images under min_size (edge-padded)
        files[fmt] = root / f"{fmt}{chosen.suffix}"
        result = run_cli("export", student, "-o", files[fmt], "--format", fmt, "--check", files["lr"])
        assert result.code == 0, result.err
    files["torch"] = root / "torch"  # the torch student's outputs, what every format is compared with
    for image in sorted(files["lr"].iterdir()):
        result = run_cli("upscale", student, image, "-o", files["torch"])
        assert result.code == 0, result.err
    return files


@pytest.mark.parametrize("fmt", ["scales", "float", "openvino"])
def test_an_exported_esa_student_upscales_and_reports_small_images(esa_made: dict[str, Path], tmp_path: Path, fmt: str):
    """The exported ESA graph pools a map under 7 px as torch does (it once kept the traced 7x7 kernel:
    OpenVINO refused, onnxruntime computed something else), and the file's ``min_size`` metadata makes
    upscale edge-pad images under 3 px as for the torch student. onnxruntime may differ from torch by one
    level where a binary activation sits at its threshold (float rounding, see export's parity notes)."""
    for image in sorted(esa_made["lr"].iterdir()):
        result = run_cli("upscale", esa_made[fmt], image, "-o", tmp_path / "up")
        assert result.code == 0, result.err
        (h, w), name = Image.open(image).size[::-1], f"{image.stem}_x2.png"
        got = np.asarray(Image.open(tmp_path / "up" / name), dtype=np.int16)
        expected = np.asarray(Image.open(esa_made["torch"] / name), dtype=np.int16)
        assert got.shape == expected.shape == (2 * h, 2 * w, 3), name
        assert np.abs(got - expected).max() <= 1, name
    result = run_cli("report", esa_made[fmt], "--data", esa_made["hr"], "--json", tmp_path / "report.json")
    assert result.code == 0, result.err
