"""``export_model``: a loaded network -> exported file(s), proved equal to torch, written atomically.

Order of work: check every output path and the parity images, check that the format can express
every quantized layer, write into a temporary folder beside the target, run parity there, and only then
move the files into place. A failed parity (exit 1) or any error leaves nothing behind.

>>> from scales_cli.loading import load
>>> desc = load("student.safetensors")                                           # doctest: +SKIP
>>> result = export_model(desc.model, "student.onnx", input_range=desc.input_range)  # doctest: +SKIP
>>> result.parity.ok, result.sizes                                              # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..binary.protocol import FP_BITS, bit_widths
from ..errors import ScalesError
from ..io import refuse_existing
from . import onnx_custom, onnx_float, openvino
from ._onnx import DEFAULT_OPSET, check_opset
from .graph import GraphOptions, Probed, binary_views, export_network, quantized_views
from .parity import ParityReport, check_images, check_parity
from .runtime import OnnxRuntime, OpenVinoRuntime, Runner
from .view import LayerView


class ParityError(ScalesError):
    """The exported file does not compute what torch computes (exit 1: the tool's output is wrong, not the input)."""

    exit_code = 1


def _no_check(views: Sequence[tuple[str, LayerView]]) -> None:
    return None


@dataclass(frozen=True)
class ExportFormat:
    """One format: its suffix, writer, runtime, in-memory exporter of any module (parity probes) and limits."""

    name: str
    suffix: str
    description: str
    write: Callable[[nn.Module, Path, int, dict[str, str]], list[Path]]  # (model, target, opset, metadata)
    runtime: Callable[[Path], Runner]
    graph_runner: Callable[[nn.Module, torch.Tensor, int], Any]  # any converted module -> runner with run_all
    check: Callable[[Sequence[tuple[str, LayerView]]], None] = _no_check
    companions: tuple[str, ...] = ()  # suffixes of files written beside the target (.bin of an IR)
    expresses: frozenset[tuple[int, int]] = frozenset({FP_BITS, (1, 1), (8, 8)})  # (weight, activation) bits it writes

    def targets(self, target: Path) -> list[Path]:
        return [target, *(target.with_suffix(s) for s in self.companions)]


def _onnx_graph(graph_bytes: Callable[[nn.Module, torch.Tensor, int], bytes]) -> Callable[[nn.Module, torch.Tensor, int], OnnxRuntime]:
    def run(module: nn.Module, example: torch.Tensor, opset: int) -> OnnxRuntime:
        return OnnxRuntime(graph_bytes(module, example, opset))

    return run


def _ov_graph(module: nn.Module, example: torch.Tensor, opset: int) -> OpenVinoRuntime:
    return OpenVinoRuntime(openvino.model_of(module, example, opset))


FORMATS: dict[str, tuple[ExportFormat, Callable[[], GraphOptions]]] = {
    "scales": (
        ExportFormat(
            "scales", ".onnx", "ONNX, binary layers as scales:: custom nodes with 1-bit weights (reference kernel: onnxruntime-extensions), INT8 layers as QDQ",
            onnx_custom.write, lambda p: OnnxRuntime(p), _onnx_graph(onnx_custom.graph_bytes),
        ),
        lambda: onnx_custom.OPTIONS,
    ),
    "float": (
        ExportFormat(
            "float", ".onnx", "standard ONNX only, binary layers as +-1 float convs, INT8 layers as QDQ (any ONNX runtime)",
            onnx_float.write, lambda p: OnnxRuntime(p), _onnx_graph(onnx_float.graph_bytes),
        ),
        lambda: onnx_float.OPTIONS,
    ),
    "openvino": (
        ExportFormat(
            "openvino", ".xml", "OpenVINO IR (.xml + .bin): BinaryConvolution xnor-popcount, u1 weights; INT8 convs as FakeQuantize + i8 weights",
            openvino.write, lambda p: OpenVinoRuntime(p), _ov_graph, openvino.check_supported, (".bin",),
        ),
        openvino.graph_options,
    ),
}
"""``--format`` name -> (format, how its layers are written). The second is built when a format is chosen:
the OpenVINO one reads this CPU's ISA (:func:`.openvino.graph_options`), which importing the registry should not."""


@dataclass(frozen=True)
class ExportResult:
    source: str
    format: str
    opset: int
    files: tuple[Path, ...]
    sizes: dict[str, int]
    binary_layers: int
    parity: ParityReport | None
    runtime: str = field(default="")
    int8_layers: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "format": self.format,
            "opset": self.opset,
            "files": [str(f) for f in self.files],
            "bytes": self.sizes,
            "binary_layers": self.binary_layers,
            "int8_layers": self.int8_layers,
            "runtime": self.runtime,
            "parity": None if self.parity is None else self.parity.to_json(),
        }


