"""Would 8-bit tensors between the layers of a mixed student pay in OpenVINO? (issue 21, step 3)

The INT8 teacher from NNCF is fast partly because every tensor between its layers is 8-bit: its Slice,
Concat and ReduceMean run on u8. In a mixed student, BinaryConvolution writes f32, so every tensor a
binarizer reads stays f32. This measures the upper bound of changing that before building it: the
student's OpenVINO graph as ``scales export`` writes it, against the same graph with a FakeQuantize
(levels=256, per tensor, range = the min/max seen on the timing input) on every tensor that a binary layer
reads, shared by all of that tensor's readers, so that the plugin's low-precision transformations can keep it
u8 through Slice, Concat and ReduceMean. The second graph computes something else (values move by up to
one 8-bit step), so this is a speed experiment only: no student is trained or exported that way.

Prints the interleaved wall-time medians, the largest output difference and the per-node-type split of both.

    python benchmarks/u8_between_layers.py out/pareto/IMDN_x4/lsf-int8/student.safetensors --repeats 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from export_speed import interleaved_times, ov_model, print_splits, time_splits  # noqa: E402
from scales_cli.cli._common import parse_size  # noqa: E402
from scales_cli.export.openvino import PRECISION  # noqa: E402
from scales_cli.export.runtime import OpenVinoRuntime  # noqa: E402
from scales_cli.loading import load  # noqa: E402
from scales_cli.machine import probe  # noqa: E402


def binarizer_inputs(model) -> list:  # noqa: ANN001 - ov.Model -> the distinct tensors a levels=2 FakeQuantize reads
    seen: dict[tuple[str, int], object] = {}
    for node in model.get_ordered_ops():
        if node.get_type_name() == "FakeQuantize" and node.get_levels() == 2:
            source = node.input(0).get_source_output()
            seen.setdefault((source.get_node().get_friendly_name(), source.get_index()), source)
    return list(seen.values())


def with_u8_tensors(model, x: np.ndarray):  # noqa: ANN001, ANN201
    """A copy of ``model`` with FakeQuantize(levels=256) on every tensor a binarizer reads (module docstring)."""
    import openvino as ov
    import openvino.opset13 as ops

    model = model.clone()
    sources = binarizer_inputs(model)
    probed = ov.Model([ops.result(s) for s in sources], model.get_parameters(), "ranges")
    probed.reshape(list(x.shape))
    values = ov.Core().compile_model(probed, "CPU", PRECISION)({0: x})
    for i, source in enumerate(sources):
        lo, hi = float(values[i].min()), float(values[i].max())
        readers = list(source.get_target_inputs())
        quantized = ops.fake_quantize(source, np.float32(lo), np.float32(hi), np.float32(lo), np.float32(hi), 256)
        for reader in readers:
            reader.replace_source_output(quantized.output(0))
    return model, len(sources)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("student", type=Path, help="a student file with binary layers (e.g. the lsf-int8 recipe)")
    ap.add_argument("--size", default="320x180", help="LR WIDTHxHEIGHT (default 320x180)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    width, height = parse_size(args.size, "--size")
    desc = load(args.student)
    x = (np.random.default_rng(0).random((1, 3, height, width)) * desc.input_range).astype(np.float32)
    written = ov_model(desc.model)
    u8, count = with_u8_tensors(written, x)
    print(f"FakeQuantize(levels=256) on {count} tensors read by binary layers")
    runtimes = {"as exported": OpenVinoRuntime(written, threads=args.threads),
                "u8 between layers": OpenVinoRuntime(u8, threads=args.threads)}
    outputs = {name: rt(x) for name, rt in runtimes.items()}  # compiles outside the timed rounds
    print(f"max |output difference| = {float(np.abs(outputs['u8 between layers'] - outputs['as exported']).max()):.3g}")
    times = interleaved_times({name: (lambda rt=rt: rt(x)) for name, rt in runtimes.items()}, args.repeats)
    base = statistics.median(times["as exported"])
    for name, t in times.items():
        print(f"{name:20s} median {statistics.median(t) * 1000:8.1f} ms  ({base / statistics.median(t):.2f}x as exported)")
    print_splits(time_splits(runtimes, x, rounds=5, warmup=True))
    print(f"machine: {probe(args.threads).describe()}")


if __name__ == "__main__":
    main()
