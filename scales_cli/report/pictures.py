"""Side-by-side crops ``HR | Bicubic | model 1 | model 2 ...`` where the models differ most.

Which images: per scale group, the ``count`` images with the largest spread of PSNR across the
model rows (``max - min``; with one model, its gain over bicubic). Where in the image: the square
window (``crop`` HR pixels a side) with the largest summed per-pixel variance of the outputs'
Y across all rows, found with a summed-area table. Each panel is labelled under the crop, in full
(wrapped over as many lines as it needs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import atomic_write
from ..metrics.color import gray_to_rgb, rgb_to_y
from ..metrics.resize import imresize
from .build import Group, Report

GAP = 4  # white pixels between panels
LABEL_HEIGHT = 14  # one line of Pillow's default bitmap font
CHAR_WIDTH = 6  # its advance per character


@dataclass(frozen=True)
class Picture:
    path: Path
    dataset: str
    image: str
    box: tuple[int, int, int, int]  # top, left, height, width in HR pixels


def _spread(group: Group, d_index: int) -> dict[str, float]:
    models = [row for row in group.rows if row.kind == "model"]
    per_image: dict[str, list[float]] = {}
    for row in models:
        for r in row.results[d_index].images:
            per_image.setdefault(r.name, []).append(r.psnr)
    if len(models) == 1:  # one model: how far it moves from bicubic
        bicubic = next((row for row in group.rows if row.kind == "bicubic"), None)
        if bicubic is not None:
            for r in bicubic.results[d_index].images:
                per_image[r.name].append(r.psnr)
    return {name: max(v) - min(v) if len(v) > 1 else 0.0 for name, v in per_image.items()}


def best_window(planes: list[np.ndarray], size: int) -> tuple[int, int]:
    """Top-left corner of the ``size`` x ``size`` window where the planes disagree most."""
    var = np.var(np.stack(planes), axis=0)
    sat = np.pad(var.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = sat[size:, size:] - sat[:-size, size:] - sat[size:, :-size] + sat[:-size, :-size]
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(top), int(left)


def label_lines(label: str, width: int) -> list[str]:
    """``label`` in full, wrapped to lines of at most ``width // CHAR_WIDTH`` characters (at ``/``, ``-``,
    ``_`` or a space when one is near, else mid-word): a label is never cut short."""
    per_line = max(4, width // CHAR_WIDTH)
    lines: list[str] = []
    rest = label
    while len(rest) > per_line:
        cut = max((rest.rfind(c, 1, per_line) for c in " /-_"), default=-1)
        cut = cut + 1 if cut >= per_line // 2 else per_line
        lines.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    return [*lines, rest] if rest else lines or [""]


def _panel_strip(panels: list[tuple[str, np.ndarray]]) -> np.ndarray:
    from PIL import Image, ImageDraw

    h, w = panels[0][1].shape[:2]
    wrapped = [label_lines(label, w - 2) for label, _ in panels]
    rows = max(len(lines) for lines in wrapped)
    canvas = Image.new("RGB", (len(panels) * (w + GAP) - GAP, h + rows * LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(canvas)
    for i, ((_, img), lines) in enumerate(zip(panels, wrapped, strict=True)):
        x = i * (w + GAP)
        canvas.paste(Image.fromarray(np.ascontiguousarray(img)), (x, 0))
        for row, line in enumerate(lines):
            draw.text((x + 2, h + 1 + row * LABEL_HEIGHT), line, fill="black")
    return np.asarray(canvas)


def make_pictures(report: Report, out_dir: Path, *, count: int = 3, crop: int = 96, force: bool = False) -> list[Picture]:
    """Write the comparison PNGs into ``out_dir``; needs a report built with ``keep_outputs``."""
    from PIL import Image

    written = []
    for group in report.groups:
        candidates = []
        for d_index, dataset in enumerate(group.datasets):
            for name, spread in _spread(group, d_index).items():
                candidates.append((spread, d_index, dataset, name))
        candidates.sort(key=lambda c: -c[0])
        for _, d_index, dataset, name in candidates[:count]:
            pair = dataset.load(next(p for p in dataset.pairs if p.name == name))
            hr = gray_to_rgb(pair.hr)
            outputs = [(row.label, gray_to_rgb(row.results[d_index].outputs[name]))
                       for row in group.rows if row.kind == "model"]
            bicubic = gray_to_rgb(imresize(pair.lr, float(group.scale)))
            size = min(crop, *hr.shape[:2])
            top, left = best_window([rgb_to_y(img) for _, img in outputs] + [rgb_to_y(bicubic)], size)
            window = (slice(top, top + size), slice(left, left + size))
            panels = [("HR", hr[window]), ("Bicubic", bicubic[window])] + [(lab, img[window]) for lab, img in outputs]
            strip = _panel_strip(panels)
            target = out_dir / f"x{group.scale}_{dataset.name}_{name}.png"
            atomic_write(target, lambda tmp, a=strip: Image.fromarray(a).save(tmp, format="PNG"), force=force)
            written.append(Picture(target, dataset.name, name, (top, left, size, size)))
    return written
