"""``scales bench``: interleaved timing and ratios of medians."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import run_cli
from scales_cli.archs._registry import spec_by_name
from scales_cli.bench import BenchResult, Timing, bench
from scales_cli.loading import load


def test_speedup_is_the_ratio_of_medians():
    result = BenchResult((8, 8), 1, 3, (Timing("slow", "torch", (3.0, 1.0, 2.0)), Timing("fast", "openvino", (0.5, 0.4, 9.0))))
    assert result.speedup("fast", over="slow") == pytest.approx(2.0 / 0.5)
    assert result.to_json()["models"][1]["speedup_vs_first"] == pytest.approx(4.0)


def test_bench_times_each_model_every_repeat(tmp_path: Path):
    torch.manual_seed(0)
    paths = []
    for nf in (16, 32):
        path = tmp_path / f"imdn{nf}.pth"
        torch.save(spec_by_name("imdn").build(scale=2, in_nc=3, nf=nf, num_modules=1, out_nc=3).state_dict(), path)
        paths.append(path)
    runs = []
    result = bench([(p.name, load(p)) for p in paths], size=(16, 12), repeats=3, threads=1, on_run=lambda: runs.append(1))
    assert len(runs) == 6 and all(len(t.seconds) == 3 for t in result.timings)
    cli = run_cli("bench", *paths, "--size", "16x12", "--repeats", "2", "--threads", "1", "--json")
    assert cli.code == 0, cli.err
    assert [m["label"] for m in json.loads(cli.out)["models"]] == [str(p) for p in paths]


@pytest.mark.parametrize(("args", "says"), [(["--size", "0x3"], "--size"), (["--repeats", "0"], "--repeats")])
def test_bench_bad_options_are_one_line(tmp_path: Path, args, says):
    path = tmp_path / "m.pth"
    torch.save(spec_by_name("imdn").build(scale=2, in_nc=3, nf=16, num_modules=1, out_nc=3).state_dict(), path)
    result = run_cli("bench", path, *args)
    assert result.code == 2 and says in result.err and len(result.err.strip().splitlines()) == 1
