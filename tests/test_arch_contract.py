"""One contract over every registered architecture: each official example configuration builds,
round-trips its own state dict through detection with exact hyper-parameter recovery, loads
strictly, and upscales an odd-sized input by its scale."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from scales_cli.archs import all_specs
from scales_cli.loading import load

CASES = [(spec, i) for spec in all_specs() for i in range(len(spec.examples))]


def _id(case) -> str:
    spec, i = case
    ex = spec.examples[i]
    return f"{spec.name}-x{ex.get('scale')}-{i}"


def test_every_spec_has_examples():
    assert all_specs(), "no architectures registered"
    for spec in all_specs():
        assert spec.examples, f"{spec.name} declares no example configurations"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_roundtrip_detection(case, tmp_path: Path):
    spec, i = case
    config = dict(spec.examples[i])
    torch.manual_seed(0)
    model = spec.build(**{**spec.defaults, **config})
    path = tmp_path / "weights.pth"
    torch.save(model.state_dict(), path)
    # Values that cannot be read off the tensors (spec.defaults, e.g. PAN x2 vs x3) come from the
    # user as --arch-opt; pass them the same way.
    desc = load(path, arch_opts={k: v for k, v in config.items() if k in spec.defaults})
    assert desc.arch == spec.name
    for key, value in config.items():
        if key in spec.defaults:
            continue  # not inferable: comes from the defaults / --arch-opt
        assert desc.hparams[key] == value, f"{spec.name}: {key} inferred {desc.hparams[key]!r}, built with {value!r}"
    assert desc.scale == config["scale"]
    assert desc.params == sum(p.numel() for p in model.parameters())
    if i == 0:  # one forward per architecture keeps the suite fast
        x = torch.rand(1, 3, 13, 11) * desc.input_range
        with torch.no_grad():
            y = desc.model(x)
        assert y.shape == (1, 3, 13 * desc.scale, 11 * desc.scale)
