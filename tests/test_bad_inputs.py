"""The CLI's promise on bad input — one line naming the file or option, exit 2, no traceback, nothing
written — for every class of case a new-user battery broke (issue 10), run in-process by ``conftest.run_cli`` through the
real entry point :func:`scales_cli.cli.main` (one subprocess test per command lives beside them).
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from conftest import run_cli, run_console
from scales_cli.archs._registry import spec_by_name
from scales_cli.loading import load

DEMO = Path(__file__).resolve().parents[1] / "scales_cli" / "demo"
RLFN = DEMO / "RLFN_x4.pth"


def refused(*args: object, names: str) -> str:
    """Assert exit 2 with exactly one stderr line that names ``names`` and no traceback; return the line."""
    return run_cli(*args).refused(names)


def files_in(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture
def tiny_teacher(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "tiny.pth"
    torch.save(spec_by_name("imdn").build(scale=2, in_nc=3, nf=16, num_modules=1, out_nc=3).state_dict(), path)
    return path


@pytest.fixture
def student(tmp_path: Path, tiny_teacher: Path, ) -> Path:
    path = tmp_path / "student.safetensors"
    made = run_cli("binarize", tiny_teacher, "-o", path)
    assert made.code == 0, made.err
    return path


def _with_meta(src: Path, dst: Path, **fields: str) -> Path:
    with safe_open(str(src), "pt") as fh:
        meta, tensors = dict(fh.metadata()), {k: fh.get_tensor(k) for k in fh.keys()}
    meta.update({f"scales.{k}": v for k, v in fields.items()})
    save_file(tensors, str(dst), metadata=meta)
    return dst


# -- student metadata -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["null", "[1, 2]", "{not json", '"text"'])
def test_student_with_bad_hparams_metadata(tmp_path, student, value):
    bad = _with_meta(student, tmp_path / "bad.safetensors", hparams=value)
    line = refused("inspect", bad, names="bad.safetensors")
    assert "scales.hparams" in line


def test_student_without_a_scale(tmp_path, student):
    bad = _with_meta(student, tmp_path / "noscale.safetensors", hparams=json.dumps({"nf": 16}))
    refused("inspect", bad, names="noscale.safetensors")


# -- --arch-opt values ----------------------------------------------------------------------------


@pytest.mark.parametrize("opt", ["input_range=banana", "input_range=[]", "input_range=0", "scale=two", "nf=True", "scale=2.5"])
@pytest.mark.parametrize("command", ["inspect", "binarize"])
def test_arch_opt_of_the_wrong_type(tmp_path, command, opt):
    extra = ["-o", tmp_path / "s.safetensors"] if command == "binarize" else []
    refused(command, RLFN, "--arch-opt", opt, *extra, names=f"--arch-opt {opt.split('=')[0]}")
    assert not (tmp_path / "s.safetensors").exists()


def test_arch_opt_scale_on_a_model_whose_shapes_say_otherwise():
    line = refused("inspect", RLFN, "--arch-opt", "scale=3", names="scale=3")
    assert "say scale=4" in line
    # refused before a network of the requested size is built (this one would take all memory)
    refused("inspect", RLFN, "--arch-opt", "num_blocks=100000", names="num_blocks=100000")


def test_report_scale_out_of_range_names_the_scale():
    line = refused("report", "--bicubic", "--scale", "1000", "--data", DEMO / "Set5-mini", names="scale 1000")
    assert "super-resolution factor" in line


# -- recipes and outputs --------------------------------------------------------------------------


def test_recipe_file_of_random_bytes(tmp_path, tiny_teacher):
    recipe = tmp_path / "junk.yaml"
    recipe.write_bytes(bytes(range(128, 256)) * 3)
    refused("binarize", tiny_teacher, "--recipe", recipe, "-o", tmp_path / "s.safetensors", names="junk.yaml")
    assert not (tmp_path / "s.safetensors").exists()


@pytest.mark.skipif(not Path("/proc/self").exists() or os.name != "posix", reason="needs /proc (a folder nobody can create files in)")
def test_unwritable_outputs_are_one_line_before_any_work(tmp_path, tiny_teacher):
    refused("binarize", tiny_teacher, "-o", "/proc/student.safetensors", names="/proc/student.safetensors")
    line = refused("report", tiny_teacher, "--data", DEMO / "Set5-mini", "--json", "/proc/r.json",
                   names="/proc/r.json")
    assert "cannot be written" in line


def test_demo_checks_every_output_before_writing(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "report.md").write_text("mine")
    refused("demo", "--out", out, names="report.md")
    assert files_in(out) == {"report.md"} and (out / "report.md").read_text() == "mine"
    (out / "report.md").unlink()
    (out / "finetune").mkdir()
    (out / "finetune" / "state.pt").write_text("a run")
    refused("demo", "--out", out, names="finetune")
    assert files_in(out) == {"finetune", "finetune/state.pt"}


# -- weights --------------------------------------------------------------------------------------


def _poisoned(tmp_path: Path, value: float | None, dtype: torch.dtype | None = None) -> Path:
    sd = torch.load(RLFN, weights_only=True)
    sd = dict(sd.get("params", sd))
    key = next(k for k, v in sd.items() if v.is_floating_point() and v.dim() == 4)
    if value is not None:
        sd[key] = sd[key].clone()
        sd[key].view(-1)[3] = value
    if dtype is not None:
        sd[key] = sd[key].round().to(dtype)
    path = tmp_path / "poisoned.pth"
    torch.save(sd, path)
    return path


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_by_every_command(tmp_path, value):
    bad = _poisoned(tmp_path, value)
    image = tmp_path / "in.png"
    Image.new("RGB", (8, 8), (40, 80, 120)).save(image)
    for args in (["inspect", bad], ["binarize", bad, "-o", tmp_path / "s.safetensors"], ["upscale", bad, image, "-o", tmp_path / "up"]):
        line = refused(*args, names="poisoned.pth")
        assert "non-finite" in line and "fea_conv.weight" in line
    assert files_in(tmp_path) == {"poisoned.pth", "in.png"}


def test_integer_weights_are_refused_not_cast(tmp_path):
    line = refused("inspect", _poisoned(tmp_path, None, torch.int32), names="poisoned.pth")
    assert "int32" in line and "floating-point" in line


# -- user architecture files ----------------------------------------------------------------------


@pytest.mark.parametrize(("source", "says"), [
    ("import sys\nsys.exit(0)\n", "sys.exit(0)"),
    ("raise SystemExit('bye')\n", "SystemExit at line 1"),
    ("import os\nos.environ['X'] = '1'\nraise ValueError('boom')\n", "ValueError at line 3: boom"),
])
def test_user_arch_file_that_exits_or_raises_while_imported(tmp_path, source, says):
    net = tmp_path / "net.py"
    net.write_text(source)
    line = refused("inspect", RLFN, "--arch", f"{net}:Net", names="net.py")
    assert says in line


USER_NET = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, scale=2):
        super().__init__()
        self.conv = nn.Conv2d(3, 3 * scale * scale, 3, padding=1)
        self.up = nn.PixelShuffle(scale)

    def forward(self, x):
        return self.up(self.conv(x)) * {factor}
"""


