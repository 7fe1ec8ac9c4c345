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


def test_zoo_says_how_long_and_where_each_student_trained(tmp_path: Path):
    from scales_cli.zoo import ZooEntry

    gpu = {"trained_on": "NVIDIA H200", "training_device": "lent NVIDIA H200 (torch 2.11.0+cu130), shared with four other fine-tunes"}
    staged = {"stages": [{"budget": "7m", **gpu}, {"budget": "3m30s", **gpu},
                         {"budget": "40m", "trained_on": "CPU", "training_device": "this machine's CPU (x86_64), 1 thread(s)"}]}
    older = {"steps": 600, "budget": None}  # written before trained_on existed: trained on the CPU
    show = [ZooEntry("x", tmp_path / "x.safetensors", tmp_path / "x.json", raw).trained for raw in (staged, older)]
    assert show == ["7m + 3m30s on NVIDIA H200, 40m on CPU", "600 steps on CPU"]
    (tmp_path / "x.json").write_text(json.dumps({"name": "x", "file": "x.safetensors", **staged}))
    table = run_cli("zoo", "--dir", tmp_path)
    assert table.code == 0 and "H200" in table.out, table.out


def test_zoo_shows_the_share_of_the_teachers_gain_each_student_keeps(tmp_path: Path):
    from scales_cli.zoo import ZooEntry

    def psnr(value: float) -> dict:
        return {"Set14": {"psnr": value}}

    raw = {"results": psnr(27.5), "teacher_results": psnr(28.5), "bicubic_results": psnr(26.5)}
    assert ZooEntry("x", tmp_path / "x.safetensors", tmp_path / "x.json", raw).kept("Set14") == pytest.approx(0.5)
    for missing in ("results", "teacher_results", "bicubic_results"):  # any figure absent: nothing to divide
        assert ZooEntry("x", tmp_path, tmp_path, {k: v for k, v in raw.items() if k != missing}).kept("Set14") is None
    flat = {**raw, "teacher_results": psnr(26.5)}  # a teacher no better than bicubic has no gain to keep
    assert ZooEntry("x", tmp_path, tmp_path, flat).kept("Set14") is None
    for name in ("rfdn_x4-cnn", "rfdn_x4-cnn-int8-and-a-long-tag"):
        (tmp_path / f"{name}.json").write_text(json.dumps({"name": name, "file": f"{name}.safetensors", **raw}))
    table = run_cli("zoo", "--dir", tmp_path)
    assert table.code == 0 and "50.00 %" in table.out, table.out
    listed = run_cli("zoo", "--dir", tmp_path, "--json")
    assert [e["kept"] for e in json.loads(listed.out)] == [{"Set5": None, "Set14": pytest.approx(0.5)}] * 2
    assert "rfdn_x4-cnn-int8-and-a-long-tag" in table.out, "a student's name was shortened"


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_shipped_manifests_name_the_device_of_every_stage(entry):
    """A stage described in words (``training_device``) also names its device (``trained_on``), the field the
    listing reads: a stage that trained on a GPU and lacks it would be listed as a CPU one. Its train sets are a list."""
    for stage in entry.raw.get("stages") or [entry.raw]:
        assert "training_device" not in stage or stage.get("trained_on"), f"{entry.manifest}: stage without trained_on"
        assert isinstance(stage.get("data", {}).get("train_hr", []), list), f"{entry.manifest}: data.train_hr not a list"


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


def _build_zoo_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_zoo", ZOO.parent / "benchmarks" / "build_zoo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_continued_zoo_build_keeps_the_earlier_commands_and_sums_its_stages():
    build_zoo = _build_zoo_module()
    first = {"commands": ["scales binarize T.pth -o c.safetensors", "scales finetune c.safetensors --budget 50m",
                          "# zoo/x-cnn.safetensors = out/f/student.safetensors with float16 tensors (scales_cli.zoo.store_float16)",
                          "scales report zoo/x-cnn.safetensors"],
             "steps": 8779, "budget": "50m", "lr": 0.002, "wall_time_s": 3017.6, "device": "CPU A"}
    assert build_zoo.earlier_commands(first) == first["commands"][:2]  # not the old student's report
    second = {"steps": 6000, "budget": "70m", "lr": 0.001, "wall_time_s": 4210.0, "device": "CPU B", "results": {}}
    merged = build_zoo.with_earlier_stages(second, first)
    assert (merged["steps"], merged["budget"], merged["wall_time_s"], merged["lr"]) == (14779, "50m + 70m", 7227.6, 0.001)
    assert [s["device"] for s in merged["stages"]] == ["CPU A", "CPU B"]
    third = build_zoo.with_earlier_stages({**second, "budget": "10m", "steps": 1}, merged)  # a third stage extends the list
    assert len(third["stages"]) == 3 and third["steps"] == 14780 and third["budget"] == "50m + 70m + 10m"
