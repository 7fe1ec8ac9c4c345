"""The zoo's students reproduce their manifests through ``scales report``, and ``scales zoo`` lists them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from scales_cli.zoo import read_zoo, store_float16

ZOO = Path(__file__).resolve().parents[1] / "zoo"
ENTRIES = read_zoo(ZOO) if ZOO.is_dir() else []


def test_zoo_lists_every_manifest(tmp_path: Path):
    (tmp_path / "b.json").write_text(json.dumps({"name": "b", "file": "b.safetensors", "results": {"Set5": {"psnr": 30.0}}}))
    (tmp_path / "a.json").write_text(json.dumps({"name": "a", "file": "a.safetensors"}))
    result = run_cli("zoo", "--dir", tmp_path, "--json")
    assert result.code == 0, result.err
    assert [e["name"] for e in json.loads(result.out)] == ["a", "b"]
    table = run_cli("zoo", "--dir", tmp_path)
    assert table.code == 0 and "30.00" in table.out and "missing" in table.out
    if ZOO.is_dir():  # the repository's own zoo lists every manifest it holds
        shipped = run_cli("zoo", "--json")
        assert shipped.code == 0 and [e["name"] for e in json.loads(shipped.out)] == [e.name for e in ENTRIES]


@pytest.mark.slow
@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_zoo_student_reproduces_its_manifest(entry, benchmarks: Path, tmp_path: Path):
    assert entry.path.is_file(), f"{entry.manifest} names a missing file"
    out = tmp_path / "report.json"
    result = run_cli("report", entry.path, "--data", benchmarks / "Set5", "--data", benchmarks / "Set14", "--json", out)
    assert result.code == 0, result.err
    row = next(r for r in json.loads(out.read_text())["groups"][0]["rows"] if r["kind"] == "model")
    for dataset, expected in entry.raw["results"].items():
        assert row["results"][dataset]["psnr"] == pytest.approx(expected["psnr"], abs=0.01), dataset
        assert row["results"][dataset]["ssim"] == pytest.approx(expected["ssim"], abs=1e-4), dataset
    teacher = entry.raw["teacher"]
    assert len(teacher["sha256"]) == 64 and teacher["license"] == "MIT"


def test_zoo_errors_are_one_line(tmp_path: Path):
    (tmp_path / "broken.json").write_text("{not json")
    result = run_cli("zoo", "--dir", tmp_path)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1 and "broken.json" in result.err
    result = run_cli("zoo", "--dir", tmp_path / "nope")
    assert result.code == 2 and "no zoo folder" in result.err


def test_float16_storage_loads_and_keeps_metadata(tmp_path: Path):
    import torch
    from safetensors import safe_open

    from scales_cli.archs._registry import spec_by_name
    from scales_cli.loading import load

    torch.manual_seed(0)
    teacher = tmp_path / "t.pth"
    torch.save(spec_by_name("imdn").build(scale=2, in_nc=3, nf=16, num_modules=1, out_nc=3).state_dict(), teacher)
    student = tmp_path / "s.safetensors"
    assert run_cli("binarize", teacher, "-o", student).code == 0
    half = store_float16(student, tmp_path / "h.safetensors")
    assert half.stat().st_size < 0.6 * student.stat().st_size
    with safe_open(str(half), "pt") as fh:
        assert fh.metadata()["scales.storage"] == "float16"
        assert all(fh.get_tensor(k).dtype in (torch.float16, torch.int64) for k in fh.keys())
    a, b = load(student), load(half)
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert (a.model(x) - b.model(x)).abs().max() < 5e-2
