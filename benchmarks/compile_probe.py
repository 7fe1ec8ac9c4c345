"""Does ``torch.compile`` make the binary student's training step cheaper? (issue 11, speed goal)

Times the FP teacher and its ``cnn`` student, eager and compiled (inductor, default mode), one
training step each in turn (forward, L1, backward, Adam) on one random batch; prints the first
(compiling) step of each, the medians of ``STEPS`` further steps, and the ratios.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compile_probe.py --threads 1 --batch 8 --patch 32 --steps 6
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

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
    optims = {k: torch.optim.Adam(m.parameters(), 1e-4) for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    for i in range(args.steps + 2):
        for name, model in models.items():
            start = time.perf_counter()
            loss = F.l1_loss(model.train()(x), target)
            optims[name].zero_grad()
            loss.backward()
            optims[name].step()
            took = time.perf_counter() - start
            if i == 0:
                print(f"first step {name:18s} {took:7.1f} s (compiles)", flush=True)
            elif i >= 2:
                times[name].append(took)
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, value in med.items():
        print(f"{name:18s} {value:7.3f} s per step")
    print(f"student / teacher: eager {med['student'] / med['teacher']:.3f}, "
          f"compiled {med['student-compiled'] / med['teacher-compiled']:.3f}")


if __name__ == "__main__":
    main()
