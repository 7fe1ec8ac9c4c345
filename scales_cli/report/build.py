"""Build a report: rows (bicubic, each model) x datasets, grouped by scale, plus per-model cost.

Everything here is data; rendering lives in :mod:`.render`. The scale of a group is the models'
scale: datasets are opened at that scale (their ``LR_bicubic/X{s}`` folder, or LR made on the fly).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..metrics.cost import DEFAULT_INPUT_SIZE, CostReport, count_cost
from ..metrics.datasets import Dataset, DataSource
from ..metrics.evaluate import BICUBIC_LABEL, EvalResult, evaluate_bicubic, evaluate_model
from ..metrics.quality import Channel, GrayConvention

SCHEMA = "scales-report/1"


@dataclass(frozen=True)
class Row:
    """One line of the table: the bicubic baseline or one model, scored on every dataset."""

    label: str
    kind: str  # "bicubic" or "model"
    results: tuple[EvalResult, ...]  # one per dataset, in the group's dataset order
    checkpoint: Path | None = None
    arch: str | None = None
    sha256: str | None = None
    cost: CostReport | None = None
    seconds: float = 0.0  # wall time of the evaluation (all datasets)
    runtime: str = "torch"  # who ran the model: torch, or onnxruntime/openvino for exported files


@dataclass(frozen=True)
class Group:
    """All rows at one scale."""

    scale: int
    datasets: tuple[Dataset, ...]
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class Report:
    groups: tuple[Group, ...]
    gray: GrayConvention
    channel: Channel
    input_size: tuple[int, int]
    device: str
    environment: dict[str, Any] = field(default_factory=dict)
    attention_macs: bool = True  # False: attention matmuls left out of OPs (SwinIR's Mult-Adds convention)


@dataclass(frozen=True)
class _Model:
    label: str
    path: Path
    desc: Any  # SRDescriptor


def unique_labels(paths: Sequence[Path]) -> list[str]:
    """File stems, made unique with the parent folder name (then a counter) where they repeat."""
    labels = [p.stem for p in paths]
    for i, p in enumerate(paths):
        if labels.count(p.stem) > 1:
            labels[i] = f"{p.parent.name}/{p.stem}"
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            labels[i] = f"{label}#{seen[label]}"
    return labels


def model_labels(paths: Sequence[Path], labels: Sequence[str] | None) -> list[str]:
    """The given ``labels`` (one per model, distinct, not empty) or :func:`unique_labels` of the paths."""
    if not labels:
        return unique_labels(paths)
    if len(labels) != len(paths):
        raise DataError(f"--label: {len(labels)} labels for {len(paths)} models (give one --label per MODEL, in order)")
    if any(not label.strip() for label in labels) or len(set(labels)) != len(labels):
        raise DataError(f"--label {', '.join(labels)}: expected distinct, non-empty labels (they name the table rows)")
    return list(labels)


def _group_scales(models: Sequence[_Model], scale: int | None, group_by_scale: bool) -> list[int]:
    scales = sorted({m.desc.scale for m in models})
    if scale is not None:
        wrong = [f"{m.label} is x{m.desc.scale}" for m in models if m.desc.scale != scale]
        if wrong:
            raise DataError(f"--scale {scale}: {', '.join(wrong)} (drop --scale to use the models' own scale)")
        return [scale]
    if not models:
        raise DataError("no MODEL given: pass checkpoints, or --bicubic with --scale S for the baseline alone")
    if len(scales) > 1 and not group_by_scale:
        listed = ", ".join(f"{m.label} x{m.desc.scale}" for m in models)
        raise DataError(f"models have different scales ({listed}); pass models of one scale or --group-by-scale")
    return scales


def _environment(device: str) -> dict[str, Any]:
    import torch

    return {
        "torch": torch.__version__,
        "device": device,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }


def build_report(
    model_paths: Sequence[Path],
    data_dirs: Sequence[Path | DataSource],
    *,
    scale: int | None = None,
    bicubic: bool = False,
    gray: GrayConvention | str = GrayConvention.AS_Y,
    channel: Channel | str = Channel.Y,
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
    attention_macs: bool = True,
    group_by_scale: bool = False,
    device: str = "cpu",
    keep_outputs: bool = False,
    loader: Callable[[Path], Any] | None = None,
    labels: Sequence[str] | None = None,
    on_plan: Callable[[int], None] | None = None,
    on_image: Callable[[str], None] | None = None,
) -> Report:
    """Evaluate every model (and the bicubic baseline) on every dataset, grouped by scale.

    ``data_dirs``: folders (benchmark layout or HR images alone) or :class:`DataSource` (HR folder +
    LR folder). ``loader(path) -> SRDescriptor`` defaults to :func:`scales_cli.loading.load`. ``on_plan(n)`` is
    told the number of images that will be scored; ``on_image(label)`` is called after each. ``labels``:
    one row label per model (default: the file stems, made unique).
    """
    if not data_dirs:
        raise DataError("no --data DIR (or --hr DIR [--lr DIR]) given (expected a folder such as ../shared/data/benchmarks/Set5)")
    if loader is None:
        from ..loading import load as loader
    if not model_paths and not bicubic:
        raise DataError("nothing to report: pass checkpoints and/or --bicubic")
    gray, channel = GrayConvention(gray), Channel(channel)
    names = model_labels(model_paths, labels)
    models = [_Model(label, Path(p), loader(Path(p))) for label, p in zip(names, model_paths, strict=True)]
    scales = _group_scales(models, scale, group_by_scale)
    plans = []
    for s in scales:
        datasets = _open_datasets(data_dirs, s)
        members = [m for m in models if m.desc.scale == s]
        plans.append((s, datasets, members))
    if on_plan is not None:
        on_plan(sum(len(d) * (len(ms) + int(bicubic)) for _, ds, ms in plans for d in ds))
    kwargs = {"gray": gray, "channel": channel, "keep_outputs": keep_outputs, "on_image": on_image}
    groups = []
    for s, datasets, members in plans:
        rows = []
        if bicubic:
            start = time.perf_counter()
            results = tuple(evaluate_bicubic(d, **kwargs) for d in datasets)
            rows.append(Row(BICUBIC_LABEL, "bicubic", results, seconds=time.perf_counter() - start))
        for m in members:
            runtime = m.desc.extra.get("runtime", "torch")
            # an exported file's layers are not torch modules: its cost is its source's, not counted here
            cost = count_cost(m.desc.model, input_size, input_range=m.desc.input_range, attention=attention_macs) if runtime == "torch" else None
            start = time.perf_counter()
            results = tuple(evaluate_model(m.desc, d, label=m.label, device=device, **kwargs) for d in datasets)
            rows.append(
                Row(m.label, "model", results, checkpoint=m.path, arch=m.desc.arch, sha256=m.desc.sha256,
                    cost=cost, seconds=time.perf_counter() - start, runtime=runtime)
            )
        groups.append(Group(s, datasets, tuple(rows)))
    return Report(tuple(groups), gray, channel, tuple(input_size), device, _environment(device), attention_macs)


def _open_datasets(data_dirs: Sequence[Path | DataSource], scale: int) -> tuple[Dataset, ...]:
    sources = [d if isinstance(d, DataSource) else DataSource(Path(d)) for d in data_dirs]
    datasets = [src.open(scale) for src in sources]
    names = [d.name for d in datasets]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(f"--data: dataset name {dupes[0]!r} given twice (folder names label the columns)")
    return tuple(datasets)
