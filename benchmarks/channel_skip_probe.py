"""Would binary convs that change the channel count gain from an FP skip too? (issue 20, a method probe)

The Bi-Real skip (``y = ... + x``) exists only where C_in == C_out. IMDN x4 ``cnn`` has 25 binary convs
and 18 of them change the channel count (each IMDB's c2 and c3: 48 -> 64, c4: 48 -> 16), so most of its
binary layers pass no FP information around the 1-bit conv. This probe adds a parameter-free skip to
exactly those layers, then runs the ``scales`` CLI unchanged with the arguments given, so a fine-tune,
its validations and a ``report`` all see the changed layers:

- C_out > C_in: the input's channels repeated cyclically (channel o reads x[o mod C_in]);
- C_in a multiple of C_out: the mean of each group of C_in / C_out consecutive input channels;
- otherwise (or a stride / size change): no skip, as before.

The student file is not changed (it has no field for this), so a student trained here must be scored
through this script too. It is a measurement, not an option: if the probe wins, the skip becomes a
``BinaryOptions`` field that the student format records and the exporters write.

    OMP_NUM_THREADS=1 python benchmarks/channel_skip_probe.py finetune imdn-cnn.safetensors --teacher ... --out skip
    python benchmarks/channel_skip_probe.py report skip/student.safetensors --data ../shared/data/benchmarks/Set5
"""

from __future__ import annotations

import torch
from torch import Tensor

from scales_cli.binary import layers

_EPILOGUE = layers.QuantizedLayer.epilogue


def channel_skip(x: Tensor, out_channels: int) -> Tensor | None:
    """x mapped to ``out_channels`` channels without parameters (module doc), or None where no map fits."""
    in_channels = x.shape[1]
    if out_channels > in_channels:
        return x.index_select(1, torch.arange(out_channels, device=x.device) % in_channels)
    if in_channels % out_channels == 0:
        b, _, h, w = x.shape
        return x.reshape(b, out_channels, in_channels // out_channels, h, w).mean(2)
    return None


def epilogue_with_channel_skip(self: layers.QuantizedLayer, z: Tensor, x: Tensor) -> Tensor:
    """The layer's own epilogue, plus :func:`channel_skip` on binary convs that change only the channel count."""
    y = _EPILOGUE(self, z, x)
    changes_channels = x.ndim == 4 and y.shape[2:] == x.shape[2:] and y.shape[1] != x.shape[1]
    if isinstance(self, layers.BinaryConv2d) and not self.skip and changes_channels:
        mapped = channel_skip(x, y.shape[1])
        if mapped is not None:
            y = y + mapped.to(y.dtype)
    return y


if __name__ == "__main__":
    layers.QuantizedLayer.epilogue = epilogue_with_channel_skip  # type: ignore[method-assign]
    from scales_cli.cli import main

    main()
