"""Registry-driven choices shared by the tests that run every architecture (not a test module)."""

from __future__ import annotations

import math
from typing import Any

from scales_cli.archs.descriptor import ArchSpec


def smallest_example(spec: ArchSpec) -> dict[str, Any]:
    """The example with the smallest product of its sizes (widths, depths, scale): a cheap proxy for
    the parameter count that needs no build (building on the meta device takes seconds for some).
    Every spec declares a tiny example for this, so a new architecture is tested without editing a test."""
    return dict(min(spec.examples, key=lambda example: math.prod(_numbers(dict(example)))))


def _numbers(node: Any) -> list[float]:
    if isinstance(node, dict):
        return [x for v in node.values() for x in _numbers(v)]
    if isinstance(node, tuple | list):
        return [x for v in node for x in _numbers(v)]
    return [node] if isinstance(node, int | float) and not isinstance(node, bool) and node > 1 else []


def is_windowed(spec: ArchSpec) -> bool:
    """Attention in windows (SwinIR, HAT, IMDTN): the input is padded and masked inside the network.
    IMDTN pads itself by its own rule, so it declares ``window_size`` without a ``window_hparam``."""
    return spec.window_hparam is not None or "window_size" in smallest_example(spec)
