"""The explicit list of architectures, in detection order (look-alikes: the more specific first).

A new architecture = one module exposing ``SPEC: ArchSpec`` + one line here + one test.
"""

from __future__ import annotations

import importlib
from functools import cache

from .descriptor import ArchSpec

# Module names under scales_cli.archs. Order matters only between look-alikes: a spec earlier in
# the list wins when two match, so put the one with more required keys / stricter accept first.
ARCH_MODULES: tuple[str, ...] = (
    "imdtn",  # before imdn: shares fea_conv/c.0/LR_conv/upsampler.0 (IMDTB1 vs IMDB1 blocks)
    "imdn",
    "rfdn",
    "rlfn",  # forbids RFDN-only keys (c1_d, esa.conv_max, c.0)
    "bsrn",
    "pan",
    "carn_m",
    "srgan",
    "srresnet",  # before edsr: BasicSR EDSR shares conv_first/body.N/conv_last
    "rcan",
    "rdn",
    "edsr",
    "hat",  # before swinir: same skeleton plus overlap_attn/conv_block
    "swinir",
)


@cache
def all_specs() -> tuple[ArchSpec, ...]:
    specs = []
    for name in ARCH_MODULES:
        module = importlib.import_module(f"{__package__}.{name}")
        found = getattr(module, "SPECS", None) or (module.SPEC,)
        specs.extend(found)
    return tuple(specs)


def spec_by_name(name: str) -> ArchSpec | None:
    return next((s for s in all_specs() if s.name == name), None)
