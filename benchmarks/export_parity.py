"""Parity of every export format for every real checkpoint in ../shared, binarized with its default recipe.

Each checkpoint -> default recipe (``cnn`` or ``transformer``) -> calibration on ``--calib-images``
crops of T91 -> ``export_model`` in each format, parity on Set5's LR images at the checkpoint's scale.
Prints one markdown row per (checkpoint, format): worst PSNR(export, torch), worst uint8 match, how
many images pass only as explained threshold flips, file size — or the one-line refusal.

    python benchmarks/export_parity.py                 # all checkpoints, all formats (minutes)
    python benchmarks/export_parity.py --only IMDN_x4 --format openvino
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"

from scales_cli.loading import load  # noqa: E402
from scales_cli.errors import ScalesError  # noqa: E402
from scales_cli.export.pipeline import FORMATS, export_model  # noqa: E402
from scales_cli.recipe import default_recipe_name, load_recipe, rewrite  # noqa: E402
from scales_cli.recipe.calibrate import calibrate_student  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", default=[], help="checkpoint stem(s) to run (default: all)")
    ap.add_argument("--format", action="append", default=[], help="format(s) (default: all)")
    ap.add_argument("--calib-images", type=int, default=4)
    args = ap.parse_args()
    formats = args.format or list(FORMATS)
    print("| checkpoint | recipe | format | binary layers | worst PSNR dB | worst uint8 match | flip-only images | bytes | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for ckpt in sorted((SHARED / "checkpoints").glob("*.pth")):
        if args.only and ckpt.stem not in args.only:
            continue
        desc = load(ckpt)
        recipe_name = default_recipe_name(desc)
        student, _ = rewrite(desc, load_recipe(recipe_name))
        calibrate_student(student, SHARED / "data" / "train" / "T91", args.calib_images, input_range=desc.input_range)
        check = SHARED / "data" / "benchmarks" / "Set5" / "LR_bicubic" / f"X{desc.scale}"
        for fmt in formats:
            chosen, _ = FORMATS[fmt]
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    result = export_model(student, Path(tmp) / f"m{chosen.suffix}", fmt, input_range=desc.input_range, check_dir=check)
                except ScalesError as exc:
                    outcome = "failed parity" if exc.exit_code == 1 else "refused"
                    print(f"| {ckpt.name} | {recipe_name} | {fmt} | - | {outcome} (exit {exc.exit_code}): {exc.message} | | | | |", flush=True)
                    continue
            p = result.parity
            assert p is not None
            worst_db = min(i.psnr_db for i in p.images)
            worst_match = min(i.uint8_match for i in p.images)
            print(
                f"| {ckpt.name} | {recipe_name} | {fmt} | {result.binary_layers} | {worst_db:.1f} | {worst_match:.4%} | "
                f"{len(p.flipped)}/{len(p.images)} | {sum(result.sizes.values()):,} | {time.perf_counter() - start:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
