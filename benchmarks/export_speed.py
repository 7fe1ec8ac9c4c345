"""End-to-end CPU speed of exported students against their FP teacher (issue 12, point 6).

One process, interleaved repeats (every candidate once per round, so load drifts hit all alike),
``--threads`` threads everywhere, one 1x3xHxW input. Candidates:

- torch FP teacher, torch student (what a user runs today);
- onnxruntime FP teacher (float ONNX), OpenVINO FP teacher (IR converted from that ONNX);
- OpenVINO binary student as export writes it (spatial-branch rewrite of scales_cli.export.graph and the
  lean passes of scales_cli.export.lean), without the lean passes, and without the spatial rewrite;
- every extra ``--student`` file (recipe variants), OpenVINO, rewrite on.

Prints medians (ms), ratios against the OpenVINO and torch teachers, and the OpenVINO student's time
split by node type and kernel from OpenVINO's profiling counters (``PERF_COUNT``), before and after the
lean passes side by side, with the binary convolutions' own time against the rest (how close the
student is to the limit a binary network's convolutions set); ``--json FILE`` saves it all.

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
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scales_cli.loading import load  # noqa: E402
from scales_cli.export import onnx_float, openvino  # noqa: E402
from scales_cli.export._onnx import example_input, onnx_bytes  # noqa: E402
from scales_cli.export.graph import export_network  # noqa: E402
from scales_cli.export.lean import make_lean  # noqa: E402
from scales_cli.export.runtime import OnnxRuntime, OpenVinoRuntime  # noqa: E402
from scales_cli.machine import probe  # noqa: E402


def ov_model(net: torch.nn.Module, spatial_pointwise: bool = True, lean: bool = True):  # noqa: ANN201
    model = openvino.model_of(export_network(net, openvino.graph_options(spatial_pointwise)), example_input(), 17)
    if lean:
        make_lean(model)
    return model


def interleaved_times(candidates: dict[str, Callable[[], object]], repeats: int, progress: bool = False) -> dict[str, list[float]]:
    """Wall seconds of each candidate's call, ``repeats`` rounds taken in turn (interleaved, so load drifts
    hit every candidate alike); ``progress``: a line per round on stderr."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for r in range(repeats):
        for name, run in candidates.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
        if progress:
            print(f"round {r + 1}/{repeats}", file=sys.stderr, flush=True)
    return times


def node_kernel(info) -> str:  # noqa: ANN001 - an OpenVINO ProfilingInfo
    """The default key of :func:`time_splits`: "node type kernel", e.g. ``Concat ref_f32``."""
    return f"{info.node_type} {info.exec_type}"


def time_splits(runtimes: dict[str, OpenVinoRuntime], x: np.ndarray, rounds: int = 7, key: Callable[[Any], Hashable] = node_kernel,
                warmup: bool = False) -> dict[str, dict[Hashable, float]]:
    """Per runtime, the summed per-node real time (ms) by ``key`` of each executed node's profiling info,
    median over ``rounds`` profiled runs taken in turn (interleaved, so load drifts hit all alike);
    ``warmup``: one unrecorded run of each first."""
    requests = {name: rt.compiled(tuple(x.shape), profile=True).create_infer_request() for name, rt in runtimes.items()}
    if warmup:
        for request in requests.values():
            request.infer({0: x})
    totals: dict[str, dict[Hashable, list[float]]] = {name: defaultdict(list) for name in runtimes}
    for _ in range(rounds):
        for name, request in requests.items():
            request.infer({0: x})
            per_type: dict[Hashable, float] = defaultdict(float)
            for info in request.profiling_info:
                if info.status.name == "EXECUTED":
                    per_type[key(info)] += info.real_time.total_seconds() * 1000
            for k, v in per_type.items():
                totals[name][k].append(v)
    return {name: {k: statistics.median(v) for k, v in t.items()} for name, t in totals.items()}


def print_splits(splits: dict[str, dict[str, float]]) -> None:
    """Side-by-side table (ms, share of the summed node time) and the binary convolutions' own share."""
    names = list(splits)
    first = splits[names[0]]
    kinds = sorted({k for s in splits.values() for k in s}, key=lambda k: -max(s.get(k, 0.0) for s in splits.values()))
    print("OpenVINO student time by node type and kernel (profiling counters, ms summed over nodes):")
    print(f"  {'node type kernel':40s}" + "".join(f" {n[:22]:>22s}" for n in names))
    for k in kinds:
        if max(s.get(k, 0.0) for s in splits.values()) >= 0.005 * sum(first.values()):
            print(f"  {k:40s}" + "".join(f" {s.get(k, 0.0):9.1f} ({s.get(k, 0.0) / (sum(s.values()) or 1):5.1%})" for s in splits.values()))
    print(f"  {'sum':40s}" + "".join(f" {sum(s.values()):9.1f}         " for s in splits.values()))
    for name, s in splits.items():
        binary = sum(v for k, v in s.items() if k.startswith("BinaryConvolution"))
        print(f"{name}: BinaryConvolution {binary:.1f} ms of {sum(s.values()):.1f} ms summed; the rest costs "
              f"{(sum(s.values()) - binary) / (binary or 1):.1f}x the binary convolutions")


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
    ov_fat = OpenVinoRuntime(ov_model(student.model, lean=False), threads=args.threads)
    candidates["OpenVINO student, no lean passes"] = rt(ov_fat)
    candidates["OpenVINO student, no spatial rewrite"] = rt(OpenVinoRuntime(ov_model(student.model, False), threads=args.threads))
    variants = {}
    for path in args.student_variant:
        desc = load(path)
        name = f"OpenVINO student {desc.extra.get('student', {}).get('recipe', path.stem)} ({path.name})"
        variants[name] = path
        candidates[name] = rt(OpenVinoRuntime(ov_model(desc.model), threads=args.threads))

    times = interleaved_times(candidates, args.repeats, progress=True)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    ov_teacher, torch_teacher = med["OpenVINO FP teacher"], med["torch FP teacher"]
    print(f"{'candidate':48s} {'median ms':>10s} {'vs OV teacher':>14s} {'vs torch teacher':>17s}")
    for k, v in med.items():
        print(f"{k:48s} {v:10.1f} {ov_teacher / v:13.2f}x {torch_teacher / v:16.2f}x")
    machine = probe(args.threads)
    print(f"machine: {machine.describe()}")
    split = time_splits({"before (no lean passes)": ov_fat, "after (lean)": ov_student}, x)
    print_splits(split)
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
