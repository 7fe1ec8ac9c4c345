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

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import DataError
from .io import atomic_write
from .tiling import TileCallback, TilePlan, iter_tiled_bands

# BT.601 luma weights (R, G, B): Y = 0.299 R + 0.587 G + 0.114 B.
LUMA_601: tuple[float, float, float] = (0.299, 0.587, 0.114)
# What Pillow raises for a file that is not an image, or whose data is cut short or corrupt.
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)
_NATIVE_MODES = {"RGB", "RGBA", "L", "LA"}
_SIXTEEN_BIT_GRAY = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
# Modes with no faithful 8-bit mapping (the range of float samples is unknown); known from the header.
_UNSUPPORTED_MODES = {"F"}


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
    """Decode ``path`` into a :class:`LoadedImage`; any unreadable file is a one-line :class:`DataError`."""
    p = _existing_file(path)
    try:
        with Image.open(p) as im:
            im.load()
            return _to_loaded(p, im)
    except _DECODE_ERRORS as exc:
        raise _unreadable(p, exc) from None


def _existing_file(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{p}: is a directory (expected an image file)")
    if not p.is_file():
        raise DataError(f"{p}: no such image file")
    return p


def _unreadable(p: Path, exc: BaseException) -> DataError:
    text = str(exc).strip().splitlines()
    return DataError(f"{p}: not a readable image ({text[0][:160] if text else exc.__class__.__name__})")


def _unsupported(p: Path, mode: str) -> DataError:
    return DataError(f"{p}: {mode} (32-bit float) images are not supported (expected 8/16-bit RGB, gray or palette)")


def _to_loaded(p: Path, im: Image.Image) -> LoadedImage:
    mode = im.mode
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
    elif mode in _UNSUPPORTED_MODES:
        raise _unsupported(p, mode)
    elif mode not in _NATIVE_MODES and mode not in _SIXTEEN_BIT_GRAY:  # 1, CMYK, YCbCr, RGBX, La ...
        im = im.convert("RGBA" if mode.endswith(("A", "a")) else ("L" if mode == "1" else "RGB"))

    alpha: Image.Image | None = None
    if im.mode in ("RGBA", "LA"):
        alpha = im.getchannel("A")
        im = im.convert("RGB" if im.mode == "RGBA" else "L")

    if im.mode in _SIXTEEN_BIT_GRAY:
        values = np.asarray(im).astype(np.float32)
        if values.size and (values.max() > 65535 or values.min() < 0):
            raise DataError(f"{p}: {mode} image has values outside 0..65535 (expected 16-bit gray)")
        plane = values / 65535.0
        return LoadedImage(p, _gray_to_rgb(plane), alpha, gray=True, mode=mode)
    if im.mode == "L":
        plane = np.asarray(im, dtype=np.float32) / 255.0
        return LoadedImage(p, _gray_to_rgb(plane), alpha, gray=True, mode=mode)
    if im.mode != "RGB":
        raise DataError(f"{p}: unsupported image mode {mode} (expected RGB, RGBA, L, LA, P or 16-bit gray)")
    pixels = torch.from_numpy(np.asarray(im).copy())  # (H, W, 3) uint8: one float copy is made below
    rgb = pixels.permute(2, 0, 1).unsqueeze(0).to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)
    return LoadedImage(p, rgb, alpha, gray=False, mode=mode)


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


def probe_image(path: str | Path) -> tuple[int, int]:
    """Read only the header of ``path``: its (width, height); a one-line :class:`DataError` if it is no image.

    Used to reject bad inputs (and unsupported modes) before a model is loaded or any output is
    written; pixel data errors surface in :func:`read_image`.
    """
    p = _existing_file(path)
    try:
        with Image.open(p) as im:
            if im.mode in _UNSUPPORTED_MODES:
                raise _unsupported(p, im.mode)
            return im.size
    except _DECODE_ERRORS as exc:
        raise _unreadable(p, exc) from None


def upscale_image(
    model: torch.nn.Module,
    scale: int,
    input_range: float,
    image: LoadedImage,
    plan: TilePlan,
    *,
    on_tile: TileCallback | None = None,
) -> Image.Image:
    """Run ``image`` through ``model`` tile by tile and return the 8-bit output (alpha re-attached).

    Bands of finished output rows are quantised and pasted into an 8-bit canvas as they arrive, so the
    largest float buffer is one band, never the whole output.
    """
    x = image.rgb if input_range == 1.0 else image.rgb * input_range
    width, height = image.size
    canvas = new_canvas((scale * width, scale * height), image.gray)
    for first_row, band in iter_tiled_bands(model, x, scale, plan, on_tile=on_tile):
        if input_range != 1.0:
            band = band.div_(input_range)
        canvas.paste(band_to_image(band, image.gray), (0, first_row))
        del band
    return attach_alpha(canvas, image.alpha)
