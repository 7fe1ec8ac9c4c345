"""Each lean pass on its own: the OpenVINO student before and after a chosen set of passes (issue 21 step 3).

Where ``export_speed.py`` compares the whole export against the teachers, this isolates passes: one
student, IRs with the passes named in each ``--variant`` ("split", "" for none),
the largest output difference of each against the IR without passes on one seeded input, interleaved
wall-time medians, and the per-node-type split of each (profiling counters).

    python benchmarks/lean_passes.py zoo/rlfn_x4-cnn.safetensors --variant split --repeats 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from export_speed import interleaved_times, ov_model, print_splits, time_splits  # noqa: E402
from scales_cli.export.lean import make_lean  # noqa: E402
from scales_cli.export.runtime import OpenVinoRuntime  # noqa: E402
from scales_cli.loading import load  # noqa: E402
from scales_cli.machine import probe  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("student", type=Path)
    ap.add_argument("--variant", action="append", default=[], help="passes joined by '+', e.g. split (repeatable)")
    ap.add_argument("--size", default="180x320")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()

    h, w = (int(v) for v in args.size.split("x"))
    desc = load(args.student)
    x = (np.random.default_rng(0).random((1, 3, h, w)) * desc.input_range).astype(np.float32)
    base = ov_model(desc.model, lean=False)
    runtimes = {"no passes": OpenVinoRuntime(base, threads=args.threads)}
    for variant in args.variant:
        model = base.clone()
        counts = make_lean(model, tuple(p for p in variant.split("+") if p))
        print(f"{variant}: patterns rewritten {counts}")
        runtimes[variant] = OpenVinoRuntime(model, threads=args.threads)
    outputs = {name: rt(x) for name, rt in runtimes.items()}  # also compiles, outside the timed rounds
    for name, y in outputs.items():
        print(f"{name}: max |output - no passes| = {float(np.abs(y - outputs['no passes']).max()):.3g}")
    times = interleaved_times({name: (lambda rt=rt: rt(x)) for name, rt in runtimes.items()}, args.repeats)
    for name, t in times.items():
        print(f"{name:24s} median {statistics.median(t) * 1000:8.1f} ms")
    print(f"machine: {probe(args.threads).describe()}")
    print_splits(time_splits(runtimes, x))


if __name__ == "__main__":
    main()
