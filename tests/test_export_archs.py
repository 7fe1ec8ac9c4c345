"""Export parity over architectures: small random configurations of the paper's six networks, and
(slow) every real checkpoint in ../shared binarized with its default recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scales_cli.archs._registry import spec_by_name
from scales_cli.export.openvino import UnsupportedLayerError
from scales_cli.export.pipeline import FORMATS, UnsupportedModelError, export_model
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
}


WINDOWED = {"swinir", "hat"}


@pytest.fixture(scope="module")
def lr_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lr")
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a.png": (19, 23), "b.png": (16, 12)}.items():
        coarse = (rng.random((h // 3 + 2, w // 3 + 2, 3)) * 255).astype(np.uint8)
        Image.fromarray(coarse).resize((w, h), Image.BICUBIC).save(folder / name)
    return folder


def _student(arch: str):  # noqa: ANN202
    spec = spec_by_name(arch)
    torch.manual_seed(0)
    model = spec.build(**{**spec.defaults, **SMALL[arch]}).eval()
    student, report = rewrite(model, load_recipe(default_recipe_name(model, region_of=spec.region_of)), region_of=spec.region_of)
    assert report.binarized, arch
    return student.eval(), spec.input_range


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("arch", list(SMALL))
def test_small_students_export_with_parity(arch: str, fmt: str, lr_dir: Path, tmp_path: Path):
    student, input_range = _student(arch)
    chosen, _ = FORMATS[fmt]
    if arch in WINDOWED:  # refused in one line before any work (see pipeline.refuse_windowed)
        with pytest.raises(UnsupportedModelError, match=r"^module .*windowed attention"):
            export_model(student, tmp_path / f"m{chosen.suffix}", fmt, input_range=input_range, check_dir=lr_dir)
        assert list(tmp_path.iterdir()) == []
        return
    try:
        result = export_model(student, tmp_path / f"m{chosen.suffix}", fmt, input_range=input_range, check_dir=lr_dir)
    except UnsupportedLayerError as exc:  # a clear refusal naming the layer is the documented outcome
        assert fmt == "openvino" and exc.message.startswith("layer ") and len(exc.message.splitlines()) == 1
        return
    assert result.parity is not None and result.parity.ok, result.parity.to_json()


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
