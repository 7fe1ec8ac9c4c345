"""The ablation table of issue 11, through the CLI: one fixed fine-tuning budget per teacher.

For every (teacher, recipe): ``scales binarize TEACHER --recipe R --calibrate T91``, then
``scales finetune`` with the same data, schedule, seed and ``--steps`` for all recipes of that
teacher, scored on Set5 (Y-PSNR) at the end of each run. Every command is printed as it runs, and
the table (with the calibrated-only PSNR before fine-tuning) at the end.

    nice -n 5 .venv/bin/python benchmarks/ablation.py --steps 2000 --out ablation   # the issue's budget
    nice -n 5 .venv/bin/python benchmarks/ablation.py --steps 50 --only imdn          # a smoke budget
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
TABLE = {
    "imdn": ("IMDN_x4.pth", ["xnor", "e2fif", "lsf", "lsf-chl", "lsf-spatial", "scales"]),
    "rlfn": ("RLFN_x4.pth", ["xnor", "e2fif", "lsf", "lsf-chl", "lsf-spatial", "scales"]),
    "imdtn": ("IMDTN_x4.pth", ["transformer-bibert", "transformer"]),
}


def run(cmd: list[str]) -> dict | None:
    print("$", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print("  failed:", (done.stderr.strip().splitlines() or ["?"])[-1], flush=True)
        return None
    return json.loads(done.stdout) if cmd[-1] == "--json" else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--lr", default="1e-3")
    ap.add_argument("--calib-images", type=int, default=16)
    ap.add_argument("--only", nargs="*", choices=list(TABLE), help="teachers to run (default: all three)")
    ap.add_argument("--recipes", nargs="*", help="recipes to run (default: every recipe of each teacher's row)")
    ap.add_argument("--checkpoints", type=Path, default=SHARED / "checkpoints")
    ap.add_argument("--data", type=Path, default=SHARED / "data" / "train" / "BSD200")
    ap.add_argument("--data-lr", type=Path, default=SHARED / "data" / "train" / "T91")
    ap.add_argument("--val", type=Path, default=SHARED / "data" / "benchmarks" / "Set5")
    ap.add_argument("--out", type=Path, default=Path("ablation"))
    args = ap.parse_args()

    scales = [sys.executable, "-m", "scales_cli"]
    rows = []
    for arch in args.only or TABLE:
        ckpt, recipes = TABLE[arch]
        teacher = args.checkpoints / ckpt
        for recipe in [r for r in recipes if not args.recipes or r in args.recipes]:
            student = args.out / f"{arch}-{recipe}.safetensors"
            if run([*scales, "binarize", str(teacher), "--recipe", recipe, "--calibrate", str(args.data_lr),
                    "--calib-images", str(args.calib_images), "-o", str(student), "--force"]) is None:
                continue
            report = args.out / f"{arch}-{recipe}-calibrated.json"
            before = run([*scales, "report", str(student), "--data", str(args.val), "--json", str(report), "--force"])
            before = json.loads(report.read_text()) if before is not None and report.is_file() else None
            result = run([*scales, "finetune", str(student), "--teacher", str(teacher), "--data", str(args.data),
                          "--data-lr", str(args.data_lr), "--val", str(args.val), "--steps", str(args.steps),
                          "--batch", str(args.batch), "--patch", str(args.patch), "--lr", args.lr,
                          "--val-every", "0", "--save-every", "0", "--out", str(args.out / f"{arch}-{recipe}"),
                          "--force", "--json"])
            if result is None:
                continue
            calibrated = _psnr(before)
            rows.append((arch, recipe, calibrated, result["final_psnr"], result["wall_s"]))
            # One JSON line per finished row, so that runs split across cores (--only) merge into one table.
            with (args.out / "table.jsonl").open("a") as fh:
                fh.write(json.dumps({"teacher": arch, "recipe": recipe, "calibrated_psnr": calibrated,
                                     "finetuned_psnr": result["final_psnr"], "wall_s": result["wall_s"],
                                     "steps": args.steps, "batch": args.batch, "patch": args.patch,
                                     "lr": args.lr}) + "\n")
            print(f"  {arch} {recipe}: calibrated {calibrated:.2f} dB -> fine-tuned {result['final_psnr']:.2f} dB", flush=True)
    print(f"\n{'teacher':8s} {'recipe':12s} {'calibrated':>10s} {'fine-tuned':>10s} {'wall s':>7s}   "
          f"(Set5 Y-PSNR; {args.steps} steps, batch {args.batch}, patch {args.patch}, lr {args.lr} cosine)")
    for arch, recipe, calibrated, tuned, wall in rows:
        print(f"{arch:8s} {recipe:12s} {calibrated:10.2f} {tuned:10.2f} {wall:7.0f}")


def _psnr(report: dict | None) -> float:
    """The student row's PSNR in a ``scales report --json FILE`` document (nan if absent)."""
    for group in (report or {}).get("groups", []):
        for row in group.get("rows", []):
            if row.get("kind") == "model":
                for result in row.get("results", {}).values():
                    if result.get("psnr") is not None:
                        return float(result["psnr"])
    return float("nan")


if __name__ == "__main__":
    main()
