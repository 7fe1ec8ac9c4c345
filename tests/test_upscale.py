"""``scales upscale``: every image mode maps to the right network input and output mode, outputs are
named ``<stem>_x<scale>.png`` and never overwritten without --force; user architectures load."""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import run_cli, run_console
from scales_cli.loading import load
from scales_cli.archs._registry import spec_by_name
from scales_cli.errors import DataError, DetectionError, ScalesError
from scales_cli.imaging import read_image, upscale_image
from scales_cli.tiling import TilePlan, plan_tiles

NEAREST = nn.Upsample(scale_factor=2, mode="nearest")  # a "network" whose output is known exactly


def _nearest(a: np.ndarray) -> np.ndarray:
    return a.repeat(2, axis=0).repeat(2, axis=1)


def _run_nearest(path: Path, tile: int = 0) -> Image.Image:
    image = read_image(path)
    w, h = image.size
    return upscale_image(NEAREST, 2, 1.0, image, plan_tiles(h, w, tile, 4))


def _png16(path: Path, array: np.ndarray, color_type: int) -> None:
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit RGB): filter 0, one IDAT."""
    h, w = array.shape[:2]
    raw = b"".join(b"\x00" + array[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture
def rgb_array() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)


def test_rgb_goes_through_unchanged(tmp_path: Path, rgb_array: np.ndarray):
    Image.fromarray(rgb_array).save(tmp_path / "a.png")
    out = _run_nearest(tmp_path / "a.png")
    assert out.mode == "RGB" and out.size == (14, 18)
    assert np.array_equal(np.asarray(out), _nearest(rgb_array))


def test_tiled_output_equals_untiled_for_a_pointwise_model(tmp_path: Path):
    big = np.random.default_rng(1).integers(0, 256, (61, 47, 3), dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "big.png")
    tiled = _run_nearest(tmp_path / "big.png", tile=16)
    assert np.array_equal(np.asarray(tiled), _nearest(big))


def test_gray_is_fed_as_rgb_and_written_back_as_gray(tmp_path: Path, rgb_array: np.ndarray):
    gray = rgb_array[..., 0]
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    loaded = read_image(tmp_path / "g.png")
    assert loaded.gray and loaded.rgb.shape == (1, 3, 9, 7)
    assert torch.equal(loaded.rgb[0, 0], loaded.rgb[0, 2])
    out = _run_nearest(tmp_path / "g.png")
    assert out.mode == "L" and np.array_equal(np.asarray(out), _nearest(gray))


def test_gray_output_is_the_luma_of_the_network_output(tmp_path: Path):
    Image.new("L", (4, 4), 100).save(tmp_path / "g.png")
    tint = nn.Sequential(NEAREST, nn.Conv2d(3, 3, 1, bias=False))
    with torch.no_grad():
        tint[1].weight.copy_(torch.diag(torch.tensor([1.0, 0.5, 0.0])).view(3, 3, 1, 1))
    out = upscale_image(tint, 2, 1.0, read_image(tmp_path / "g.png"), TilePlan(8, 0))
    expected = round(100 / 255 * (0.299 * 1.0 + 0.587 * 0.5) * 255)  # Y = .299 R + .587 G + .114 B
    assert set(np.asarray(out).ravel().tolist()) == {expected}


def test_sixteen_bit_gray_is_scaled_by_65535(tmp_path: Path):
    values = np.array([[0, 257, 32768], [65535, 1000, 50000]], dtype=np.uint16)
    _png16(tmp_path / "g16.png", values, color_type=0)
    loaded = read_image(tmp_path / "g16.png")
    assert loaded.gray and loaded.mode.startswith("I")
    torch.testing.assert_close(loaded.rgb[0, 1], torch.from_numpy(values.astype(np.float32) / 65535))
    out = _run_nearest(tmp_path / "g16.png")
    assert out.mode == "L"
    assert np.array_equal(np.asarray(out), _nearest(np.round(values / 65535 * 255).astype(np.uint8)))


def test_sixteen_bit_rgb_is_in_unit_range(tmp_path: Path):
    values = np.random.default_rng(2).integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    _png16(tmp_path / "c16.png", values, color_type=2)
    loaded = read_image(tmp_path / "c16.png")
    expected = torch.from_numpy(values.astype(np.float32) / 65535).permute(2, 0, 1)
    assert (loaded.rgb[0] - expected).abs().max() <= 1 / 255


def test_alpha_is_upscaled_bicubically_and_reattached(tmp_path: Path, rgb_array: np.ndarray):
    alpha = np.random.default_rng(3).integers(0, 256, (9, 7), dtype=np.uint8)
    Image.fromarray(np.dstack([rgb_array, alpha]), mode="RGBA").save(tmp_path / "a.png")
    out = _run_nearest(tmp_path / "a.png")
    assert out.mode == "RGBA"
    pixels = np.asarray(out)
    assert np.array_equal(pixels[..., :3], _nearest(rgb_array))
    bicubic = Image.fromarray(alpha, mode="L").resize((14, 18), Image.Resampling.BICUBIC)
    assert np.array_equal(pixels[..., 3], np.asarray(bicubic))


def test_gray_with_alpha_stays_la(tmp_path: Path, rgb_array: np.ndarray):
    Image.fromarray(np.dstack([rgb_array[..., 0], rgb_array[..., 1]]), mode="LA").save(tmp_path / "la.png")
    out = _run_nearest(tmp_path / "la.png")
    assert out.mode == "LA" and out.size == (14, 18)
    assert np.array_equal(np.asarray(out)[..., 0], _nearest(rgb_array[..., 0]))


@pytest.mark.parametrize("transparent", [False, True])
def test_palette_images_expand(tmp_path: Path, rgb_array: np.ndarray, transparent: bool):
    pal = Image.fromarray(rgb_array).quantize(colors=16)
    if transparent:
        pal.info["transparency"] = 0
        pal.save(tmp_path / "p.png", transparency=0)
    else:
        pal.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    out = _run_nearest(tmp_path / "p.png")
    expanded = np.asarray(Image.open(tmp_path / "p.png").convert("RGBA" if transparent else "RGB"))
    assert out.mode == ("RGBA" if transparent else "RGB")
    assert np.array_equal(np.asarray(out)[..., :3], _nearest(expanded[..., :3]))
    if transparent:
        assert (np.asarray(out)[..., 3] < 255).any()


def test_unreadable_image_is_a_data_error_naming_it(tmp_path: Path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(DataError, match="broken.png"):
        read_image(bad)
    good = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good)
    good.write_bytes(good.read_bytes()[:200])
    with pytest.raises(DataError, match="cut.png"):
        read_image(good)


# ---- the command --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def carn_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A narrow CARN-M x4 with random weights: a real zoo architecture, quick on the CPU."""
    spec = spec_by_name("carn-m")
    assert spec is not None
    torch.manual_seed(0)
    model = spec.build(**{**spec.defaults, **spec.examples[0], "num_feat": 8})
    path = tmp_path_factory.mktemp("ckpt") / "carn.pth"
    torch.save(model.state_dict(), path)
    return path


