"""Settle a scale that tensor shapes cannot tell, by running the weights.

PAN x2 and x3 checkpoints hold identical tensors (the factor only enters a nearest-neighbour
interpolation) and CARN-M's released file carries an upsampler for each of x2, x3 and x4. For such
specs (``ArchSpec.ambiguous_scales``) the network is built at every candidate scale and run on an
embedded image (a 120x120 crop of ``demo/Set5-mini/HR/butterfly.png``, divisible by 2, 3 and 4)
downscaled with MATLAB-exact bicubic; the Y-PSNR gain over bicubic upscaling says which scale the
weights were trained for. Weights trained at x2 and run at x3 paint x2 textures at the wrong
frequency and fall back towards (or below) bicubic, so one clearly positive gain (or one that beats
the others by ``DECISIVE_MARGIN_DB``) settles it; several close ones (a multi-scale file) or none
leave the spec's default in place with a warning that names ``--arch-opt scale=``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources

import numpy as np

# A candidate reconstructs "for real" when it beats bicubic by this much on the probe image ...
PLAUSIBLE_GAIN_DB = 0.5
# ... and settles the scale alone, or when it beats every other candidate by this much.
DECISIVE_MARGIN_DB = 2.0
PROBE_IMAGE = ("demo", "Set5-mini", "HR", "butterfly.png")
PROBE_CROP = 120  # lcm(2, 3, 4) * 10


@dataclass(frozen=True)
class ScaleDecision:
    """The scale to build, how it was decided, and a warning when the weights did not settle it."""

    scale: int
    source: str
    gains_db: Mapping[int, float]
    warning: str | None = None


def probe_image() -> np.ndarray:
    """The embedded HR probe: a centred ``PROBE_CROP`` square, uint8 ``HxWx3``."""
    from ..metrics.color import load_image

    ref = resources.files("scales_cli").joinpath(*PROBE_IMAGE)
    with resources.as_file(ref) as path:
        hr = load_image(path)
    h, w = hr.shape[:2]
    top, left = (h - PROBE_CROP) // 2, (w - PROBE_CROP) // 2
    return np.ascontiguousarray(hr[top : top + PROBE_CROP, left : left + PROBE_CROP])


def gain_over_bicubic(run: Callable[[np.ndarray], np.ndarray], scale: int, hr: np.ndarray) -> float:
    """Y-PSNR(run(LR), HR) - Y-PSNR(bicubic(LR), HR), LR = MATLAB bicubic of ``hr`` by 1/scale."""
    from ..metrics.quality import score
    from ..metrics.resize import imresize

    lr = imresize(hr, 1.0 / scale)
    model = score(run(lr), hr, border=scale).psnr
    bicubic = score(imresize(lr, float(scale)), hr, border=scale).psnr
    return model - bicubic


def decide_scale(
    candidates: tuple[int, ...], default: int, runner_at: Callable[[int], Callable[[np.ndarray], np.ndarray]], source: str
) -> ScaleDecision:
    """Pick among ``candidates`` by each one's gain over bicubic; ``runner_at(s)`` builds the network at ``s``."""
    hr = probe_image()
    gains = {s: gain_over_bicubic(runner_at(s), s, hr) for s in candidates}
    plausible = [s for s in candidates if gains[s] >= PLAUSIBLE_GAIN_DB]
    shown = ", ".join(f"x{s} {gains[s]:+.1f} dB" for s in candidates)
    ranked = sorted(plausible, key=lambda s: -gains[s])
    if len(ranked) == 1 or (ranked and gains[ranked[0]] - gains[ranked[1]] >= DECISIVE_MARGIN_DB):
        return ScaleDecision(ranked[0], f"probe (gain over bicubic: {shown})", gains)
    scales = "/".join(f"x{s}" for s in candidates)
    if plausible:
        why = f"{source}: its weights reconstruct at {', '.join(f'x{s}' for s in plausible)} (a multi-scale file?)"
        kind = "default: several scales fit"
    else:
        why = f"{source}: no scale of {scales} beats bicubic on the probe image"
        kind = "default: no scale fits"
    warning = f"{why}; using x{default} — pass --arch-opt scale=N to choose ({shown})"
    return ScaleDecision(default, f"{kind} ({shown})", gains, warning)
