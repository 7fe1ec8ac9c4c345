"""Render a :class:`~.build.Report`: rich tables, a Markdown table, the JSON document.

Cells are ``PSNR / SSIM`` (dB, 2 and 4 decimals as papers print them). Params and OPs follow the
BNN convention of :mod:`scales_cli.metrics.cost` (``P_fp + P_int8/4 + P_bin/32``,
``MAC_fp + MAC_int8/4 + MAC_bin/64``) at
the report's input size; with ``flops=True`` the cost column is FLOPs = 2 x OPs (one MAC is a
multiply and an add) and says so. The JSON layout is documented in docs/report-json.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from rich.table import Table

from ..metrics.cost import CostReport
from .build import SCHEMA, Group, Report, Row


def human(n: float, unit: str = "") -> str:
    """``715176 -> '715.2K'``, ``40.89e9 -> '40.89G'``."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}{unit}" if suffix == "G" else f"{n / div:.1f}{suffix}{unit}"
    return f"{n:g}{unit}"


def cell(psnr: float, ssim: float) -> str:
    return f"{'inf' if math.isinf(psnr) else f'{psnr:.2f}'} / {ssim:.4f}"


def protocol_line(report: Report, scale: int, *, flops: bool = False) -> str:
    w, h = report.input_size
    cost = "Params/FLOPs" if flops else "Params/OPs"
    tail = "; FLOPs = 2 x OPs" if flops else ""
    if not report.attention_macs:
        tail += "; attention matmuls not counted"
    return (
        f"PSNR/SSIM on {report.channel.value.upper()}, border {scale}, {report.gray.value}; "
        f"{cost} at {w}x{h} -> {w * scale}x{h * scale} (BNN: Params = FP + int8/4 + bin/32, OPs = FP MACs + int8 MACs/4 + bin MACs/64{tail})"
    )


def _cost_cells(row: Row, flops: bool = False) -> tuple[str, str]:
    if row.cost is None:
        return "-", "-"
    return human(row.cost.params), human(row.cost.flops if flops else row.cost.ops)


def summary_table(report: Report, group: Group, *, flops: bool = False) -> Table:
    caption = protocol_line(report, group.scale, flops=flops)
    table = Table(title=f"x{group.scale}", caption=caption, caption_justify="left")
    table.add_column("Method", style="bold")
    table.add_column("Params", justify="right")
    table.add_column("FLOPs" if flops else "OPs", justify="right")
    for d in group.datasets:
        table.add_column(f"{d.name} ({len(d)})", justify="right")
    best = _best_psnr(group)
    for row in group.rows:
        cells = []
        for r in row.results:
            text = cell(r.mean_psnr, r.mean_ssim)
            cells.append(f"[bold green]{text}[/]" if row.kind == "model" and r.mean_psnr == best[r.dataset] else text)
        table.add_row(_shown(row), *_cost_cells(row, flops), *cells)
    return table


def _best_psnr(group: Group) -> dict[str, float]:
    best: dict[str, float] = {}
    for row in group.rows:
        if row.kind != "model":
            continue
        for r in row.results:
            best[r.dataset] = max(best.get(r.dataset, -math.inf), r.mean_psnr)
    return best


def _split(fp: float, binary: float, fmt: Callable[[float], str], int8: float = 0) -> str:
    """``'19,920'`` for an FP-only figure, ``'212 + 2,304b'`` when part of it is binary, ``+ 96i`` INT8."""
    return "".join([fmt(fp), f" + {fmt(int8)}i" if int8 else "", f" + {fmt(binary)}b" if binary else ""])


def layer_table(label: str, cost: CostReport) -> Table:
    """Per-layer breakdown of one model (``--ops``); ``b`` marks the binary part of a figure."""
    w, h = cost.input_size
    table = Table(title=f"{label}: per-layer cost at {w}x{h} (b = binary, i = INT8)")
    table.add_column("Layer", overflow="fold", min_width=12)  # dotted paths: wrap, never truncate
    table.add_column("Type", overflow="fold")
    for name in ("w/a", "params", "MACs", "OPs %"):
        table.add_column(name, justify="right", no_wrap=True)
    total = cost.ops or 1.0
    comma = "{:,}".format
    for layer in cost.layers:
        table.add_row(
            layer.name or "(model)", layer.kind, f"{layer.weight_bits}/{layer.act_bits}",
            _split(layer.params_fp, layer.params_binary, comma, layer.params_int8),
            _split(layer.macs_fp, layer.macs_binary, human, layer.macs_int8),
            f"{100 * layer.ops / total:.1f}",
        )
    table.add_row(
        "total", "", "", _split(cost.params_fp, cost.params_binary, comma, cost.params_int8),
        _split(cost.macs_fp, cost.macs_binary, human, cost.macs_int8), "100.0", style="bold",
    )
    return table


def markdown(report: Report, *, flops: bool = False) -> str:
    """One GitHub Markdown table per scale group, each followed by its protocol line."""
    parts = []
    for group in report.groups:
        header = ["Method", "Params", "FLOPs" if flops else "OPs", *[f"{d.name} PSNR / SSIM" for d in group.datasets]]
        lines = [f"**x{group.scale}**", "", "| " + " | ".join(header) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        for row in group.rows:
            cells = [cell(r.mean_psnr, r.mean_ssim) for r in row.results]
            lines.append("| " + " | ".join([_shown(row), *_cost_cells(row, flops), *cells]) + " |")
        lines += ["", f"_{protocol_line(report, group.scale, flops=flops)}_", ""]
        parts.append("\n".join(lines))
    return "\n".join(parts)


_RESULT_KEYS = ("psnr", "ssim", "images")


def to_json(report: Report, *, layers: bool = False) -> dict[str, Any]:
    """The document described in docs/report-json.md (``layers``: include per-layer costs)."""
    return {
        "schema": SCHEMA,
        "protocol": {
            "channel": report.channel.value,
            "gray_convention": report.gray.value,
            "border": "scale",
            "input_size": list(report.input_size),
            "cost_convention": "bnn",
            "attention_macs_counted": report.attention_macs,
        },
        "environment": dict(report.environment),
        "groups": [
            {
                "scale": group.scale,
                "datasets": [
                    {"name": d.name, "images": len(d), "origin": d.origin,
                     "folder": str(d.pairs[0].hr.parent.parent if d.origin == "benchmark" else d.pairs[0].hr.parent)}
                    for d in group.datasets
                ],
                "rows": [_row_json(row, layers) for row in group.rows],
            }
            for group in report.groups
        ],
    }


def _shown(row: Row) -> str:
    """The row's label, with the runtime when it is not torch (exported .onnx/.xml files)."""
    return row.label if row.runtime == "torch" else f"{row.label} ({row.runtime})"


def _row_json(row: Row, layers: bool) -> dict[str, Any]:
    cost = None
    if row.cost is not None:
        cost = row.cost.to_json()
        if not layers:
            cost.pop("layers")
    return {
        "label": row.label,
        "kind": row.kind,
        "checkpoint": str(row.checkpoint) if row.checkpoint else None,
        "arch": row.arch,
        "runtime": row.runtime,
        "sha256": row.sha256,
        "seconds": round(row.seconds, 3),
        "cost": cost,
        "results": {r.dataset: {k: v for k, v in r.to_json().items() if k in _RESULT_KEYS} for r in row.results},
    }