def refuse_unexpressible(model: nn.Module, fmt: ExportFormat) -> None:
    """One line naming the first layer whose bit widths ``fmt`` does not write (``ExportFormat.expresses``).

    Every format writes FP, binary (1, 1) and INT8 (8, 8) layers today; anything else would be exported
    as the float layer it was built from, which is not the network that was trained.
    """
    for path, module in model.named_modules():
        bits = bit_widths(module)
        if bits not in fmt.expresses:
            written = ", ".join(f"{w}/{a}" for w, a in sorted(fmt.expresses))
            raise ScalesError(
                f"layer {path or '(model)'}: --format {fmt.name} cannot express its {bits[0]}-bit weights / {bits[1]}-bit "
                f"activations (it writes weight/activation bits {written})"
            )


def export_format(name: str) -> tuple[ExportFormat, GraphOptions]:
    if name not in FORMATS:
        raise ScalesError(f"--format {name}: unknown format (expected {', '.join(FORMATS)})")
    chosen, options = FORMATS[name]
    return chosen, options()


def prepare(target: Path, fmt: str, *, force: bool = False, opset: int = DEFAULT_OPSET) -> tuple[ExportFormat, GraphOptions]:
    """Every check on the options and outputs that needs no model: call it before loading one."""
    chosen, options = export_format(fmt)
    check_opset(opset)
    if target.suffix.lower() != chosen.suffix:
        raise ScalesError(f"-o {target}: --format {chosen.name} writes a {chosen.suffix} file")
    for path in chosen.targets(target):
        refuse_existing(path, force=force)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise ScalesError(f"-o {target}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ScalesError(f"-o {target}: folder {parent} is not writable")
    return chosen, options


def export_model(
    model: nn.Module,
    target: str | Path,
    fmt: str = "scales",
    *,
    input_range: float = 1.0,
    source: str = "",
    metadata: Mapping[str, object] | None = None,
    opset: int = DEFAULT_OPSET,
    check_dir: str | Path | None = None,
    check: bool = True,
    strict: bool = False,
    force: bool = False,
) -> ExportResult:
    """Export ``model`` (NCHW RGB in ``[0, input_range]``) to ``target`` in ``fmt``; parity on ``check_dir``
    (default: the demo LR images).

    ``metadata`` (e.g. ``scale``, ``arch``) is stored in the file, so ``scales upscale``/``report`` can run it.
    ``strict``: an image whose difference is explained by threshold flips fails too (see :mod:`.parity`).
    """
    target = Path(target)
    chosen, options = prepare(target, fmt, force=force, opset=opset)
    images = check_images(check_dir) if check else []
    model = model.eval()
    views = quantized_views(model)  # first: a quantized layer outside binary mode is named as such
    refuse_unexpressible(model, chosen)
    binary = binary_views(views)
    chosen.check(binary)

    paths = [p for p, _ in views]

    def probe(x: torch.Tensor) -> list[np.ndarray]:
        probed = Probed(export_network(model, options), paths)
        return chosen.graph_runner(probed, x, opset).run_all(x.numpy())

    parent = target.parent if str(target.parent) else Path(".")
    with tempfile.TemporaryDirectory(prefix=f".{target.stem}.", dir=parent) as tmp:
        staged = Path(tmp) / target.name
        meta = {"format": chosen.name, "input_range": str(input_range), "source": source,
                **{k: str(v) for k, v in (metadata or {}).items()}}
        written = chosen.write(model, staged, opset, meta)
        report = None
        if check:
            min_size = int((metadata or {}).get("min_size", 1))
            report = check_parity(chosen.runtime(staged), model, images, input_range, probe, paths, strict, min_size)
            if not report.ok:
                raise ParityError(report.failure())
        finals = []
        for file in written:
            final = target.with_suffix(file.suffix) if file.suffix != target.suffix else target
            os.chmod(file, 0o666 & ~_umask())
            shutil.move(str(file), final)
            finals.append(final)
    return ExportResult(
        source=source,
        format=chosen.name,
        opset=opset,
        files=tuple(finals),
        sizes={f.name: f.stat().st_size for f in finals},
        binary_layers=len(binary),
        int8_layers=len(views) - len(binary),
        parity=report,
        runtime="openvino" if chosen.name == "openvino" else "onnxruntime",
    )


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
