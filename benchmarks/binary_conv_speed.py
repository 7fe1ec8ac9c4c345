"""One 64->64 3x3 conv at 1x64x180x320 in OpenVINO: FP against BinaryConv2d (FakeQuantize + BinaryConvolution + scale).

Tells how much faster the CPU plugin's binary kernel is on this machine (the ceiling of any
student's speed-up). 2 threads, 15 interleaved runs, medians.

    python benchmarks/binary_conv_speed.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import statistics
import time

import torch
from torch import nn

from scales_cli.binary.layers import BinaryConv2d
from scales_cli.binary.options import BinaryOptions
from scales_cli.export.openvino import model_of, graph_options
from scales_cli.export.graph import export_network
from scales_cli.export.runtime import OpenVinoRuntime
from scales_cli.machine import probe
x = torch.rand(1, 64, 180, 320)
conv = nn.Conv2d(64, 64, 3, padding=1)
b = BinaryConv2d.from_float(conv, BinaryOptions(spatial=False, channel=False, skip=False)).eval()
fp = OpenVinoRuntime(model_of(conv.eval(), x, 17), threads=2)
bn = OpenVinoRuntime(model_of(export_network(b, graph_options()), x, 17), threads=2)
xn = x.numpy(); fp(xn); bn(xn)
t = {"fp": [], "bin": []}
for _ in range(15):
    for k, r in (("fp", fp), ("bin", bn)):
        t0 = time.perf_counter(); r(xn); t[k].append(time.perf_counter() - t0)
m = {k: statistics.median(v) * 1000 for k, v in t.items()}
print(f"machine: {probe(2).describe()}")
print(f"FP conv {m['fp']:.1f} ms, binary conv {m['bin']:.1f} ms: {m['fp'] / m['bin']:.2f}x")
