"""Swin building blocks shared by SwinIR, HAT and IMDTN, with the official SwinIR parameter names.

Why our own copy: the official code ties window masks to the training patch size (``attn_mask``
buffers) and imports timm. Here masks are computed for the actual feature size at run time (and
cached), and ``attn_mask`` / ``relative_position_index`` are *non-persistent*: our state dicts hold
learnable tensors only, and official checkpoints load strictly once their copies of those buffers
are dropped through ``ArchSpec.ignore_keys`` (:data:`SWIN_BUFFER_GLOBS`).

Trace-friendly: every size-dependent step (the padding, the shifted-window masks, the window
reshapes, the final crop) is computed from tensor shapes with tensor ops, so a TorchScript trace
(``scales export``) gives a graph valid for every input height and width, padding included.

Token layout: ``(B, H*W, C)`` between blocks, as in SwinIR; images are ``(B, C, H, W)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import lru_cache

import torch
from torch import nn

from ._layers import DIV2K_MEAN

# Buffers that official checkpoints carry but that are pure functions of the window (index) or of
# the training patch size (mask): recomputed here, so dropped before the strict load.
SWIN_BUFFER_GLOBS: tuple[str, ...] = ("*.attn_mask", "*.relative_position_index")


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``(B, H, W, C)`` -> ``(B * H/w * W/w, w, w, C)``, windows in row-major order per image."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, w, w, C)`` -> ``(B, H, W, C)``."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column of every pixel of a ``size x size`` window, flattened row-major."""
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return y.reshape(-1), x.reshape(-1)


def relative_offsets_index(window: int) -> torch.Tensor:
    """Bias-table row for every (query i, key j) pair of one ``w x w`` window (Swin).

    ``index[i, j] = (y_i - y_j + w - 1) * (2w - 1) + (x_i - x_j + w - 1)``; shape ``(w*w, w*w)``, int64.
    """
    y, x = _grid(window)
    dy = y[:, None] - y[None, :]
    dx = x[:, None] - x[None, :]
    return (dy + window - 1) * (2 * window - 1) + (dx + window - 1)


def overlap_offsets_index(window: int, overlap_window: int) -> torch.Tensor:
    """Bias-table row for query pixel i of a ``w x w`` window and key j of its ``o x o`` overlap (HAT OCAB).

    Official HAT: ``index = (dy + w - o + 1) * (w + o - 1) + (dx + w - o + 1)`` with ``d = key - query``
    (each from its own window's origin). Some of these are negative and PyTorch then indexes from the
    end of the table; we return the same rows made non-negative (``mod (w + o - 1)^2``).
    Shape ``(w*w, o*o)``, int64.
    """
    qy, qx = _grid(window)
    ky, kx = _grid(overlap_window)
    side = window + overlap_window - 1
    shift = window - overlap_window + 1
    index = (ky[None, :] - qy[:, None] + shift) * side + (kx[None, :] - qx[:, None] + shift)
    return index % (side * side)


def window_mask(h: int | torch.Tensor, w: int | torch.Tensor, window: int, shift: int) -> torch.Tensor:
    """Additive attention mask for shifted windows on an ``h x w`` map (both multiples of ``window``).

    After rolling by ``-shift`` each window may hold pixels from up to 4 regions that were not
    neighbours; each axis splits at ``size - window`` and ``size - shift``, so a row's region is
    ``[r >= h - window] + [r >= h - shift]`` (0, 1 or 2) and a pixel's label ``3 * row + col``.
    ``mask[n, i, j] = 0`` when tokens i and j of window n share a label, else ``-100`` (so softmax
    gives ~0). Shape ``(h/w * w/w, w*w, w*w)``.

    Built from aranges and comparisons only, so ``h`` and ``w`` may be traced sizes (0-d tensors while
    tracing): the exported graph computes the mask for whatever size it is given.
    """
    labels = (_regions(h, window, shift)[:, None] * 3 + _regions(w, window, shift)[None, :]).float()
    per_window = window_partition(labels[None, :, :, None], window).reshape(-1, window * window)
    diff = per_window.unsqueeze(1) - per_window.unsqueeze(2)
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


