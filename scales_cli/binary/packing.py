"""Pack binary weights 8 per byte for export, and unpack them back to +-1.

Layout: W is flattened per output channel in PyTorch's contiguous order, so row o holds
W[o] reshaped to K = C_in/groups * kh * kw (conv) or K = in_features (linear). Element j of a row
goes to byte j // 8, bit 7 - j % 8 (most significant bit first, numpy ``packbits`` order); the bit
is 1 for +1 (W >= 0, since sign(0) = +1) and 0 for -1. The last byte of a row is padded with 0 bits.

Example::

    >>> pack_sign_bits(torch.tensor([[1.0, -1.0, 0.0, -2.0, 3.0, 1.0, 1.0, -1.0, 5.0]]))
    tensor([[174, 128]], dtype=torch.uint8)
"""

from __future__ import annotations

import torch
from torch import Tensor

_BIT_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.int32)


def pack_sign_bits(w: Tensor) -> Tensor:
    """``(C_out, ...)`` real weights -> ``(C_out, ceil(K / 8))`` uint8 sign bits (see module doc)."""
    rows = (w.detach().reshape(w.shape[0], -1) >= 0).to(torch.int32).cpu()
    k = rows.shape[1]
    padded = torch.nn.functional.pad(rows, (0, (-k) % 8))
    return (padded.reshape(rows.shape[0], -1, 8) * _BIT_WEIGHTS).sum(dim=2).to(torch.uint8)


def unpack_sign_bits(packed: Tensor, k: int) -> Tensor:
    """``(C_out, ceil(k / 8))`` uint8 -> ``(C_out, k)`` float32 of +-1 (inverse of :func:`pack_sign_bits`)."""
    bits = (packed.to(torch.int32).unsqueeze(2) & _BIT_WEIGHTS) != 0
    return bits.reshape(packed.shape[0], -1)[:, :k].to(torch.float32) * 2 - 1
