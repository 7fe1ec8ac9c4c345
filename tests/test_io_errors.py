"""Bad checkpoints end in exit code 2 and one line naming the file, never a traceback — through the
real console entry point — and the wrappers official repositories use all load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from conftest import run_cli

from scales_cli.archs import detect
from scales_cli.loading import load
from scales_cli.archs._registry import spec_by_name
from scales_cli.errors import DetectionError
from scales_cli.io import read_checkpoint


def _inspect(path: Path) -> str:
    """Run ``python -m scales_cli inspect PATH``; assert exit 2 and a single traceback-free line naming it."""
    proc = run_cli("inspect", path)
    assert proc.code == 2, (proc.code, proc.err[-2000:])
    assert "Traceback" not in proc.err
    lines = proc.err.strip().splitlines()
    assert len(lines) == 1, proc.err
    assert str(path) in lines[0]
    return lines[0]


def test_missing_file(tmp_path: Path):
    assert "no such file" in _inspect(tmp_path / "nope.pth")


def test_empty_file(tmp_path: Path):
    (tmp_path / "empty.pth").write_bytes(b"")
    assert "empty" in _inspect(tmp_path / "empty.pth")


def test_directory(tmp_path: Path):
    (tmp_path / "ckpt.pth").mkdir()
    assert "directory" in _inspect(tmp_path / "ckpt.pth")


@pytest.mark.parametrize("name", ["RLFN_x4.pth", "IMDN_x4.pth"])  # zip format; legacy pickle format
def test_truncated_checkpoint(tmp_path: Path, checkpoints: Path, name: str):
    data = (checkpoints / name).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: len(data) // 2])
    message = _inspect(cut)
    assert "truncated" in message or "corrupt" in message or "not a PyTorch checkpoint" in message


def test_png_renamed_pth(tmp_path: Path):
    fake = tmp_path / "photo.pth"
    Image.new("RGB", (8, 8)).save(fake, format="PNG")
    assert "not a PyTorch checkpoint" in _inspect(fake)


def test_pickled_module_is_refused(tmp_path: Path):
    path = tmp_path / "whole_model.pth"
    torch.save(nn.Sequential(nn.Conv2d(3, 3, 3)), path)
    assert "refused" in _inspect(path)


class _CreatesFileWhenUnpickled:
    """Unpickling calls ``open(marker, 'w')``: the file appearing would prove code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("legacy", [False, True])
def test_code_in_a_pickle_never_runs(tmp_path: Path, legacy: bool):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pth"
    payload = {"conv.weight": torch.zeros(1), "extra": _CreatesFileWhenUnpickled(marker)}
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)
    assert not marker.exists()
    message = _inspect(path)
    assert "refused" in message and "open" in message
    assert not marker.exists(), "unpickling executed code"


def test_classifier_state_dict_names_closest_architectures(tmp_path: Path):
    """A resnet-like image classifier is a valid state dict, just not a super-resolution network."""
    shapes = {
        "conv1.weight": (64, 3, 7, 7), "bn1.weight": (64,), "bn1.bias": (64,),
        "bn1.running_mean": (64,), "bn1.running_var": (64,),
        "layer1.0.conv1.weight": (64, 64, 3, 3), "layer1.0.bn1.weight": (64,),
        "layer4.1.conv2.weight": (512, 512, 1, 1), "fc.weight": (1000, 512), "fc.bias": (1000,),
    }
    path = tmp_path / "resnet.pth"
    torch.save({k: torch.zeros(v) for k, v in shapes.items()}, path)
    message = _inspect(path)
    assert "no known super-resolution architecture" in message and "image classifier" in message
    assert "carn-m" in message, "the known architectures are named"


def test_partial_match_names_the_closest_architecture(zoo_state):
    damaged = {k: v for i, (k, v) in enumerate(zoo_state.items()) if i % 3}
    with pytest.raises(DetectionError, match=r"closest: carn-m \(\d+% of its keys; missing"):
        detect(damaged, "damaged.pth")


def test_garbage_safetensors(tmp_path: Path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(bytes(range(256)) * 8)
    assert "safetensors" in _inspect(path)


def test_truncated_safetensors(tmp_path: Path):
    path = tmp_path / "cut.safetensors"
    save_file({"w": torch.rand(64, 64), "b": torch.rand(64)}, str(path))
    path.write_bytes(path.read_bytes()[:5000])
    assert "safetensors" in _inspect(path)


# ---- wrapped formats ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zoo_state() -> dict[str, torch.Tensor]:
    """A registered architecture's state dict (CARN-M, official example configuration, random weights)."""
    spec = spec_by_name("carn-m")
    assert spec is not None
    torch.manual_seed(0)
    return spec.build(**{**spec.defaults, **spec.examples[0]}).state_dict()


def _first_param(desc) -> torch.Tensor:  # noqa: ANN001
    return next(iter(desc.model.state_dict().values()))


def test_params_ema_is_preferred_over_params(tmp_path: Path, zoo_state):
    other = {k: v + 1 for k, v in zoo_state.items()}
    path = tmp_path / "basicsr.pth"
    torch.save({"params": other, "params_ema": zoo_state}, path)
    desc = load(path)
    assert desc.arch == "carn-m"
    key = next(iter(zoo_state))
    assert torch.equal(desc.model.state_dict()[key], zoo_state[key])


@pytest.mark.parametrize("wrapper", ["state_dict", "model", "net", "netG"])
def test_wrappers_and_dataparallel_prefix(tmp_path: Path, zoo_state, wrapper: str):
    path = tmp_path / f"{wrapper}.pth"
    torch.save({wrapper: {f"module.{k}": v for k, v in zoo_state.items()}, "epoch": 7}, path)
    sd = read_checkpoint(path).state_dict
    assert set(sd) == set(zoo_state)
    assert load(path).arch == "carn-m"


def test_safetensors_loads(tmp_path: Path, zoo_state):
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in zoo_state.items()}, str(path))
    desc = load(path)
    assert desc.arch == "carn-m" and desc.scale == spec_by_name("carn-m").examples[0]["scale"]


class _MakesDirWhenUnpickled:
    """Unpickling calls ``os.mkdir(marker)``: torch's unpickler blocks the ``os``/``posix`` module outright
    (another message than for a merely unknown global); the folder appearing would prove code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        import os

        return (os.mkdir, (str(self.marker),))


def test_blocked_module_in_a_pickle_is_refused_by_name(tmp_path: Path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil_os.pth"
    torch.save({"conv.weight": torch.zeros(1), "extra": _MakesDirWhenUnpickled(marker)}, path)
    message = _inspect(path)
    assert "refused: unpickling it would run code" in message and "mkdir" in message, message
    assert not marker.exists(), "unpickling executed code"


def test_atomic_write_refuses_a_folder_target_and_a_file_in_the_way(tmp_path: Path):
    from scales_cli.errors import OutputExistsError, ScalesError
    from scales_cli.io import atomic_write

    (tmp_path / "a_dir").mkdir()
    with pytest.raises(OutputExistsError, match="a_dir: is a directory"):
        atomic_write(tmp_path / "a_dir", lambda tmp: tmp.write_text("x"), force=True)
    (tmp_path / "plain").write_text("keep")
    with pytest.raises(ScalesError, match=r"plain: is a file, not a folder"):
        atomic_write(tmp_path / "plain" / "sub" / "out.txt", lambda tmp: tmp.write_text("x"))
    assert (tmp_path / "plain").read_text() == "keep"
