"""scales-cli: binarize pretrained super-resolution networks with SCALES.

Public Python API (heavy modules are imported lazily)::

    from scales_cli import load
    desc = load("IMDN_x4.pth")   # SRDescriptor: arch, scale, hparams, model, regions ...
"""

from __future__ import annotations

__version__ = "0.1.0"


def load(path, **kwargs):  # noqa: ANN001, ANN201 - thin re-export, documented in archs.load
    from .archs import load as _load

    return _load(path, **kwargs)
