"""Structure the rest of the code relies on: data flows one way (io -> archs -> recipe -> loading),
registries agree, the descriptor carries what downstream code needs, ambiguous scales are settled."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from _arch_helpers import is_windowed
from scales_cli.archs._registry import all_specs, spec_by_name
from scales_cli.binary import BINARY_LAYERS
from scales_cli.loading import load
from scales_cli.recipe.selection import LAYER_TYPES

PKG = Path(__file__).resolve().parents[1] / "scales_cli"


def _imports(folder: Path) -> set[str]:
    """Every module a package's files import (relative imports resolved against scales_cli)."""
    found: set[str] = set()
    for file in folder.rglob("*.py"):
        parts = file.relative_to(PKG.parent).with_suffix("").parts
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = parts[: len(parts) - node.level]
                    found.add(".".join([*base, *(node.module.split(".") if node.module else [])]))
                else:
                    found.add(node.module or "")
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
    return found


@pytest.mark.parametrize(("package", "never"), [
    ("archs", ("scales_cli.recipe", "scales_cli.loading", "scales_cli.cli")),
    ("recipe", ("scales_cli.loading", "scales_cli.cli")),
    ("binary", ("scales_cli.recipe", "scales_cli.archs", "scales_cli.loading", "scales_cli.cli")),
])
def test_data_flows_one_way(package: str, never: tuple[str, ...]):
    bad = sorted(m for m in _imports(PKG / package) if m.startswith(never))
    assert not bad, f"scales_cli/{package} imports {bad}"


def test_layer_types_and_binary_layers_agree():
    """Every layer type the rewrite selects has a binary replacement, and no replacement is unreachable."""
    assert set(LAYER_TYPES) == set(BINARY_LAYERS)


def test_no_function_over_100_lines():
    """Long functions hide state in closures and cannot be timed or reused (issue 19): keep each one short."""
    long = [
        f"{file.relative_to(PKG)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for file in PKG.rglob("*.py")
        for node in ast.walk(ast.parse(file.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 100
    ]
    assert not long, long


def test_one_image_suffix_list():
    """Image discovery has one suffix list (scales_cli.inputs): no module keeps its own tuple of image types."""
    own = [f.name for f in PKG.rglob("*.py") if f.name != "inputs.py" and '".bmp"' in f.read_text()]
    assert not own, own


def test_one_image_decoder():
    """Pillow is opened in one module only (plus the writers)."""
    openers = [f for f in PKG.rglob("*.py") if "Image.open(" in f.read_text()]
    assert [f.name for f in openers] == ["decode.py"], openers


def test_window_models_declare_their_size_multiple():
    for spec in all_specs():
        for example in spec.examples:
            expected = example.get("window_size", 1) if spec.window_hparam else 1
            assert spec.size_multiple({**spec.defaults, **example}) == expected, spec.name


@pytest.mark.parametrize("name", [s.name for s in all_specs() if is_windowed(s)])
def test_window_models_run_on_sides_equal_to_the_window(name: str):
    """Non-square inputs whose short side is one window once broke a ``view`` in window partitioning."""
    spec = spec_by_name(name)
    smallest = min(spec.examples, key=lambda e: e.get("embed_dim", e.get("nf", 0)) * sum(e.get("depths", (1,))))
    model = spec.build(**smallest).eval()
    scale = smallest["scale"]
    for h, w in ((8, 9), (9, 8), (5, 6), (1, 17)):
        with torch.no_grad():
            assert model(torch.rand(1, 3, h, w)).shape[-2:] == (scale * h, scale * w)


# -- scales that shapes cannot tell -----------------------------------------------------------------


def test_multi_scale_carn_m_warns_and_says_how(checkpoints: Path):
    desc = load(checkpoints / "CARN-M.pth")
    assert desc.scale == 4 and desc.scale_source.startswith("default: several scales fit")
    assert len(desc.warnings) == 1 and "--arch-opt scale=" in desc.warnings[0]
    chosen = load(checkpoints / "CARN-M.pth", arch_opts={"scale": 2})
    assert chosen.scale == 2 and chosen.scale_source == "--arch-opt" and not chosen.warnings


def test_probe_settles_the_one_trained_scale(tmp_path: Path, checkpoints: Path):
    """CARN-M with its x3/x4 branches re-initialised: only x2 reconstructs, and the probe says so."""
    sd = torch.load(checkpoints / "CARN-M.pth", map_location="cpu", weights_only=True)
    sd = dict(sd.get("params", sd) if "params" in sd else sd)
    gen = torch.Generator().manual_seed(0)
    for key in [k for k in sd if k.startswith(("upsample.up3.", "upsample.up4."))]:
        sd[key] = torch.randn(sd[key].shape, generator=gen) * 0.05
    path = tmp_path / "carn_x2_only.pth"
    torch.save(sd, path)
    desc = load(path)
    assert desc.scale == 2 and desc.scale_source.startswith("probe"), desc.scale_source
    assert not desc.warnings


def test_scale_read_off_shapes_says_so(checkpoints: Path):
    desc = load(checkpoints / "PAN_x4.pth")
    assert desc.scale == 4 and desc.scale_source == "shapes"


def test_inspect_shows_how_the_scale_was_decided_and_warns_in_one_line(checkpoints: Path):
    from conftest import run_cli

    result = run_cli("inspect", checkpoints / "CARN-M.pth")
    assert result.code == 0
    assert "x4 (default: several scales fit" in result.out
    warnings = result.err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("warning: ") and "--arch-opt scale=N" in warnings[0]
