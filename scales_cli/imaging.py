"""Read images into model-ready tensors, upscale them, write the results — whatever the PNG mode.

An SR network sees RGB in ``[0, 1]``. Files come in many modes; each is mapped once, here:

=========================  =================================================  ==================
file mode (Pillow)         what the network sees                              written back as
=========================  =================================================  ==================
``RGB``                    the three channels / 255                           ``RGB``
``L``, ``1``               the gray value replicated to R=G=B                 ``L`` (see below)
``I;16*``, ``I`` (16 bit)  gray / 65535, replicated to R=G=B                  ``L`` (uint8)
``RGBA``, ``LA``           colour as above; alpha upscaled bicubically apart  ``RGBA`` / ``LA``
``P`` (palette)            palette expanded (``RGBA`` if it has transparency) ``RGB`` / ``RGBA``
16-bit RGB PNG             decoded by Pillow to the high byte of each sample  ``RGB``
=========================  =================================================  ==================

Gray inputs: the network is fed ``(g, g, g)`` and the gray output is the BT.601 luma of what it
returns, ``Y = 0.299 R + 0.587 G + 0.114 B``. For a gray input the three outputs differ only by the
network's colour bias, and luma is the value a viewer perceives, so it is the natural projection.

16-bit samples: ``I;16`` gray is exact (``v / 65535``). Pillow has no 16-bit-per-channel RGB mode and
keeps the high byte ``v >> 8`` of each sample, so such files are read as ``(v >> 8) / 255``, within
``1/255`` of ``v / 65535`` — the written output is uint8 in any case.

Alpha is never sent through the network (it was not trained on it): it is resized with Pillow's
bicubic filter to the output size and re-attached.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .decode import DecodedImage, decode_image, probe_image
from .errors import DataError
from .io import atomic_write
from .metrics.color import LUMA_COEFFS
from .tiling import TileCallback, TilePlan, iter_tiled_bands

__all__ = ["LoadedImage", "decode_image", "probe_image", "read_image", "upscale_image", "upscale_loaded", "write_png"]

# BT.601 luma weights (R, G, B): Y = 0.299 R + 0.587 G + 0.114 B (one copy, in metrics.color).
LUMA_601: tuple[float, float, float] = tuple(float(c) for c in LUMA_COEFFS)  # type: ignore[assignment]


@dataclass(frozen=True)
class LoadedImage:
    """An image ready for the network.

    ``rgb``: float32 ``(1, 3, H, W)`` in ``[0, 1]`` (gray files replicated to three channels).
    ``alpha``: the file's alpha plane as an 8-bit ``L`` image, or None.
    ``gray``: the file had one colour channel; its output is written as gray (``L``/``LA``).
    """

    path: Path
    rgb: torch.Tensor
    alpha: Image.Image | None
    gray: bool
    mode: str  # the file's original Pillow mode, for messages and reports

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.rgb.shape[-1]), int(self.rgb.shape[-2])


def read_image(path: str | Path) -> LoadedImage:
    """Decode ``path`` (:func:`scales_cli.decode.decode_image`) into a network-ready :class:`LoadedImage`."""
    return to_loaded(decode_image(path))


def to_loaded(image: DecodedImage) -> LoadedImage:
    """Integer pixels -> float ``(1, 3, H, W)`` in ``[0, 1]`` (one float copy; gray replicated)."""
    if image.gray:
        plane = image.pixels.astype(np.float32) / float(image.max_value)
        return LoadedImage(image.path, _gray_to_rgb(plane), image.alpha, gray=True, mode=image.mode)
    pixels = torch.from_numpy(np.ascontiguousarray(image.pixels))  # (H, W, 3) uint8
    rgb = pixels.permute(2, 0, 1).unsqueeze(0).to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)
    return LoadedImage(image.path, rgb, image.alpha, gray=False, mode=image.mode)


def _gray_to_rgb(plane: np.ndarray) -> torch.Tensor:
    gray = torch.from_numpy(np.ascontiguousarray(plane))
    return gray.expand(1, 3, *gray.shape).contiguous()


def to_uint8_(values: torch.Tensor) -> torch.Tensor:
    """Floats in ``[0, 1]`` -> uint8 by ``round(clamp(v, 0, 1) * 255)``, in place (the input is consumed)."""
    return values.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)


def band_to_image(band: torch.Tensor, gray: bool) -> Image.Image:
    """A float ``(3, h, W)`` band in ``[0, 1]`` -> an 8-bit ``RGB`` or (luma) ``L`` Pillow image.

    Works in place on ``band`` (which is consumed): a band of a 16000 px wide output is ~200 MB of
    float32, and temporaries of that size would dominate the memory of tiled upscaling.
    """
    if gray:
        luma = band[0].mul_(LUMA_601[0]).add_(band[1], alpha=LUMA_601[1]).add_(band[2], alpha=LUMA_601[2])
        return Image.fromarray(to_uint8_(luma).numpy(), mode="L")
    pixels = to_uint8_(band).permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(pixels, mode="RGB")


def new_canvas(size: tuple[int, int], gray: bool) -> Image.Image:
    """An empty 8-bit output image that bands are pasted into (no full-size float copy is ever held)."""
    return Image.new("L" if gray else "RGB", size)


def attach_alpha(canvas: Image.Image, alpha: Image.Image | None) -> Image.Image:
    """Resize ``alpha`` bicubically to the canvas size and attach it (``RGB``->``RGBA``, ``L``->``LA``)."""
    if alpha is None:
        return canvas
    resized = alpha.resize(canvas.size, Image.Resampling.BICUBIC)
    out = canvas.convert("RGBA" if canvas.mode == "RGB" else "LA")
    out.putalpha(resized)
    return out


def output_name(path: Path, scale: int) -> str:
    """``photo.jpg`` at x4 -> ``photo_x4.png``."""
    return f"{path.stem}_x{scale}.png"


def write_png(image: Image.Image, target: Path, *, force: bool = False) -> Path:
    """Atomically write ``image`` as PNG; an existing ``target`` is kept unless ``force``."""
    return atomic_write(target, lambda tmp: image.save(tmp, format="PNG"), force=force, suffix=".png")


def upscale_image(
    model: torch.nn.Module,
    scale: int,
    input_range: float,
    image: LoadedImage,
    plan: TilePlan,
    *,
    min_size: int = 1,
    on_tile: TileCallback | None = None,
) -> Image.Image:
    """``model`` (NCHW in ``[0, input_range]``) as an :class:`~scales_cli.inputs.Upscaler` over ``image``."""
    from .inputs import Upscaler

    return Upscaler(model, scale, input_range, min_size).upscale_image(image, plan, on_tile)


def upscale_loaded(
    upscaler: Callable[[torch.Tensor], torch.Tensor],
    scale: int,
    image: LoadedImage,
    plan: TilePlan,
    *,
    on_tile: TileCallback | None = None,
) -> Image.Image:
    """Run ``image`` through ``upscaler`` (``[0, 1]`` in and out) tile by tile; the 8-bit output, alpha re-attached.

    Bands of finished output rows are quantised and pasted into an 8-bit canvas as they arrive, so the
    largest float buffer is one band, never the whole output. A tile below the network's smallest
    input is padded by the upscaler (:class:`~scales_cli.inputs.Upscaler`), so a 1x1 PNG works too.
    """
    width, height = image.size
    canvas = new_canvas((scale * width, scale * height), image.gray)
    try:
        for first_row, band in iter_tiled_bands(upscaler, image.rgb, scale, plan, on_tile=on_tile):
            band = band[:, : max(0, scale * height - first_row), : scale * width]
            if band.shape[1]:
                canvas.paste(band_to_image(band, image.gray), (0, first_row))
            del band
    except RuntimeError as exc:
        # Below _SMALL_SIDE a forward-pass RuntimeError (a kernel or pooling window larger than the
        # map) is the input's size, not a bug: say so in one line naming the image.
        if min(width, height, plan.tile) >= _SMALL_SIDE:
            raise
        why = next(iter(str(exc).strip().splitlines()), type(exc).__name__)[:160]
        raise DataError(f"{image.path}: {width}x{height} px is too small for this network ({why})") from None
    return attach_alpha(canvas, image.alpha)


_SMALL_SIDE = 64
