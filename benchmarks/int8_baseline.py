"""The INT8 model a deployer would make instead of a binary student: NNCF post-training quantization (issue 21, step 4).

For one FP teacher checkpoint:

1. ``scales export TEACHER -o OUT/fp32.xml --format openvino`` (the OpenVINO FP32 IR, parity-checked);
2. ``nncf.quantize`` of that IR (MIXED preset: symmetric weights, asymmetric activations), calibrated on
   the images the students are calibrated on: one seeded 64x64 crop of each image of ``--calib``
   (default T91, all 91; the crops of :func:`scales_cli.recipe.calibrate.calibration_batches`, scaled to
   the teacher's input range), in two variants: ``int8`` (NNCF's defaults) and ``int8-firstlast-fp``
   (first and last convolution kept FP through ``nncf.IgnoredScope``: the layers binarization keeps FP);
3. every extra ``STUDENT`` file (a student ``.safetensors``, exported to IR here, or an ``.xml``) is added,
   and with ``--quantize-students`` also its IR after NNCF PTQ of its FP layers (binary layers untouched);
4. scores every IR with the library behind ``scales report`` (Y-PSNR on ``--data``, default Set5 and Set14);
5. times them with the library behind ``scales bench`` (interleaved repeats, one seeded 1x3xHxW input);
6. prints ms, speed-up over the OpenVINO FP32 IR and dB, the machine line (CPU, ISA flags: ratios
   differ between machines), and writes ``OUT/int8_baseline.json``.

NNCF keeps the IR's ``scales`` rt_info (scale, arch, input range), so ``scales report/bench/upscale`` run
the INT8 IRs as they are; the script only renames their ``recipe`` entry (``nncf-int8``, ...) so tables
tell them apart. NNCF is a benchmark-only extra, never needed by the tests::

    .venv/bin/pip install -c constraints.txt -e '.[bench]'
    python benchmarks/int8_baseline.py ../shared/checkpoints/RLFN_x4.pth zoo/rlfn_x4-cnn.safetensors
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from ir_steps import (DEFAULT_CALIB, DEFAULT_DATA, REPO, Calibration, Candidate, export_ir, fake_quantize_count, quantize,
                      score, shown, teacher_irs)

from scales_cli.bench import BenchResult, bench
from scales_cli.loading import load
from scales_cli.machine import probe


def render(candidates: list[Candidate], result: BenchResult, psnr: dict[str, dict[str, float]], datasets: list[str]) -> str:
    base = result.timing(candidates[0].label).median
    header = f"| model | ms | vs OpenVINO FP32 | {' / '.join(datasets)} dB |\n|---|---:|---:|---|"
    lines = [header]
    for c in candidates:
        t = result.timing(c.label).median
        db = " / ".join(f"{psnr[c.label][d]:.2f}" if c.label in psnr else "-" for d in datasets)
        lines.append(f"| {c.label} | {t * 1e3:.1f} | {base / t:.2f}x | {db} |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("teacher", type=Path, help="FP checkpoint (e.g. ../shared/checkpoints/IMDN_x4.pth)")
    ap.add_argument("students", type=Path, nargs="*", help="students (.safetensors from scales binarize, or exported .xml)")
    ap.add_argument("--out", type=Path, help="folder for the IRs and the JSON (default out/int8_baseline/TEACHER_STEM)")
    ap.add_argument("--calib", type=Path, default=DEFAULT_CALIB, help="calibration images (default ../shared/data/train/T91)")
    ap.add_argument("--calib-images", type=int, default=91, help="images of --calib, one crop each (default 91: all of T91)")
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--data", type=Path, action="append", help="benchmark folders to score on (default Set5 and Set14)")
    ap.add_argument("--size", default="320x180", help="LR input WIDTHxHEIGHT for timing (default 320x180)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10, help="interleaved timed runs per model (default 10)")
    ap.add_argument("--reuse", action="store_true", help="keep IRs already in --out instead of exporting/quantizing again")
    ap.add_argument("--no-score", action="store_true", help="time only")
    ap.add_argument("--quantize-students", action="store_true",
                    help="also each student with NNCF quantizing its FP layers (binary layers untouched; the RLFN "
                         "zoo student's result crashed OpenVINO 2026.4.1 until binary convs' channels were padded "
                         "with Pad instead of Concat: docs/results.md)")
    ap.add_argument("--json", type=Path, help="write the results here (default OUT/int8_baseline.json)")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    stems = [s.stem for s in args.students]
    if len(set(stems)) < len(stems):  # each student's IR is OUT/student-STEM.xml: one would replace the other
        twice = next(stem for stem in stems if stems.count(stem) > 1)
        raise SystemExit(f"students: two files named {twice}.*: copy one to another name (their IRs would collide)")
    out = args.out or REPO / "out" / "int8_baseline" / args.teacher.stem
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    calibration = Calibration(args.calib, args.calib_images, args.crop)
    irs = teacher_irs(args.teacher, out, calibration, args.reuse)
    candidates, crops = list(irs.candidates), irs.crops
    for s in args.students:
        xml, _ = export_ir(s, out / f"student-{s.stem}.xml", args.reuse)
        candidates.append(Candidate(f"student {s.name}", xml, "student"))
        if args.quantize_students:
            recipe = load(xml).extra["exported"].get("recipe") or "student"
            q = quantize(xml, out / f"student-{s.stem}-nncf-int8.xml", f"{recipe}+nncf-int8", crops, args.reuse)
            candidates.append(Candidate(f"student {s.name}, FP layers NNCF INT8", q, "student+nncf-int8"))
    fq = {c.label: fake_quantize_count(c.path) for c in candidates}
    data = [Path(d) for d in (args.data or DEFAULT_DATA)]
    psnr = {} if args.no_score else score(candidates, data)
    width, height = (int(v) for v in args.size.lower().split("x"))
    print(f"timing {len(candidates)} models, {args.repeats} interleaved repeats, {args.threads} threads", flush=True)
    result = bench([(c.label, load(c.path)) for c in candidates], size=(width, height), repeats=args.repeats, threads=args.threads)
    datasets = [d.name for d in data]
    print(f"\nforward pass 1x3x{height}x{width}, {args.threads} threads, median of {args.repeats} (interleaved), OpenVINO CPU")
    print(render(candidates, result, psnr, datasets))
    print(f"machine: {result.machine.describe() if result.machine else probe(args.threads).describe()}")
    payload = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "calibration": calibration.to_json(crops),
        "seconds": time.time() - started,
        "models": [
            {"label": c.label, "kind": c.kind, "file": shown(c.path), "fake_quantize_nodes": fq[c.label],
             "median_ms": result.timing(c.label).median * 1e3, "all_ms": [s * 1e3 for s in result.timing(c.label).seconds],
             "speedup_vs_fp32": result.speedup(c.label, over=candidates[0].label), "psnr": psnr.get(c.label)}
            for c in candidates
        ],
        "bench": result.to_json(),
        "machine_after": probe(args.threads).to_json(),
    }
    target = args.json or out / "int8_baseline.json"
    target.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
