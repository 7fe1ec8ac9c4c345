"""The scoring conventions, as plain enums: importable without numpy (the CLI registers its options
from them at start-up, so ``scales --help`` stays fast). Their meaning: :mod:`scales_cli.metrics.quality`."""

from __future__ import annotations

from enum import Enum


class GrayConvention(str, Enum):
    """How a single-channel benchmark image is scored (see :mod:`scales_cli.metrics.quality`)."""

    RAW = "gray-raw"
    AS_Y = "gray-as-y"


class Channel(str, Enum):
    """Which planes are scored: BT.601 Y (the SR benchmark standard) or the RGB channels."""

    Y = "y"
    RGB = "rgb"
