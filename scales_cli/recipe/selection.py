"""Which layers a recipe rule selects: the candidate layers of a network and the selector that tests them.

Candidates are the modules whose type is *exactly* ``nn.Conv2d`` or ``nn.Linear`` (a subclass may have
its own forward, so it is never swapped silently), named by their dotted ``named_modules()`` paths —
the state-dict prefixes, so teacher and student layers keep the same names. A :class:`Selector` is a
conjunction of criteria; each criterion left empty accepts every layer::

    region in {head, body, tail}  AND  any(path globs)  AND  not any(exclude globs)
    AND type in {conv2d, linear}  AND  kernel test(s)   AND  (last == is the network's final layer)
    AND (depthwise == is a depthwise conv: groups == C_in > 1)

The network's final layer is the last conv/linear in registration order (every SR network here
declares its output conv last); ``last: false`` is how "all but the last conv" is written.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from torch import nn

from ..archs.descriptor import REGIONS

# Exact module type -> the name recipes use for it.
LAYER_TYPES: dict[type[nn.Module], str] = {nn.Conv2d: "conv2d", nn.Linear: "linear"}

# Kernel comparisons a recipe may write: ">=3", "<3", "==1", "3" (== by default), "!=1".
KERNEL_OPS: dict[str, Callable[[int, int], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_KERNEL_RE = re.compile(r"^\s*(>=|<=|==|!=|>|<)?\s*(\d+)\s*$")


@dataclass(frozen=True)
class Layer:
    """One conv/linear layer of a network, as the selector sees it.

    ``kernel`` is ``max(kernel_size)`` for a conv (so 3 for 3x3 and 1x3) and ``None`` for a linear
    layer, which therefore fails every kernel test.
    """

    path: str
    region: str
    type: str
    shape: tuple[int, ...]
    kernel: int | None
    last: bool
    depthwise: bool = False  # groups == C_in > 1: 9 weights per output, little to gain and much to lose in 1 bit


def candidate_layers(model: nn.Module, region_of: Callable[[str], str]) -> tuple[Layer, ...]:
    """Every exact-type conv/linear layer of ``model`` in registration order, with its region."""
    found = [(path, m) for path, m in model.named_modules() if type(m) in LAYER_TYPES]
    layers = []
    for i, (path, module) in enumerate(found):
        kernel = max(module.kernel_size) if isinstance(module, nn.Conv2d) else None
        layers.append(
            Layer(
                path=path,
                region=region_of(path),
                type=LAYER_TYPES[type(module)],
                shape=tuple(module.weight.shape),
                kernel=kernel,
                last=i == len(found) - 1,
                depthwise=isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels,
            )
        )
    return tuple(layers)


def parse_kernel_test(text: str) -> tuple[str, int] | None:
    """``">=3"`` -> ``(">=", 3)``; ``"3"`` -> ``("==", 3)``; None when it is not a comparison."""
    m = _KERNEL_RE.match(text)
    if m is None:
        return None
    return (m.group(1) or "=="), int(m.group(2))


@dataclass(frozen=True)
class Selector:
    """A conjunction of criteria over :class:`Layer` (empty criterion = any). Kernel tests are OR-ed:
    ``kernel: [1, 3]`` accepts 1x1 and 3x3 convs."""

    region: tuple[str, ...] = ()
    path: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    type: tuple[str, ...] = ()
    kernel: tuple[tuple[str, int], ...] = ()
    last: bool | None = None
    depthwise: bool | None = None

    def failures(self, layer: Layer) -> tuple[str, ...]:
        """Names of the criteria ``layer`` fails (empty: selected)."""
        failed = []
        if self.region and layer.region not in self.region:
            failed.append("region")
        if self.path and not any(fnmatchcase(layer.path, g) for g in self.path):
            failed.append("path")
        if self.exclude and any(fnmatchcase(layer.path, g) for g in self.exclude):
            failed.append("exclude")
        if self.type and layer.type not in self.type:
            failed.append("type")
        if self.kernel and not (layer.kernel is not None and any(KERNEL_OPS[op](layer.kernel, v) for op, v in self.kernel)):
            failed.append("kernel")
        if self.last is not None and layer.last != self.last:
            failed.append("last")
        if self.depthwise is not None and layer.depthwise != self.depthwise:
            failed.append("depthwise")
        return tuple(failed)

    def matches(self, layer: Layer) -> bool:
        return not self.failures(layer)

    def describe(self) -> str:
        """Compact one-line form of :meth:`to_dict` for messages: ``region=body type=conv2d kernel>=3``."""
        bits = []
        for key, value in self.to_dict().items():
            if key == "kernel":
                bits.append("kernel" + "|".join(value))  # type: ignore[arg-type]
            elif isinstance(value, bool):
                bits.append(f"{key}={str(value).lower()}")
            else:
                bits.append(f"{key}={','.join(value)}")  # type: ignore[arg-type]
        return " ".join(bits) or "any layer"

    def to_dict(self) -> dict[str, object]:
        """The non-empty criteria in recipe YAML form (what a stored recipe writes back)."""
        out: dict[str, object] = {}
        for key in ("region", "path", "exclude", "type"):
            values = getattr(self, key)
            if values:
                out[key] = list(values)
        if self.kernel:
            out["kernel"] = [f"{op}{v}" for op, v in self.kernel]
        for flag in ("last", "depthwise"):
            if getattr(self, flag) is not None:
                out[flag] = getattr(self, flag)
        return out


VALID_REGIONS: tuple[str, ...] = REGIONS
VALID_TYPES: tuple[str, ...] = tuple(LAYER_TYPES.values())
