"""Does ``torch.compile`` make the binary student's training step cheaper? (issue 11, speed goal)

Times the FP teacher and its ``cnn`` student, eager and compiled (inductor, default mode), with the
training step of ``finetune_speed.py`` (:meth:`scales_cli.train.Distiller.step`, finetune's own step)
on one random batch, steps taken in turn; prints the first (compiling) step of each, the medians of ``--steps`` further steps after
one more warm-up step, and the ratios.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compile_probe.py --threads 1 --batch 8 --patch 32 --steps 6
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

from finetune_speed import Trainer, interleaved  # this folder is on sys.path when run as a script
from scales_cli.loading import load
from scales_cli.recipe import load_recipe, rewrite

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=SHARED / "checkpoints" / "IMDN_x4.pth")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    desc = load(args.checkpoint)
    student, _ = rewrite(desc, load_recipe("cnn"))
    teacher = desc.model
    x = torch.rand(args.batch, 3, args.patch, args.patch) * desc.input_range
    with torch.no_grad():
        target = teacher.eval()(x)
    models = {"teacher": teacher, "student": student,
              "teacher-compiled": torch.compile(copy.deepcopy(teacher)),
              "student-compiled": torch.compile(copy.deepcopy(student))}
    trainers = {name: Trainer(model, x, target) for name, model in models.items()}
    for name, trainer in trainers.items():
        print(f"first step {name:18s} {trainer.step(timed=False):7.1f} s (compiles)", flush=True)
    med = dict(zip(trainers, interleaved(list(trainers.values()), args.steps, warmup=1), strict=True))
    for name, value in med.items():
        print(f"{name:18s} {value:7.3f} s per step")
    print(f"student / teacher: eager {med['student'] / med['teacher']:.3f}, "
          f"compiled {med['student-compiled'] / med['teacher-compiled']:.3f}")


if __name__ == "__main__":
    main()
