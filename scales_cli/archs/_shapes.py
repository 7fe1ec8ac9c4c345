"""Small named helpers that read hyper-parameters off state-dict shapes and key counts."""

from __future__ import annotations

import math
import re

import torch

StateDict = dict[str, torch.Tensor]


def seq_len(sd: StateDict, prefix: str) -> int:
    """Length of a ModuleList/Sequential at ``prefix``: 1 + the largest index seen after it.

    ``seq_len(sd, "body.")`` counts ``body.0.…, body.1.…``; returns 0 when no key matches.
    """
    idx = indices(sd, prefix)
    return idx[-1] + 1 if idx else 0


def indices(sd: StateDict, prefix: str) -> list[int]:
    """Sorted distinct integer indices directly after ``prefix``."""
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in sd if (m := pat.match(k))})


def count_keys(sd: StateDict, pattern: str) -> int:
    """Number of keys matching a regular expression (fullmatch)."""
    pat = re.compile(pattern)
    return sum(1 for k in sd if pat.fullmatch(k))


def keys_fit(sd: StateDict, prefix: str, allowed: str) -> bool:
    """Every key under ``prefix`` matches the regular expression ``allowed`` (look-alike guard)."""
    pat = re.compile(allowed)
    return all(pat.fullmatch(k) for k in sd if k.startswith(prefix))


def shuffle_factor(out_channels: int, channels: int) -> int:
    """Pixel-shuffle factor r from a conv that feeds PixelShuffle: out = channels * r**2."""
    ratio, rem = divmod(out_channels, channels)
    r = math.isqrt(ratio)
    if rem or r * r != ratio:
        raise ValueError(f"{out_channels} output channels is not {channels} * r^2")
    return r


def window_from_bias_table(table_rows: int) -> int:
    """Swin window size w from a relative-position bias table with (2w-1)^2 rows."""
    side = math.isqrt(table_rows)
    if side * side != table_rows or side % 2 == 0:
        raise ValueError(f"bias table with {table_rows} rows is not (2w-1)^2")
    return (side + 1) // 2


def upsampler_scale(sd: StateDict, prefix: str, num_feat: int) -> int:
    """Total factor of a sub-pixel upsampler at ``prefix`` (convs at ``prefix0``, ``prefix2``, ...).

    ``scale = prod_i r_i`` with conv i having ``num_feat * r_i^2`` outputs; no conv there is a
    ``ValueError`` (a scale of 1 is no upsampler).
    """
    scale = 1
    for i in indices(sd, prefix):
        scale *= shuffle_factor(sd[f"{prefix}{i}.weight"].shape[0], num_feat)
    if scale == 1:
        raise ValueError(f"no upsampler convs under {prefix!r}")
    return scale
