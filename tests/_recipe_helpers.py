"""Small networks and a fake binary maker shared by the recipe tests (not a test module)."""

from __future__ import annotations

from torch import nn

from scales_cli.archs.descriptor import ArchSpec
from scales_cli.binary.options import BinaryOptions


class Toy(nn.Module):
    """head conv -> body (3x3, 1x1, 3x3 convs; optional linear) -> tail (3x3 conv, output conv)."""

    def __init__(self, with_linear: bool = False) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 3, padding=1))
        # token mixing: LayerNorm + linear makes it a transformer block for the default-recipe choice
        self.mix = nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 8)) if with_linear else nn.Identity()
        self.tail = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, x):  # noqa: ANN001, ANN201
        f = self.body(self.head(x))
        f = self.mix(f.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.tail(f)


TOY_SPEC = ArchSpec(name="toy", required_keys=(), infer=lambda sd: {}, build=Toy, head=("head",), tail=("tail",))


class Marked(nn.Module):
    """What the fake maker returns: the original layer plus the options it was given."""

    def __init__(self, inner: nn.Module, options: BinaryOptions) -> None:
        super().__init__()
        self.inner = inner
        self.options = options

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.inner(x)


def fake_maker(module: nn.Module, options: BinaryOptions) -> nn.Module:
    return Marked(module, options)
