"""Named option presets: the baselines the paper compares against and its ablation ladder.

See docs/method.md ("Presets") for what each reproduces from its paper and what it leaves out.
"""

from __future__ import annotations

from scales_cli.binary._registry import lookup
from scales_cli.binary.options import BinaryOptions

_NO_BRANCHES = dict(spatial=False, channel=False, batchnorm=False)

PRESETS: dict[str, BinaryOptions] = {
    # XNOR-Net: sign activations (clipped STE), mean|W| per output channel, no shortcut around the
    # binary conv; its per-pixel input scale K is not reproduced.
    "xnor": BinaryOptions(act="sign", weight="channel_mean", skip=False, **_NO_BRANCHES),
    # E2FIF: sign with the Bi-Real piecewise-polynomial gradient, BN after the binary conv, shortcut.
    "e2fif": BinaryOptions(act="approxsign", weight="channel_mean", skip=True, spatial=False, channel=False, batchnorm=True),
    # BiBERT-style linear layers (sign activations, mean-scaled weights); convs keep the Bi-Real skip.
    "bibert": BinaryOptions(act="sign", weight="channel_mean", skip=True, **_NO_BRANCHES),
    # The paper's ablation ladder (Table V).
    "lsf": BinaryOptions(act="scales", skip=True, **_NO_BRANCHES),
    "lsf-chl": BinaryOptions(act="scales", skip=True, spatial=False, channel=True, batchnorm=False),
    "lsf-spatial": BinaryOptions(act="scales", skip=True, spatial=True, channel=False, batchnorm=False),
    "scales": BinaryOptions(act="scales", skip=True, spatial=True, channel=True, batchnorm=False),
}


def preset(name: str) -> BinaryOptions:
    """The BinaryOptions of a named preset, or a RecipeError listing the names."""
    return lookup(PRESETS, name, "binary preset")