def test_upscale_command_writes_named_outputs_and_refuses_overwrite(tmp_path: Path, carn_ckpt: Path, rgb_array):
    Image.fromarray(rgb_array).save(tmp_path / "one.png")
    Image.fromarray(rgb_array[..., 0], mode="L").save(tmp_path / "two.jpg")
    out = tmp_path / "out"
    args = ["upscale", carn_ckpt, tmp_path / "one.png", tmp_path / "two.jpg", "-o", out]
    result = run_cli(*args, "--json")
    assert result.code == 0, result.err
    one, two = Image.open(out / "one_x4.png"), Image.open(out / "two_x4.png")
    assert (one.mode, one.size) == ("RGB", (28, 36)) and (two.mode, two.size) == ("L", (28, 36))
    before = (out / "one_x4.png").read_bytes()
    again = run_cli(*args)  # refused after the model loaded: its scale-probe warning line comes first
    assert again.code == 2 and "one_x4.png" in again.err_lines[-1] and "Traceback" not in again.err, again.err
    assert (out / "one_x4.png").read_bytes() == before
    assert run_cli(*args, "--force", "--tile", "4", "--tile-overlap", "2").code == 0
    assert sorted(p.name for p in out.iterdir()) == ["one_x4.png", "two_x4.png"], "no temp files left behind"


def test_upscale_bad_image_exits_2_with_one_line(tmp_path: Path, carn_ckpt: Path):
    bad = tmp_path / "notanimage.png"
    bad.write_text("hello")
    run_console("upscale", carn_ckpt, bad, "-o", tmp_path / "o", timeout=120).refused("notanimage.png")


