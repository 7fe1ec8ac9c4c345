"""Peak memory of tiled upscaling: a 4000x3000 input through IMDN x4 (output 16000x12000).

Runs the same path as ``scales upscale`` (read -> tiled bands -> 8-bit canvas -> optional PNG) and
prints the process's peak resident set size from ``resource.getrusage`` (Linux reports KiB). The
weights are ``../shared/checkpoints/IMDN_x4.pth`` when present, else random IMDN x4 weights: memory
does not depend on the weight values. Not part of the test suite (minutes on a small CPU).

    python benchmarks/upscale_memory.py                      # 4000x3000, automatic tiles
    python benchmarks/upscale_memory.py --size 1000x750 --save /tmp/out.png
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scales_cli.archs import SRDescriptor  # noqa: E402
from scales_cli.loading import load
from scales_cli.archs._registry import spec_by_name  # noqa: E402
from scales_cli.imaging import read_image, upscale_image, write_png  # noqa: E402
from scales_cli.tiling import plan_tiles, tile_spans, window_alignment  # noqa: E402
from scales_cli.machine import probe  # noqa: E402

SHARED_IMDN = REPO.parent / "shared" / "checkpoints" / "IMDN_x4.pth"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def imdn_x4(tmp: Path) -> tuple[SRDescriptor, str]:
    if SHARED_IMDN.exists():
        return load(SHARED_IMDN), str(SHARED_IMDN)
    spec = spec_by_name("imdn")
    assert spec is not None, "imdn is not registered"
    config = next(ex for ex in spec.examples if ex["scale"] == 4)
    path = tmp / "imdn_x4_random.pth"
    torch.save(spec.build(**{**spec.defaults, **config}).state_dict(), path)
    return load(path), "random weights (../shared absent)"


def smooth_test_image(width: int, height: int, path: Path) -> None:
    """A photo-like (smooth, compressible) RGB image: bicubically enlarged noise."""
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 256, (max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8))
    small.resize((width, height), Image.Resampling.BICUBIC).save(path, compress_level=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="4000x3000", help="input WIDTHxHEIGHT (default 4000x3000)")
    parser.add_argument("--tile", type=int, default=None, help="tile edge (default: automatic)")
    parser.add_argument("--overlap", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--save", type=Path, default=None, help="also write the PNG here (slow for 192 MP)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        desc, source = imdn_x4(tmp)
        model = desc.model.to(args.device)
        image_path = tmp / "input.png"
        smooth_test_image(width, height, image_path)
        print(f"model: {desc.arch} x{desc.scale} ({source}); device {args.device}; threads {torch.get_num_threads()}")
        print(f"machine: {probe(torch.get_num_threads()).describe()}")
        print(f"peak RSS after imports + model load: {peak_rss_mib():.0f} MiB")
        image = read_image(image_path)
        plan = plan_tiles(height, width, args.tile, args.overlap, window_alignment(model))
        n_tiles = len(tile_spans(height, plan.tile, plan.overlap, plan.align)) * len(
            tile_spans(width, plan.tile, plan.overlap, plan.align)
        )
        print(f"input {width}x{height} -> {desc.scale * width}x{desc.scale * height}; "
              f"tile {plan.tile} overlap {plan.overlap}: {n_tiles} tiles")
        start = time.perf_counter()
        last = [start]

        def on_tile(done: int, total: int) -> None:
            now = time.perf_counter()
            if now - last[0] > 30 or done == total:
                print(f"  {done}/{total} tiles, {now - start:.0f} s, peak RSS {peak_rss_mib():.0f} MiB", flush=True)
                last[0] = now

        result = upscale_image(model, desc.scale, desc.input_range, image, plan, on_tile=on_tile)
        elapsed = time.perf_counter() - start
        print(f"upscaled in {elapsed:.1f} s; output {result.size[0]}x{result.size[1]} {result.mode}")
        if args.save:
            t0 = time.perf_counter()
            write_png(result, args.save, force=True)
            print(f"wrote {args.save} in {time.perf_counter() - t0:.1f} s")
        print(f"PEAK RSS: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
