"""How any layer tells the cost counter and the exporter what it is (no lists of class names).

A layer that defines ``bit_widths()`` returns ``(weight_bits, activation_bits)`` of its own main
operation (the conv/linear whose ``weight`` it owns); layers without it are FP (32, 32). Child
modules (re-scaling branches) answer for themselves. A module with extra matmuls that are not
conv/linear leaves (window attention ``q @ k^T``, ``attn @ v``) defines
``extra_macs(inputs: tuple, output) -> int`` for one forward call.
"""

from __future__ import annotations

from torch import nn

FP_BITS: tuple[int, int] = (32, 32)


def bit_widths(module: nn.Module) -> tuple[int, int]:
    fn = getattr(module, "bit_widths", None)
    return tuple(fn()) if callable(fn) else FP_BITS  # type: ignore[return-value]


def is_binary(module: nn.Module) -> bool:
    """BNN convention: an operation is binary when both its weights and activations are 1-bit."""
    return bit_widths(module) == (1, 1)