# ---- bring your own architecture ----------------------------------------------------------------

USER_MODULE = '''
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Config:  # needs its module in sys.modules to be created
    feat: int


class TinySR(nn.Module):
    def __init__(self, scale: int = 2, feat: int = 8) -> None:
        super().__init__()
        self.cfg = Config(feat)
        self.body = nn.Conv2d(3, feat, 3, padding=1)
        self.up = nn.Sequential(nn.Conv2d(feat, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(torch.relu(self.body(x)))


class NoScaleArg(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Sequential(nn.Conv2d(3, 27, 3, padding=1), nn.PixelShuffle(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)
'''


@pytest.fixture
def user_module(tmp_path: Path) -> Path:
    path = tmp_path / "my_net.py"
    path.write_text(USER_MODULE)
    return path


def _save_user(tmp_path: Path, user_module: Path, cls: str, **kwargs) -> Path:
    namespace: dict = {"__name__": "user_mod_for_test"}
    sys.modules["user_mod_for_test"] = type(sys)("user_mod_for_test")
    exec(compile(user_module.read_text(), str(user_module), "exec"), namespace)  # build the weights to load
    path = tmp_path / f"{cls}.pth"
    torch.save(namespace[cls](**kwargs).state_dict(), path)
    return path


def test_user_arch_gets_scale_and_options(tmp_path: Path, user_module: Path):
    ckpt = _save_user(tmp_path, user_module, "TinySR", scale=3, feat=4)
    desc = load(ckpt, arch=f"{user_module}:TinySR", arch_opts={"scale": 3, "feat": 4})
    assert (desc.arch, desc.scale, desc.hparams["feat"]) == ("user:TinySR", 3, 4)
    assert desc.model(torch.rand(1, 3, 5, 6)).shape == (1, 3, 15, 18)
    rebuilt = desc.spec.build(**desc.hparams)  # what binarize does: rebuild from the recorded hparams
    rebuilt.load_state_dict(desc.model.state_dict())


def test_user_arch_scale_is_probed_when_not_given(tmp_path: Path, user_module: Path):
    ckpt = _save_user(tmp_path, user_module, "NoScaleArg")
    desc = load(ckpt, arch=f"{user_module}:NoScaleArg", arch_opts={"input_range": 255})
    assert desc.scale == 3 and desc.input_range == 255
    desc.spec.build(**desc.hparams)  # scale/input_range are not passed to a class that does not take them


def test_user_arch_through_the_command(tmp_path: Path, user_module: Path, rgb_array):
    ckpt = _save_user(tmp_path, user_module, "TinySR", scale=2, feat=8)
    Image.fromarray(rgb_array).save(tmp_path / "im.png")
    result = run_cli("upscale", ckpt, tmp_path / "im.png", "-o", tmp_path / "o", "--arch", f"{user_module}:TinySR",
                     "--arch-opt", "feat=8")
    assert result.code == 0, result.err
    assert Image.open(tmp_path / "o" / "im_x2.png").size == (14, 18)


@pytest.mark.parametrize(
    ("arch", "match"), [("missing.py:TinySR", "not found"), ("{mod}:Nope", "no nn.Module class 'Nope'")]
)
def test_user_arch_errors_name_the_problem(tmp_path: Path, user_module: Path, arch: str, match: str):
    ckpt = _save_user(tmp_path, user_module, "TinySR")
    with pytest.raises(DetectionError, match=match):
        load(ckpt, arch=arch.format(mod=user_module))


@pytest.mark.slow
def test_real_imdn_upscale_beats_bicubic_on_set5(tmp_path: Path, checkpoints: Path, benchmarks: Path):
    """`scales upscale` with the real IMDN_x4.pth on Set5 LR x4: Y-PSNR against HR clearly above
    MATLAB-exact bicubic (published: 32.21 vs 28.42)."""
    from scales_cli.metrics.color import load_image, modcrop
    from scales_cli.metrics.quality import score
    from scales_cli.metrics.resize import imresize

    lr_files = sorted((benchmarks / "Set5" / "LR_bicubic" / "X4").glob("*.png"))
    assert len(lr_files) == 5
    result = run_cli("upscale", checkpoints / "IMDN_x4.pth", *lr_files, "-o", tmp_path)
    assert result.code == 0, result.err
    model_db, bicubic_db = [], []
    for lr_path in lr_files:
        name = lr_path.stem[: -len("x4")]
        hr = modcrop(load_image(benchmarks / "Set5" / "HR" / f"{name}.png"), 4)
        sr = load_image(tmp_path / f"{lr_path.stem}_x4.png")
        model_db.append(score(sr, hr, border=4).psnr)
        bicubic_db.append(score(imresize(load_image(lr_path), 4), hr, border=4).psnr)
    model, bicubic = np.mean(model_db), np.mean(bicubic_db)
    assert bicubic == pytest.approx(28.42, abs=0.015)
    assert model > bicubic + 3.0
    assert model == pytest.approx(32.21, abs=0.03)


