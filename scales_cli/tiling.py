"""Tiled inference: upscale an image of any size in bounded memory, without visible seams.

The low-resolution (LR) image is cut into overlapping tiles along each axis (:func:`tile_spans`).
Each tile goes through the network on its own; the outputs are blended with a raised-cosine window
that, in the overlap of two neighbours, fades one in as the other fades out (output pixel ``t`` of an
overlap ``L`` px long):

    w_in(t) = sin²(π/2 · (t + ½) / L),    w_out(t) = cos²(π/2 · (t + ½) / L) = 1 − w_in(t)

so where two tiles meet their weights sum to one. The last tile is pulled back to end on the image's
edge and may reach a third tile; the result is therefore normalised by the summed weight,
``Σ w·y / Σ w``. The 2-D weight is the product of the row and column windows, and since the tiles
form a full grid its sum is the product of the 1-D sums, ``Σ w = (Σ_i wy_i)(Σ_j wx_j)``: no weight
plane is stored.

Memory: tiles are processed one row of tiles at a time; only one band of output rows (a tile's height
times the output width, float32) is held. Rows that no later tile touches are
handed out (:func:`iter_tiled_bands`) and the band's overlap is carried into the next one. Each
forward runs under :func:`torch.inference_mode`, so no autograd graph is kept.

"Away from seams" — when tiled equals untiled: let ``R`` be the network's receptive-field radius in
LR pixels (for a stack of 3×3 convs, one per conv). A tile's output at a pixel equals the untiled
output when the pixel is more than ``R`` px from every *interior* edge of that tile (edges on the
image border are the same for both). The blended value equals the untiled one when that holds for
every tile that covers the pixel. It holds exactly only for translation-equivariant networks:
windowed attention (SwinIR) qualifies when every tile starts on a multiple of the window (``align``;
then the tile's windows are the image's windows) — :func:`tile_spans` only places tiles there, and a
tile that reaches the image's end keeps its length, so the model pads it exactly as it pads the
whole image. Networks with global statistics (IMDN's contrast-aware channel attention: per-channel
mean and standard deviation over the whole map) or strided pooling (RFDN/RLFN's ESA) see only the
tile and are close to, not equal to, the untiled result. On CUDA "equal" means equal to float
rounding (cuDNN picks its algorithm per tile shape and runs convs in TF32 by default): measured on an
H200, tiled minus untiled away from seams was at most 6e-5 for CARN-M and 6e-7 for a small SwinIR.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from .errors import ScalesError
from .inputs import device_of

# Images with more LR pixels than this are tiled when no tile size is given (a 512x512 input).
AUTO_TILE_PIXELS = 512 * 512
AUTO_TILE = 256
AUTO_OVERLAP = 16

Span = tuple[int, int]
TileCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class TilePlan:
    """Tile edge and overlap in LR pixels, and the grid tiles start on (the window size, or 1)."""

    tile: int
    overlap: int
    align: int = 1

    def __post_init__(self) -> None:
        if self.tile < 1 or self.align < 1:
            raise ScalesError(f"tile {self.tile}: expected a positive tile size")
        if not 0 <= self.overlap < self.tile:
            raise ScalesError(f"tile overlap {self.overlap}: expected 0 <= overlap < tile ({self.tile})")
        if self.tile % self.align or self.overlap % self.align:
            raise ScalesError(
                f"tile {self.tile} / overlap {self.overlap}: both must be multiples of the model's window {self.align}"
            )


def plan_tiles(height: int, width: int, tile: int | None, overlap: int | None, align: int = 1) -> TilePlan:
    """The tiling to use for an ``height x width`` LR image.

    ``tile=None`` picks automatically: a single tile when the image has at most
    :data:`AUTO_TILE_PIXELS` pixels, else :data:`AUTO_TILE` px tiles. Tile and overlap are rounded up
    to multiples of ``align`` (a windowed model's window size) so tiled equals untiled away from seams.
    ``tile=0`` means no tiling.
    """
    if tile is not None and tile < 0:
        raise ScalesError(f"tile {tile}: expected a tile edge in pixels (0: no tiling)")
    if overlap is not None and overlap < 0:
        raise ScalesError(f"tile overlap {overlap}: expected a non-negative number of pixels")
    whole = _round_up(max(height, width), align)
    if tile == 0 or (tile is None and height * width <= AUTO_TILE_PIXELS):
        return TilePlan(tile=whole, overlap=0, align=align)
    size = _round_up(AUTO_TILE if tile is None else tile, align)
    if size >= whole:
        return TilePlan(tile=whole, overlap=0, align=align)
    lap = _round_up(AUTO_OVERLAP if overlap is None else overlap, align)
    if lap >= size:
        raise ScalesError(f"tile overlap {lap}: expected less than the tile size {size}")
    return TilePlan(tile=size, overlap=lap, align=align)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def window_alignment(model: nn.Module) -> int:
    """The grid a windowed model partitions its input on: lcm of every ``window_size`` it holds (1 if none)."""
    align = 1
    for module in model.modules():
        ws = getattr(module, "window_size", None)
        if isinstance(ws, int) and ws > 0:
            align = math.lcm(align, ws)
    return align


def tile_spans(length: int, tile: int, overlap: int, align: int = 1) -> tuple[Span, ...]:
    """Half-open ``[start, end)`` tile spans covering ``[0, length)``.

    Starts are ``0, step, 2·step, …`` (``step = tile − overlap``) while a tile still ends inside the
    image; the last tile starts at ``align_down(length − tile)`` and runs to ``length``, so it is at
    most ``align − 1`` px longer than ``tile`` and overlaps its neighbour by at least ``overlap``.
    """
    if length <= 0:
        raise ScalesError(f"cannot tile an empty axis (length {length})")
    step = tile - overlap
    last = max(0, length - tile) // align * align
    starts = [s for s in range(0, max(0, length - tile), step) if s < last]
    starts.append(last)
    ends = [min(s + tile, length) for s in starts[:-1]] + [length]
    return tuple(zip(starts, ends, strict=True))


def blend_window(spans: tuple[Span, ...], index: int, scale: int) -> torch.Tensor:
    """1-D output-resolution weights of tile ``index``: raised-cosine ramps over its overlaps."""
    start, end = spans[index]
    weights = torch.ones(scale * (end - start), dtype=torch.float32)
    if index > 0:
        n = scale * (spans[index - 1][1] - start)
        weights[:n] *= _ramp(n)
    if index + 1 < len(spans):
        n = scale * (end - spans[index + 1][0])
        weights[weights.numel() - n:] *= _ramp(n).flip(0)
    return weights


def _window_sum(spans: tuple[Span, ...], scale: int) -> torch.Tensor:
    """Σ of the 1-D blend windows of all tiles at each output position along one axis."""
    total = torch.zeros(scale * spans[-1][1])
    for i, (start, end) in enumerate(spans):
        total[scale * start: scale * end] += blend_window(spans, i, scale)
    return total


def _ramp(n: int) -> torch.Tensor:
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return torch.sin(t * (math.pi / 2)).pow(2).float()


def iter_tiled_bands(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    scale: int,
    plan: TilePlan,
    *,
    on_tile: TileCallback | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(first_output_row, band)`` with ``band`` a finished float32 ``(C, rows, scale·W)`` slice.

    ``x`` is ``(1, C, H, W)`` on the CPU; a module gets each tile on its device (output brought back to
    the CPU); any other callable (an :class:`~scales_cli.inputs.Upscaler`) places the tile itself. ``on_tile(done, total)`` is called after every tile (progress bars).
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ScalesError(f"expected a (1, C, H, W) image tensor, got shape {tuple(x.shape)}")
    _, _, height, width = x.shape
    rows = tile_spans(height, plan.tile, plan.overlap, plan.align)
    cols = tile_spans(width, plan.tile, plan.overlap, plan.align)
    col_weights = [blend_window(cols, j, scale) for j in range(len(cols))]
    row_sum, col_sum = _window_sum(rows, scale), _window_sum(cols, scale)
    device = device_of(model) if isinstance(model, nn.Module) else x.device
    total, done = len(rows) * len(cols), 0
    carry: torch.Tensor | None = None  # accumulated rows shared with the next band
    for i, (top, bottom) in enumerate(rows):
        row_weight = blend_window(rows, i, scale).view(1, -1, 1)
        band_rows = scale * (bottom - top)
        acc: torch.Tensor | None = None
        for j, (left, right) in enumerate(cols):
            with torch.inference_mode():
                y = model(x[:, :, top:bottom, left:right].to(device))[0].float().cpu()
            expect = (band_rows, scale * (right - left))
            if tuple(y.shape[-2:]) != expect:
                raise ScalesError(
                    f"model returned {tuple(y.shape[-2:])} for a {bottom - top}x{right - left} tile; "
                    f"expected {expect} (scale {scale})"
                )
            if acc is None:
                acc = torch.zeros(y.shape[0], band_rows, scale * width)
                if carry is not None:
                    acc[:, : carry.shape[1]] += carry
                    carry = None
            w = row_weight * col_weights[j].view(1, 1, -1)
            acc[:, :, scale * left: scale * right].addcmul_(y, w)
            done += 1
            if on_tile is not None:
                on_tile(done, total)
        assert acc is not None  # every row has at least one column
        finished = scale * (rows[i + 1][0] - top) if i + 1 < len(rows) else band_rows
        carry = acc[:, finished:].clone()
        band = acc[:, :finished].div_(row_sum[scale * top: scale * top + finished].view(1, -1, 1))
        band.div_(col_sum.view(1, 1, -1))  # two broadcast divisions: no (rows, W) weight plane is built
        del acc
        yield scale * top, band
        del band  # the band views the whole accumulator: free it before the next one is allocated


def upscale_tiled(
    model: nn.Module,
    x: torch.Tensor,
    scale: int,
    tile: int,
    overlap: int,
    *,
    align: int | None = None,
    on_tile: TileCallback | None = None,
) -> torch.Tensor:
    """Upscale ``x`` (``(1, C, H, W)``, model input range) tile by tile; returns ``(1, C, sH, sW)`` float32.

    ``align`` defaults to :func:`window_alignment` of ``model``.

    >>> import torch; from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2)).eval()
    >>> upscale_tiled(net, torch.rand(1, 3, 50, 40), 2, tile=16, overlap=4).shape
    torch.Size([1, 3, 100, 80])
    """
    plan = TilePlan(tile=tile, overlap=overlap, align=window_alignment(model) if align is None else align)
    out: torch.Tensor | None = None
    for first_row, band in iter_tiled_bands(model, x, scale, plan, on_tile=on_tile):
        if out is None:
            out = torch.empty(1, band.shape[0], scale * x.shape[-2], scale * x.shape[-1])
        out[0, :, first_row: first_row + band.shape[1]] = band
    assert out is not None
    return out
