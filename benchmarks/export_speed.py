"""End-to-end CPU speed of exported students against their FP teacher (issue 12, point 6).

One process, interleaved repeats (every candidate once per round, so load drifts hit all alike),
``--threads`` threads everywhere, one 1x3xHxW input. Candidates:

- torch FP teacher, torch student (what a user runs today);
- onnxruntime FP teacher (float ONNX), OpenVINO FP teacher (IR converted from that ONNX);
- OpenVINO binary student, with and without the spatial-branch rewrite (scales_cli.export.graph);
- every extra ``--student`` file (recipe variants), OpenVINO, rewrite on.

Prints medians (ms), ratios against the OpenVINO and torch teachers, and the OpenVINO student's time
split by node type from OpenVINO's profiling counters (``PERF_COUNT``); ``--json FILE`` saves it all.

    python benchmarks/export_speed.py ../shared/checkpoints/IMDN_x4.pth imdn_cnn.safetensors
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scales_cli.loading import load  # noqa: E402
from scales_cli.export import onnx_float, openvino  # noqa: E402
from scales_cli.export._onnx import example_input, onnx_bytes  # noqa: E402
from scales_cli.export.graph import export_network  # noqa: E402
from scales_cli.export.runtime import OnnxRuntime, OpenVinoRuntime  # noqa: E402
from scales_cli.machine import probe  # noqa: E402


def ov_model(net: torch.nn.Module, spatial_pointwise: bool = True):  # noqa: ANN201
    return openvino.model_of(export_network(net, openvino.graph_options(spatial_pointwise)), example_input(), 17)


def time_split(runtime: OpenVinoRuntime, x: np.ndarray, rounds: int = 3) -> dict[str, float]:
    """Share of the summed per-node real time by node type (median over ``rounds`` profiled runs)."""
    compiled = runtime.compiled(tuple(x.shape), profile=True)
    request = compiled.create_infer_request()
    totals: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        request.infer({0: x})
        per_type: dict[str, float] = defaultdict(float)
        for info in request.profiling_info:
            if info.status.name == "EXECUTED":
                per_type[info.node_type] += info.real_time.total_seconds()
        for k, v in per_type.items():
            totals[k].append(v)
    medians = {k: statistics.median(v) for k, v in totals.items()}
    whole = sum(medians.values()) or 1.0
    return dict(sorted(((k, v / whole) for k, v in medians.items()), key=lambda kv: -kv[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("teacher", type=Path, help="FP checkpoint")
    ap.add_argument("student", type=Path, help="student file from scales binarize")
    ap.add_argument("--student-variant", type=Path, action="append", default=[], help="extra students (recipe variants)")
    ap.add_argument("--size", default="180x320", help="HxW of the input (default 180x320)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=12)
    ap.add_argument("--skip-torch-student", action="store_true", help="the slowest candidate; skip it for quick looks")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.split("x"))
    teacher = load(args.teacher)
    student = load(args.student)
    x = (np.random.default_rng(0).random((1, 3, h, w)) * teacher.input_range).astype(np.float32)
    xt = torch.from_numpy(x)

    def torch_runner(model: torch.nn.Module) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode():
                return model(xt)

        return run

    def rt(runner: Callable[[np.ndarray], np.ndarray]) -> Callable[[], object]:
        runner(x)  # warm-up / compile outside the timed rounds
        return lambda: runner(x)

    ov_student = OpenVinoRuntime(ov_model(student.model), threads=args.threads)
    candidates: dict[str, Callable[[], object]] = {"torch FP teacher": torch_runner(teacher.model)}
    if not args.skip_torch_student:
        candidates["torch student"] = torch_runner(student.model)
    candidates["onnxruntime FP teacher"] = rt(OnnxRuntime(onnx_float.graph_bytes(teacher.model, example_input(), 17), threads=args.threads))
    candidates["OpenVINO FP teacher"] = rt(OpenVinoRuntime(ov_model(teacher.model), threads=args.threads))
    candidates["OpenVINO student"] = rt(ov_student)
    candidates["OpenVINO student, no spatial rewrite"] = rt(OpenVinoRuntime(ov_model(student.model, False), threads=args.threads))
    variants = {}
    for path in args.student_variant:
        desc = load(path)
        name = f"OpenVINO student {desc.extra.get('student', {}).get('recipe', path.stem)} ({path.name})"
        variants[name] = path
        candidates[name] = rt(OpenVinoRuntime(ov_model(desc.model), threads=args.threads))

    times: dict[str, list[float]] = {k: [] for k in candidates}
    for r in range(args.repeats):
        for name, run in candidates.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
        print(f"round {r + 1}/{args.repeats}", file=sys.stderr, flush=True)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    ov_teacher, torch_teacher = med["OpenVINO FP teacher"], med["torch FP teacher"]
    print(f"{'candidate':48s} {'median ms':>10s} {'vs OV teacher':>14s} {'vs torch teacher':>17s}")
    for k, v in med.items():
        print(f"{k:48s} {v:10.1f} {ov_teacher / v:13.2f}x {torch_teacher / v:16.2f}x")
    machine = probe(args.threads)
    print(f"machine: {machine.describe()}")
    split = time_split(ov_student, x)
    print("OpenVINO student time split by node type (profiling counters):")
    for k, v in split.items():
        if v >= 0.005:
            print(f"  {k:28s} {v:6.1%}")
    if args.json:
        args.json.write_text(json.dumps({
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": {**machine.to_json(), "loadavg": os.getloadavg()},
            "size": [h, w], "threads": args.threads, "repeats": args.repeats,
            "median_ms": med, "all_ms": {k: [t * 1000 for t in v] for k, v in times.items()},
            "split": split, "variants": {k: str(v) for k, v in variants.items()},
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