def test_two_user_files_of_the_same_name_do_not_collide(tmp_path):
    """``a/model.py:Net`` and ``b/model.py:Net`` are different modules (unique sys.modules names)."""
    outputs = []
    for folder, factor in (("a", 1.0), ("b", 2.0)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "model.py").write_text(USER_NET.format(factor=factor))
        torch.manual_seed(0)
        ckpt = tmp_path / folder / "w.pth"
        torch.save(torch.nn.Sequential().state_dict() | {"conv.weight": torch.randn(12, 3, 3, 3), "conv.bias": torch.zeros(12)}, ckpt)
        desc = load(ckpt, arch=f"{tmp_path / folder / 'model.py'}:Net")
        outputs.append(desc)
    x = torch.rand(1, 3, 4, 4)
    with torch.no_grad():
        a, b = (d.model(x) for d in outputs)
    assert torch.allclose(b, 2 * a)
    assert type(outputs[0].model).__module__ != type(outputs[1].model).__module__


def test_arch_help_says_the_file_is_trusted_code():
    result = run_cli("inspect", "--help")
    assert result.code == 0 and "trust" in result.out


# -- images ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (2, 5), (7, 2)])
def test_upscale_of_an_image_smaller_than_the_kernels(tmp_path, size):
    """RLFN's ESA blocks need 3 px: smaller (valid) images are edge-padded and the output cropped."""
    image = tmp_path / "tiny.png"
    Image.new("RGB", size, (200, 30, 60)).save(image)
    result = run_cli("upscale", RLFN, image, "-o", tmp_path / "up")
    assert result.code == 0, result.err
    out = Image.open(tmp_path / "up" / "tiny_x4.png")
    assert out.size == (4 * size[0], 4 * size[1])
    # a flat colour stays close to that colour
    assert np.abs(np.asarray(out, dtype=float) - (200, 30, 60)).mean() < 12


def test_sixteen_bit_gray_reads_alike_in_upscale_and_report(tmp_path):
    """One decoder: the metrics read a 16-bit gray file (once refused there) as upscale does."""
    from scales_cli.imaging import read_image
    from scales_cli.metrics.color import load_image

    from test_upscale import _png16

    values = (np.arange(24 * 20, dtype=np.uint32).reshape(24, 20) * 131 % 65536).astype(np.uint16)
    path = tmp_path / "g16.png"
    _png16(path, values, color_type=0)
    metrics = load_image(path)
    network = read_image(path).rgb[0, 0].numpy()
    assert metrics.dtype == np.uint8 and metrics.shape == (24, 20)
    assert np.abs(metrics.astype(float) - network * 255).max() <= 0.5 + 1e-6


# -- one subprocess test per command: the real console script, warnings included ------------------


def test_console_inspect_plain_pickle_prints_one_line_and_no_library_warning(tmp_path):
    path = tmp_path / "plain.pth"
    with open(path, "wb") as fh:
        pickle.dump({"a": 1}, fh, protocol=4)  # torch warns "Detected pickle protocol 4" before refusing
    proc = run_console("inspect", path)
    proc.refused("plain.pth")
    assert "Warning" not in proc.err


def test_console_binarize_unwritable_output(tmp_path, tiny_teacher):
    run_console("binarize", tiny_teacher, "-o", "/proc/x.safetensors").refused()


def test_console_report_bad_scale():
    run_console("report", "--bicubic", "--scale", "0", "--data", DEMO / "Set5-mini").refused("scale 0")


@pytest.mark.parametrize(("args", "says"), [
    (["inspect"], "Missing argument"),
    (["inspect", RLFN, "--bogus"], "No such option: --bogus"),
    (["report", RLFN, "--data", DEMO / "Set5-mini", "--gray-convention", "x"], "--gray-convention"),
    (["nosuch"], "No such command"),
])
def test_usage_errors_are_one_line_too(args, says):
    """Click's multi-line usage box becomes one line naming the option and the command's --help."""
    line = refused(*args, names=says)
    assert "--help" in line
