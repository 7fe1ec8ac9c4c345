"""Are the binary layers trainable? A short feature-free distillation of a calibrated student.

Not the `finetune` command (that is a later issue): a fixed, small loop that shows the SCALES
layers' STE gradients move a real student towards its FP teacher. It binarizes a checkpoint with
the `cnn` recipe, calibrates on T91, then trains every student parameter for N steps on random
LR crops of T91 with :meth:`scales_cli.train.Distiller.step` (finetune's own step: teacher output
as target, L1 loss, Adam at a constant lr), and prints Set5 Y-PSNR before/after.

    .venv/bin/python benchmarks/distill_smoke.py --steps 300
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from scales_cli.loading import load
from scales_cli.metrics.datasets import dataset_from_folder
from scales_cli.metrics.evaluate import evaluate_model
from scales_cli.recipe import load_recipe, rewrite
from scales_cli.recipe.calibrate import calibrate_student, calibration_batches
from scales_cli.train import Distiller, FinetuneConfig, OutputDistillation

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=SHARED / "checkpoints" / "IMDN_x4.pth")
    ap.add_argument("--train", type=Path, default=SHARED / "data" / "train" / "T91")
    ap.add_argument("--test", type=Path, default=SHARED / "data" / "benchmarks" / "Set5")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=48)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    torch.manual_seed(0)
    teacher = load(args.checkpoint)
    student, report = rewrite(teacher, load_recipe("cnn"))
    calibrate_student(student, args.train, input_range=teacher.input_range)
    desc = _with_model(teacher, student)
    test = dataset_from_folder(args.test, teacher.scale)
    before = evaluate_model(desc, test).mean_psnr
    print(f"{teacher.arch} x{teacher.scale}: {len(report.binarized)} binary layers; Set5 before {before:.2f} dB")

    crops = torch.cat(list(calibration_batches(args.train, 91, crop=args.crop, seed=1, input_range=teacher.input_range)))
    dev = torch.device(args.device)
    t_model, s_model = teacher.model.to(dev).eval(), student.to(dev).train()
    config = FinetuneConfig(steps=args.steps, batch=args.batch, lr=args.lr, warmup=0, schedule="constant")
    distiller = Distiller(s_model, config, teacher=t_model, device=dev,
                          objective=OutputDistillation.from_config(config, teacher.input_range))
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        x = crops[torch.randint(len(crops), (args.batch,), generator=gen)].to(dev)
        done = distiller.step(x)
        if step % max(1, args.steps // 5) == 0:
            print(f"  step {step:5d}  L1 {done.loss:.4f}  {time.perf_counter() - start:6.1f} s")
    s_model.to("cpu").eval()
    after = evaluate_model(desc, test).mean_psnr
    print(f"Set5 after {args.steps} steps: {after:.2f} dB (before {before:.2f}; FP teacher {evaluate_model(teacher, test).mean_psnr:.2f})")


def _with_model(desc, model):  # noqa: ANN001, ANN202 - the teacher's descriptor around the student
    import dataclasses

    return dataclasses.replace(desc, model=model)


if __name__ == "__main__":
    main()