def test_output_folder_that_is_a_file_exits_2(tmp_path: Path, carn_ckpt: Path, rgb_array):
    Image.fromarray(rgb_array).save(tmp_path / "im.png")
    (tmp_path / "taken").write_text("not a folder")
    line = run_cli("upscale", carn_ckpt, tmp_path / "im.png", "-o", tmp_path / "taken").refused("taken")
    assert "not a folder" in line
    assert (tmp_path / "taken").read_text() == "not a folder"


def test_unsupported_mode_is_refused_before_any_output(tmp_path: Path, carn_ckpt: Path, rgb_array):
    """A float image after a good one: nothing is written (the mode is read from the header up front)."""
    Image.fromarray(rgb_array).save(tmp_path / "good.png")
    Image.fromarray(np.zeros((6, 5), dtype=np.float32), mode="F").save(tmp_path / "float.tif")
    out = tmp_path / "o"
    line = run_cli("upscale", carn_ckpt, tmp_path / "good.png", tmp_path / "float.tif", "-o", out).refused("float.tif")
    assert "not supported" in line
    assert not out.exists()


def test_negative_tile_is_a_one_line_error():
    with pytest.raises(ScalesError, match=r"tile -5: expected a tile edge"):
        plan_tiles(600, 600, -5, None)


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ("def broken(:\n", r"importing .*bad_net.py failed \(SyntaxError at line 1"),
        ("import torch\n\nraise RuntimeError('needs a GPU')\n", r"failed \(RuntimeError at line 3: needs a GPU\)"),
        ("import no_such_module_for_scales_test\n", r"ModuleNotFoundError at line 1"),
    ],
)
def test_user_arch_that_fails_to_import_is_one_line(tmp_path: Path, carn_ckpt: Path, source: str, match: str):
    bad = tmp_path / "bad_net.py"
    bad.write_text(source)
    with pytest.raises(DetectionError, match=match):
        load(carn_ckpt, arch=f"{bad}:Net")
    run_cli("inspect", carn_ckpt, "--arch", f"{bad}:Net").refused("bad_net.py")


def test_user_arch_may_import_a_sibling_file(tmp_path: Path, user_module: Path):
    """Official repositories split networks over files (``from common import ...``): the file's folder is importable."""
    (tmp_path / "blocks_for_scales_test.py").write_text(USER_MODULE)
    wrapper = tmp_path / "wrapper_net.py"
    wrapper.write_text("from blocks_for_scales_test import TinySR as Wrapped\n")
    ckpt = _save_user(tmp_path, user_module, "TinySR", scale=2, feat=8)
    desc = load(ckpt, arch=f"{wrapper}:Wrapped", arch_opts={"scale": 2})
    assert desc.scale == 2 and str(tmp_path) not in sys.path


@pytest.mark.parametrize(("name", "available", "count", "match"), [
    ("tpu", True, 1, "expected cpu or cuda"),
    ("cuda", False, 0, "CUDA is not available"),
    ("cuda:7", True, 1, r"has 1 CUDA device\(s\)"),
])
def test_device_errors_are_one_line(monkeypatch: pytest.MonkeyPatch, name: str, available: bool, count: int, match: str):
    from scales_cli.cli.upscale_cmd import _device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    with pytest.raises(ScalesError, match=match):
        _device(name)


@pytest.mark.parametrize("name", ["cuda:", "cpu:0", "cuda:x"])
def test_device_index_must_be_a_number(monkeypatch: pytest.MonkeyPatch, name: str):
    """Every command checks --device with one rule (``cli._common.parse_device``): cpu or cuda[:N]."""
    from scales_cli.cli.upscale_cmd import _device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ScalesError, match="expected cpu or cuda"):
        _device(name)
