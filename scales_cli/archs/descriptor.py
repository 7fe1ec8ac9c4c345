"""The typed descriptions that cross module boundaries: what an architecture is, and what was loaded."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import torch
from torch import nn

StateDict = dict[str, torch.Tensor]
REGIONS: tuple[str, ...] = ("head", "body", "tail")


@dataclass(frozen=True)
class ArchSpec:
    """How to recognise one architecture's state dict and rebuild the network from it.

    ``required_keys`` are exact state-dict keys the official checkpoints always hold; together with
    ``forbidden_keys`` and the optional ``accept`` predicate they decide detection (look-alikes are
    told apart by ordering in the registry and by ``accept``). ``infer`` reads every hyper-parameter
    it can from tensor shapes and key counts; ``defaults`` holds the ones that cannot be inferred
    (e.g. EDSR ``res_scale``) — they are overridable with ``--arch-opt k=v``. ``build(**hparams)``
    returns an ``nn.Module`` whose parameter names equal the official ones, so the checkpoint loads
    with ``strict=True`` after dropping ``ignore_keys`` (globs of recomputed buffers).

    Model contract: ``forward(x)`` takes NCHW RGB in ``[0, input_range]`` of any size (windowed models
    pad internally) and returns ``scale`` times larger output in the same range.

    Regions: ``head`` and ``tail`` are module-path prefixes (dotted ``named_modules`` paths); every
    other module belongs to the ``body``. The binarization rewrite selects layers by these regions.
    """

    name: str
    required_keys: tuple[str, ...]
    infer: Callable[[StateDict], dict[str, Any]]
    build: Callable[..., nn.Module]
    head: tuple[str, ...]
    tail: tuple[str, ...]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    input_range: float = 1.0
    forbidden_keys: tuple[str, ...] = ()
    accept: Callable[[StateDict], bool] | None = None
    ignore_keys: tuple[str, ...] = ()
    description: str = ""
    # Official configurations (hparams incl. scale) the contract test round-trips through detection.
    examples: tuple[Mapping[str, Any], ...] = ()
    # For layouts whose head/tail names depend on hyper-parameters (numbered blocks, e.g. SRGAN's
    # block{n+3} upsampler): hparams -> (head, tail), applied by ``specialise`` after inference.
    regions_for: Callable[[Mapping[str, Any]], tuple[tuple[str, ...], tuple[str, ...]]] | None = None
    # Scales whose checkpoints have identical tensors (PAN x2/x3, CARN-M's multi-scale file): when
    # ``infer`` leaves ``scale`` out, the loader tells them apart by running the network (see
    # :mod:`scales_cli.loading.scale`).
    ambiguous_scales: tuple[int, ...] = ()
    # The hyper-parameter that names the attention window input sides must be a multiple of (SwinIR,
    # HAT): tiling starts tiles on that grid so tiled equals untiled away from seams.
    window_hparam: str | None = None
    # Smallest input side the network runs on (strided, unpadded convs and pooling in ESA blocks need
    # 3 px); smaller images are edge-padded up to it by ``scales upscale`` and the output cropped.
    min_size: int = 1

    def size_multiple(self, hparams: Mapping[str, Any]) -> int:
        """The grid this network partitions its input on (its window), 1 for convolutional networks."""
        if self.window_hparam is None:
            return 1
        return int(hparams[self.window_hparam])

    def specialise(self, hparams: Mapping[str, Any]) -> ArchSpec:
        """This spec with ``head``/``tail`` for one configuration (itself unless ``regions_for``)."""
        if self.regions_for is None:
            return self
        head, tail = self.regions_for(hparams)
        return replace(self, head=head, tail=tail)

    def matches(self, sd: StateDict) -> bool:
        if any(k not in sd for k in self.required_keys):
            return False
        if any(_has_key(sd, pattern) for pattern in self.forbidden_keys):
            return False
        return self.accept is None or bool(self.accept(sd))

    def missing(self, sd: StateDict) -> list[str]:
        return [k for k in self.required_keys if k not in sd]

    def clean(self, sd: StateDict) -> StateDict:
        """Drop buffers the network recomputes (``ignore_keys`` globs) before a strict load."""
        if not self.ignore_keys:
            return dict(sd)
        return {k: v for k, v in sd.items() if not any(fnmatchcase(k, g) for g in self.ignore_keys)}

    def region_of(self, module_path: str) -> str:
        """'head', 'tail' or 'body' for a dotted module path."""
        if _under(module_path, self.head):
            return "head"
        if _under(module_path, self.tail):
            return "tail"
        return "body"


def _has_key(sd: StateDict, pattern: str) -> bool:
    return any(fnmatchcase(k, pattern) for k in sd)


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + ".") for p in prefixes)


@dataclass(frozen=True)
class SRDescriptor:
    """Everything the rest of the tool needs about a loaded network.

    ``model`` is in eval mode on the CPU with the checkpoint's weights. ``regions`` maps each region to
    the top-level module paths in it.
    """

    arch: str
    scale: int
    hparams: Mapping[str, Any]
    input_range: float
    params: int
    sha256: str | None
    source: Path | None
    regions: Mapping[str, tuple[str, ...]]
    spec: ArchSpec = field(repr=False, compare=False)
    model: nn.Module = field(repr=False, compare=False)
    extra: Mapping[str, Any] = field(default_factory=dict)  # e.g. student recipe/manifest
    # How ``scale`` was decided: "shapes", "--arch-opt", "student file", "probe: ..." or "default: ...".
    scale_source: str = "shapes"
    # Input sides are best multiples of this (attention windows); tiling aligns tiles to it.
    size_multiple: int = 1
    # Input sides below this are edge-padded before the forward pass (``ArchSpec.min_size``).
    min_size: int = 1
    # One-line notes the user should see (e.g. a scale the weights could not settle); the CLI prints them.
    warnings: tuple[str, ...] = ()

    def region_of(self, module_path: str) -> str:
        return self.spec.region_of(module_path)

    def to_json(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "scale": self.scale,
            "hparams": {k: _jsonable(v) for k, v in self.hparams.items()},
            "input_range": self.input_range,
            "params": self.params,
            "sha256": self.sha256,
            "source": str(self.source) if self.source else None,
            "regions": {k: list(v) for k, v in self.regions.items()},
            "scale_source": self.scale_source,
            "size_multiple": self.size_multiple,
            "min_size": self.min_size,
            "warnings": list(self.warnings),
            **{k: _jsonable(v) for k, v in self.extra.items()},
        }


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return [_jsonable(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def count_params(model: nn.Module) -> int:
    """Learnable parameters (what papers report): buffers such as BN statistics are left out."""
    return sum(p.numel() for p in model.parameters())


def region_summary(spec: ArchSpec, model: nn.Module) -> dict[str, tuple[str, ...]]:
    """Top-level children of ``model`` grouped by region (children partly in a region are split)."""
    out: dict[str, list[str]] = {r: [] for r in REGIONS}
    for name, _ in model.named_children():
        inside = [p for p in spec.head + spec.tail if p.startswith(name + ".")]
        if inside:  # a head/tail prefix points inside this child: list the exact prefixes
            for p in inside:
                out[spec.region_of(p)].append(p)
            out["body"].append(name)
        else:
            out[spec.region_of(name)].append(name)
    return {r: tuple(v) for r, v in out.items()}
