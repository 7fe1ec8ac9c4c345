"""A tiny IMDN teacher, its calibrated cnn student and small image folders for the train tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from scales_cli.loading import load
from scales_cli.archs._registry import spec_by_name
from scales_cli.recipe import load_recipe, rewrite, save_student
from scales_cli.recipe.calibrate import calibrate_student

TINY_IMDN = {"scale": 2, "in_nc": 3, "nf": 16, "num_modules": 2, "out_nc": 3}


def write_images(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> Path:
    """Smooth random RGB images (w, h), some in a sub-folder (the search is recursive)."""
    rng = np.random.default_rng(seed)
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    w, h = size
    for i in range(n):
        coarse = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
        img.save(folder / ("sub" if i % 2 else ".") / f"img{i}.png")
    return folder


def make_pair(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """(student.safetensors, teacher.pth) of a random tiny IMDN x2, calibrated on random images."""
    torch.manual_seed(seed)
    teacher = root / "teacher.pth"
    torch.save(spec_by_name("imdn").build(**TINY_IMDN).state_dict(), teacher)
    desc = load(teacher)
    recipe = load_recipe("cnn")
    student, report = rewrite(desc, recipe)
    calib = write_images(root / "calib", 4, (24, 24), seed=seed + 1)
    calibrate_student(student, calib / "sub", 2, crop=16)
    path = save_student(root / "student.safetensors", student, desc, recipe, binarized=len(report.binarized))
    return path, teacher
