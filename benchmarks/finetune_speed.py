"""Seconds per training step: the binary student vs its FP teacher, trained the same way.

One step = forward + L1 loss + backward + Adam step, on a random batch (default 16 crops of 48x48 LR
pixels, 2 intra-op threads), for the FP network and for its ``cnn`` student; the median of
``--steps`` timed steps after ``--warmup`` untimed ones, teacher and student steps taken in turn. Also prints the full distillation step of
``scales finetune`` (teacher forward without gradients + student step) for reference.

    .venv/bin/python benchmarks/finetune_speed.py --checkpoint ../shared/checkpoints/IMDN_x4.pth
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from scales_cli.loading import load
from scales_cli.recipe import load_recipe, rewrite

SHARED = Path(__file__).resolve().parents[2] / "shared"


class Trainer:
    """One model's training step (forward, L1, backward, Adam), timed per call; ``teacher`` given: the
    target is that network's output on the batch, computed inside the step (the distillation step)."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor,
                 teacher: torch.nn.Module | None = None) -> None:
        self.model, self.x, self.target, self.teacher = model.train(), x, target, teacher
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        self.times: list[float] = []

    def step(self, timed: bool) -> float:
        """One training step; returns its seconds (also kept in ``times`` when ``timed``)."""
        start = time.perf_counter()
        target = self.target
        if self.teacher is not None:
            with torch.no_grad():
                target = self.teacher(self.x)
        loss = F.l1_loss(self.model(self.x), target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        took = time.perf_counter() - start
        if timed:
            self.times.append(took)
        return took


def interleaved(trainers: list[Trainer], steps: int, warmup: int) -> list[float]:
    """Median seconds per step of each trainer, their steps taken in turn (a load change hits all
    alike, so the ratios stay meaningful on a busy machine)."""
    for i in range(warmup + steps):
        for trainer in trainers:
            trainer.step(timed=i >= warmup)
    return [statistics.median(t.times) for t in trainers]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=SHARED / "checkpoints" / "IMDN_x4.pth")
    ap.add_argument("--recipe", default="cnn")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    desc = load(args.checkpoint)
    student, _ = rewrite(desc, load_recipe(args.recipe))
    teacher = desc.model
    x = torch.rand(args.batch, 3, args.patch, args.patch) * desc.input_range
    with torch.no_grad():
        target = teacher.eval()(x)
    frozen = load(args.checkpoint).model.eval()  # a separate teacher for the distillation step
    for p in frozen.parameters():
        p.requires_grad_(False)
    t, s = interleaved([Trainer(teacher, x, target), Trainer(student, x, target)], args.steps, args.warmup)
    (d,) = interleaved([Trainer(student, x, target, teacher=frozen)], args.steps, args.warmup)
    print(f"{desc.arch} x{desc.scale}, recipe {args.recipe}: batch {args.batch}, LR patch {args.patch}, "
          f"{args.threads} threads, median of {args.steps} steps")
    print(f"  teacher (FP) training step      {t:7.3f} s")
    print(f"  student (binary) training step  {s:7.3f} s")
    print(f"  ratio student / teacher         {s / t:7.3f}   (goal <= 1.25)")
    print(f"  distillation step (T fwd + S)   {d:7.3f} s")


if __name__ == "__main__":
    main()
