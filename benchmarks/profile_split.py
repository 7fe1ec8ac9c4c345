"""Where an OpenVINO IR spends its time: per-node real time from the CPU plugin's profiling counters
(``PERF_COUNT``), summed by node type and kernel precision (the exec type's suffix: ``I8``, ``u1``,
``f32``), median of ``--rounds`` profiled runs, at one 1x3xHxW input and ``--threads`` threads, f32
inference hint as ``scales bench`` compiles it.

    python benchmarks/profile_split.py out/int8_baseline/IMDN_x4/*.xml --size 320x180
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from export_speed import time_splits  # noqa: E402 - this script's folder is on sys.path
from scales_cli.cli._common import parse_size  # noqa: E402
from scales_cli.export.runtime import OpenVinoRuntime  # noqa: E402
from scales_cli.machine import probe  # noqa: E402


def kernel_precision(exec_type: str) -> str:
    """``brgconv_avx512_I8`` -> ``I8``; ``jit_avx512_u1`` -> ``u1``; no suffix -> ``-``."""
    tail = exec_type.rsplit("_", 1)[-1]
    return tail if tail in ("I8", "i8", "u8", "u1", "f32", "bf16", "f16") else "-"


def split(xml: Path, shape: tuple[int, ...], threads: int, rounds: int) -> dict[tuple[str, str], float]:
    """(node type, kernel precision) -> median summed real time in ms (after one warm-up run)."""
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    key = lambda info: (info.node_type, kernel_precision(info.exec_type))  # noqa: E731
    return time_splits({xml.name: OpenVinoRuntime(xml, threads=threads)}, x, rounds, key=key, warmup=True)[xml.name]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("irs", type=Path, nargs="+")
    ap.add_argument("--size", default="320x180", help="LR WIDTHxHEIGHT (default 320x180)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--top", type=int, default=12, help="rows per IR (largest first)")
    args = ap.parse_args()
    width, height = parse_size(args.size, "--size")
    for xml in args.irs:
        times = split(xml, (1, 3, height, width), args.threads, args.rounds)
        total = sum(times.values())
        print(f"\n{xml.name}: summed node time {total:.1f} ms (1x3x{height}x{width}, {args.threads} threads, median of {args.rounds})")
        print("| node type | kernel | ms | share |\n|---|---|---:|---:|")
        for (node, prec), ms in sorted(times.items(), key=lambda kv: -kv[1])[: args.top]:
            print(f"| {node} | {prec} | {ms:.1f} | {ms / total:.0%} |")
    print(f"\nmachine: {probe(args.threads).describe()}")


if __name__ == "__main__":
    main()
