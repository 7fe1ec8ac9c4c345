"""Seconds per training step: the binary student vs its FP teacher, trained the same way.

One step is :meth:`scales_cli.train.Distiller.step`, the very step ``scales finetune`` takes
(forward under the device's autocast, the finetune loss, backward, optional clipping, the optimizer
and schedule steps, optional EMA), on one random batch (default 16 crops of 48x48 LR pixels, 2
intra-op threads), for the FP network and for its ``cnn`` student trained on fixed targets; the median
of ``--steps`` timed steps after ``--warmup`` untimed ones, teacher and student steps taken in turn.
Also prints the full distillation step (teacher forward without gradients + student step) for reference.

    .venv/bin/python benchmarks/finetune_speed.py --checkpoint ../shared/checkpoints/IMDN_x4.pth
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from scales_cli.loading import load
from scales_cli.recipe import load_recipe, rewrite
from scales_cli.train import Distiller, FinetuneConfig, OutputDistillation

SHARED = Path(__file__).resolve().parents[2] / "shared"


def bench_config(lr: float = 1e-4, ema: float = 0.0, clip_grad: float = 0.0) -> FinetuneConfig:
    """finetune's settings with a constant lr (the schedule's shape does not change a step's cost)."""
    return FinetuneConfig(lr=lr, warmup=0, schedule="constant", ema=ema, clip_grad=clip_grad)


class Trainer:
    """One model's :meth:`Distiller.step`, timed per call; ``teacher`` given: the targets are that
    network's output on the batch, computed inside the step (the distillation step), else ``target``."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor,
                 teacher: torch.nn.Module | None = None, config: FinetuneConfig | None = None,
                 input_range: float = 1.0) -> None:
        self.x, self.target, self.teacher = x, target, teacher
        config = config or bench_config()
        self.distiller = Distiller(model, config, teacher=teacher, device=x.device,
                                   objective=OutputDistillation.from_config(config, input_range))
        self.times: list[float] = []

    def step(self, timed: bool) -> float:
        """One training step; returns its seconds (also kept in ``times`` when ``timed``)."""
        sync = torch.cuda.synchronize if self.x.device.type == "cuda" else (lambda: None)
        sync()
        start = time.perf_counter()
        self.distiller.step(self.x, targets=None if self.teacher is not None else self.target)
        sync()
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
    ap.add_argument("--ema", type=float, default=0.0, help="EMA decay of the timed step (finetune's --ema)")
    ap.add_argument("--clip-grad", type=float, default=0.0, help="gradient clipping of the timed step (finetune's --clip-grad)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (bf16 autocast, as finetune)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    desc = load(args.checkpoint)
    student, _ = rewrite(desc, load_recipe(args.recipe))
    teacher, student = desc.model.to(device), student.to(device)
    x = torch.rand(args.batch, 3, args.patch, args.patch, device=device) * desc.input_range
    with torch.no_grad():
        target = teacher.eval()(x)
    frozen = load(args.checkpoint).model.to(device).eval()  # a separate teacher for the distillation step
    for p in frozen.parameters():
        p.requires_grad_(False)
    config = bench_config(ema=args.ema, clip_grad=args.clip_grad)
    make = lambda model, **kw: Trainer(model, x, target, config=config, input_range=desc.input_range, **kw)  # noqa: E731
    t, s = interleaved([make(teacher), make(student)], args.steps, args.warmup)
    (d,) = interleaved([make(student, teacher=frozen)], args.steps, args.warmup)
    print(f"{desc.arch} x{desc.scale}, recipe {args.recipe}: batch {args.batch}, LR patch {args.patch}, "
          f"{args.threads} threads, {device}, ema {args.ema:g}, clip {args.clip_grad:g}, median of {args.steps} Distiller.step calls")
    print(f"  teacher (FP) training step      {t:7.3f} s")
    print(f"  student (binary) training step  {s:7.3f} s")
    print(f"  ratio student / teacher         {s / t:7.3f}   (goal <= 1.25)")
    print(f"  distillation step (T fwd + S)   {d:7.3f} s")


if __name__ == "__main__":
    main()