def _regions(size: int | torch.Tensor, window: int, shift: int) -> torch.Tensor:
    at = torch.arange(size)
    return (at >= size - window).long() + (at >= size - shift).long()


@lru_cache(maxsize=64)
def _cached_window_mask(h: int, w: int, window: int, shift: int) -> torch.Tensor:
    return window_mask(h, w, window, shift)


def shifted_window_mask(h: int | torch.Tensor, w: int | torch.Tensor, window: int, shift: int) -> torch.Tensor:
    """:func:`window_mask`, cached per size in eager mode (treat the result as read-only).

    While tracing, sizes are tensors of the graph: the mask is computed in the graph, never cached.
    """
    if torch.jit.is_tracing():
        return window_mask(h, w, window, shift)
    return _cached_window_mask(int(h), int(w), window, shift)


def pad_to_multiple(x: torch.Tensor, multiple: int, *, always: bool = False, mode: str = "reflect") -> torch.Tensor:
    """Pad an NCHW image at the bottom/right so H and W become multiples of ``multiple``.

    ``pad = (m - size % m) % m``, or ``m - size % m`` (1..m, never 0) with ``always`` (IMDTN's rule).
    ``mode``: ``"reflect"`` (SwinIR/HAT, edge pixel not repeated) or ``"symmetric"`` (IMDTN's
    flip-and-concatenate, edge repeated). Inputs smaller than the pad are mirrored again and again
    (1-pixel-wide inputs are replicated), where the official code would fail.

    One gather of :func:`mirror_index` rows per axis, with pad sizes computed from the input's
    shape: traced, the graph pads inside itself for every input size (no Python loop to unroll).
    """
    h, w = x.shape[-2:]
    pad_h = multiple - h % multiple if always else (multiple - h % multiple) % multiple
    pad_w = multiple - w % multiple if always else (multiple - w % multiple) % multiple
    x = _pad_axis(x, pad_h, dim=x.dim() - 2, mode=mode)
    return _pad_axis(x, pad_w, dim=x.dim() - 1, mode=mode)


def mirror_index(size: int | torch.Tensor, length: int | torch.Tensor, mode: str) -> torch.Tensor:
    """Source index of each of ``length`` positions when an axis of ``size`` is extended by mirroring.

    Mirroring the extended axis again continues the same wave, so any pad is one gather:
    ``"reflect"`` (edge not repeated) is the triangle wave of period ``p = 2 (n - 1)``,
    ``r = i mod p -> min(r, p - r)`` (``p`` taken as 1 when ``n = 1``: every index 0);
    ``"symmetric"`` (edge repeated) folds period ``2n``: ``r = i mod 2n -> min(r, 2n - 1 - r)``.

    >>> mirror_index(3, 8, "reflect").tolist(), mirror_index(3, 8, "symmetric").tolist()
    ([0, 1, 2, 1, 0, 1, 2, 1], [0, 1, 2, 2, 1, 0, 0, 1])
    """
    at = torch.arange(length)
    if mode == "symmetric":
        r = at % (2 * size)
        return torch.minimum(r, 2 * size - 1 - r)
    if mode != "reflect":
        raise ValueError(f"mode {mode!r}: expected 'reflect' or 'symmetric'")
    # min(r, p - r) rather than (n - 1) - |r - (n - 1)|: OpenVINO's CPU Abs is wrong on int64 (measured)
    period = torch.as_tensor(2 * (size - 1)).clamp(min=1)
    r = at % period
    return torch.minimum(r, period - r)


def _pad_axis(x: torch.Tensor, pad: int | torch.Tensor, *, dim: int, mode: str) -> torch.Tensor:
    if not torch.jit.is_tracing() and pad == 0:  # traced, the pad is a tensor: always gather
        return x
    size = x.shape[dim]
    return x.index_select(dim, mirror_index(size, size + pad, mode).to(x.device))


