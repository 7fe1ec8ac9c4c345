"""Which learning rate, schedule and staging converge fastest? Short `scales finetune` runs, one per setting.

Every run uses the same student, data, batch, patch, seed and step budget; each is one CLI call
(printed), and the table gives Set5 Y-PSNR at the end of each run. Used to choose the documented
defaults of `scales finetune` (docs/results.md).

    nice -n 5 .venv/bin/python benchmarks/finetune_sweep.py --student IMDN_x4-cnn.safetensors \
        --teacher ../shared/checkpoints/IMDN_x4.pth --steps 300 --out sweep
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
SETTINGS = {
    "lr1e-3-cosine": ["--lr", "1e-3", "--schedule", "cosine"],
    "lr5e-4-cosine": ["--lr", "5e-4", "--schedule", "cosine"],
    "lr2e-4-cosine": ["--lr", "2e-4", "--schedule", "cosine"],
    "lr1e-3-constant": ["--lr", "1e-3", "--schedule", "constant"],
    "lr2e-4-constant": ["--lr", "2e-4", "--schedule", "constant"],
    "lr2e-3-cosine": ["--lr", "2e-3", "--schedule", "cosine"],
    # two-stage at the default lr/schedule (compare with lr1e-3-cosine)
    "two-stage-activations-first": ["--lr", "1e-3", "--schedule", "cosine", "--two-stage", "activations-first"],
    "two-stage-weights-first": ["--lr", "1e-3", "--schedule", "cosine", "--two-stage", "weights-first"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", type=Path, required=True)
    ap.add_argument("--teacher", type=Path, default=SHARED / "checkpoints" / "IMDN_x4.pth")
    ap.add_argument("--data", type=Path, nargs="*", default=[SHARED / "data" / "train" / "BSD200"])
    ap.add_argument("--data-lr", type=Path, nargs="*", default=[SHARED / "data" / "train" / "T91"])
    ap.add_argument("--val", type=Path, default=SHARED / "data" / "benchmarks" / "Set5")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--only", nargs="*", choices=list(SETTINGS), help="run only these settings")
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more finetune options for every run")
    ap.add_argument("--out", type=Path, default=Path("sweep"))
    args = ap.parse_args()

    rows = []
    for name in args.only or SETTINGS:
        cmd = [sys.executable, "-m", "scales_cli", "finetune", str(args.student), "--teacher", str(args.teacher),
               *sum((["--data", str(d)] for d in args.data), []), *sum((["--data-lr", str(d)] for d in args.data_lr), []),
               "--val", str(args.val), "--steps", str(args.steps), "--batch", str(args.batch), "--patch", str(args.patch),
               "--val-every", str(max(1, args.steps // 3)), "--save-every", "0", *SETTINGS[name], *args.extra,
               "--out", str(args.out / name), "--force", "--json"]
        print("$", " ".join(cmd), flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr.strip().splitlines()[-1], flush=True)
            continue
        result = json.loads(done.stdout)
        rows.append((name, result["final_psnr"], result["best_psnr"], result["wall_s"]))
        print(f"  {name}: final {result['final_psnr']:.3f} dB, best {result['best_psnr']:.3f} dB, {result['wall_s']:.0f} s", flush=True)
    print(f"\n{'setting':18s} {'final dB':>9s} {'best dB':>9s} {'wall s':>7s}   ({args.steps} steps, batch {args.batch}, patch {args.patch})")
    for name, final, best, wall in rows:
        print(f"{name:18s} {final:9.3f} {best:9.3f} {wall:7.0f}")


if __name__ == "__main__":
    main()