def crop_to(y: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return y[..., :h, :w]


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a sample's residual branch with probability p, scale by 1/(1-p)."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Mlp(nn.Module):
    """Token MLP: ``fc2(GELU(fc1(x)))``, hidden width = ``dim * mlp_ratio``."""

    def __init__(self, in_features: int, hidden_features: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ``w x w`` windows with a learned relative-position bias.

    ``attn = softmax(q k^T / sqrt(d) + B[rel(i, j)] + mask)``, ``out = proj(attn v)``; the bias table
    has ``(2w-1)^2`` rows, one per relative offset, and ``num_heads`` columns.
    """

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        index = relative_offsets_index(window_size)
        self.register_buffer("relative_position_index", index, persistent=False)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(B*nW, N, C)`` with ``N = w*w``; ``mask``: ``(nW, N, N)`` or None."""
        b_, n, c = x.shape
        qkv = self.qkv(x).reshape(b_, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(b_ // nw, nw, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, n, n)
        attn = self.softmax(attn)
        return self.proj((attn @ v).transpose(1, 2).reshape(b_, n, c))

    def extra_macs(self, inputs: tuple, output: torch.Tensor) -> int:
        """MACs of ``q @ k^T`` and ``attn @ v``: ``B_ * heads * N * N * head_dim * 2 = 2 B_ N^2 C``."""
        b_, n, c = inputs[0].shape
        return 2 * b_ * n * n * c


class SwinTransformerBlock(nn.Module):
    """(Shifted-)window attention + MLP, each pre-normed with a residual.

    ``x = x + WA(LN(x))`` on windows of the map rolled by ``-shift`` (rolled back after), then
    ``x = x + MLP(LN(x))``. The mask for rolled windows is computed for the actual ``x_size``.
    """

    def __init__(
        self, dim: int, num_heads: int, window_size: int, shift_size: int = 0, mlp_ratio: float = 4.0,
        qkv_bias: bool = True, drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift {shift_size} must be in [0, window {window_size})")
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        b, _, c = x.shape
        x = x + self.drop_path(self.window_attention(self.norm1(x).view(b, *x_size, c)))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def window_attention(self, y: torch.Tensor) -> torch.Tensor:
        """Attention branch on a normed ``(B, H, W, C)`` map -> tokens ``(B, H*W, C)``."""
        b, h, w, c = y.shape
        ws, shift = self.window_size, self.shift_size
        mask = None
        if shift:
            y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
            mask = shifted_window_mask(h, w, ws, shift).to(device=y.device, dtype=y.dtype)
        windows = window_partition(y, ws).reshape(-1, ws * ws, c)
        y = window_reverse(self.attn(windows, mask).view(-1, ws, ws, c), ws, h, w)
        if shift:
            y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
        return y.reshape(b, h * w, c)


class BasicLayer(nn.Module):
    """``depth`` Swin blocks; odd ones shift by ``window // 2``."""

    def __init__(
        self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float = 4.0,
        qkv_bias: bool = True, drop_path: float | list[float] = 0.0,
    ) -> None:
        super().__init__()
        rates = drop_path if isinstance(drop_path, list) else [drop_path] * depth
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2,
                                 mlp_ratio, qkv_bias, rates[i])
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x, x_size)
        return x


class PatchEmbed(nn.Module):
    """Image ``(B, C, H, W)`` -> tokens ``(B, H*W, C)`` (patch size 1), optionally LayerNorm-ed."""

    def __init__(self, embed_dim: int, norm: bool = False) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).transpose(1, 2)
        return self.norm(x) if self.norm is not None else x


class PatchUnEmbed(nn.Module):
    """Tokens ``(B, H*W, C)`` -> image ``(B, C, H, W)``."""

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        b, _, c = x.shape
        return x.transpose(1, 2).reshape(b, c, x_size[0], x_size[1])


def resi_conv(dim: int, kind: str) -> nn.Module:
    """SwinIR's conv before a residual: ``'1conv'`` (3x3) or ``'3conv'`` (3x3 -> 1x1 -> 3x3 via dim/4)."""
    if kind == "1conv":
        return nn.Conv2d(dim, dim, 3, 1, 1)
    if kind == "3conv":
        q = dim // 4
        return nn.Sequential(
            nn.Conv2d(dim, q, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(q, q, 1, 1, 0), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(q, dim, 3, 1, 1),
        )
    raise ValueError(f"resi_connection {kind!r}: expected '1conv' or '3conv'")


class RSTB(nn.Module):
    """Residual Swin Transformer Block: ``x + embed(conv(unembed(layer(x))))`` on tokens."""

    def __init__(
        self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float = 4.0,
        qkv_bias: bool = True, drop_path: float | list[float] = 0.0, resi_connection: str = "1conv",
    ) -> None:
        super().__init__()
        self.residual_group = BasicLayer(dim, depth, num_heads, window_size, mlp_ratio, qkv_bias, drop_path)
        self.conv = resi_conv(dim, resi_connection)
        self.patch_embed = PatchEmbed(dim)
        self.patch_unembed = PatchUnEmbed()

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        y = self.patch_unembed(self.residual_group(x, x_size), x_size)
        return self.patch_embed(self.conv(y)) + x


def drop_path_rates(rate: float, depths: tuple[int, ...]) -> list[list[float]]:
    """Stochastic-depth rates rising linearly from 0 to ``rate`` over all blocks, split per stage."""
    flat = torch.linspace(0, rate, sum(depths)).tolist() if depths else []
    out, start = [], 0
    for d in depths:
        out.append(flat[start:start + d])
        start += d
    return out


def mean_buffer(in_chans: int) -> torch.Tensor:
    """SwinIR/HAT subtract the DIV2K RGB mean (zeros for other channel counts)."""
    if in_chans == 3:
        return torch.tensor(DIV2K_MEAN).view(1, 3, 1, 1)
    return torch.zeros(1, 1, 1, 1)


class SwinBackbone(nn.Module, ABC):
    """The SwinIR/HAT trunk around a subclass's ``reconstruct`` (the upsampler and last convs).

    ``y = crop(reconstruct(f + conv_after_body(deep(f))) / img_range + mean)`` with
    ``f = conv_first((pad(x) - mean) * img_range)``, ``deep = unembed . norm . layers . embed``; the
    input is padded (reflect) to a multiple of the window, as the official test scripts do.
    Subclasses set ``conv_first``, ``patch_embed``, ``layers``, ``norm``, ``patch_unembed`` and
    ``conv_after_body`` (official names) and define ``reconstruct``.
    """

    def __init__(self, scale: int, window_size: int, img_range: float, in_chans: int) -> None:
        super().__init__()
        self.scale, self.window_size, self.img_range = scale, window_size, img_range
        self.register_buffer("mean", mean_buffer(in_chans), persistent=False)

    @abstractmethod
    def reconstruct(self, feat: torch.Tensor) -> torch.Tensor:
        """Deep features ``(B, embed_dim, H, W)`` -> image ``(B, C, sH, sW)`` (still mean-shifted)."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x_size = (x.shape[2], x.shape[3])
        t = self.patch_embed(x)
        for layer in self.layers:
            t = layer(t, x_size)
        return self.patch_unembed(self.norm(t), x_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = (pad_to_multiple(x, self.window_size) - self.mean) * self.img_range
        feat = self.conv_first(x)
        feat = self.conv_after_body(self.forward_features(feat)) + feat
        y = self.reconstruct(feat)
        return crop_to(y / self.img_range + self.mean, h * self.scale, w * self.scale)


__all__ = [
    "RSTB", "SWIN_BUFFER_GLOBS", "BasicLayer", "DropPath", "Mlp", "PatchEmbed", "PatchUnEmbed",
    "SwinBackbone", "SwinTransformerBlock", "WindowAttention", "crop_to", "drop_path_rates",
    "mean_buffer", "overlap_offsets_index", "pad_to_multiple", "relative_offsets_index", "resi_conv",
    "mirror_index", "shifted_window_mask", "window_mask", "window_partition", "window_reverse",
]
