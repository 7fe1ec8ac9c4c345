"""Run exported files: one callable per file, and a torch-facing wrapper for upscale/report.

:func:`open_runtime` picks the runtime from the suffix: ``.onnx`` runs in onnxruntime with the
``scales`` reference kernels registered (standard graphs run the same way), ``.xml`` in OpenVINO's CPU
plugin in f32 (compiled once per input size: its BinaryConvolution needs static shapes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, ScalesError

Runner = Callable[[np.ndarray], np.ndarray]


@dataclass
class OnnxRuntime:
    """onnxruntime session over an exported ONNX file (any format), ``scales`` ops registered."""

    path: Path | bytes
    threads: int | None = None
    name: str = "onnxruntime"
    _session: Any = field(default=None, repr=False)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.run_all(x)[0]

    def run_all(self, x: np.ndarray) -> list[np.ndarray]:
        """Every graph output (the first is the image); any onnxruntime failure is one line naming the file."""
        with runtime_errors(self.path, self.name, x.shape):
            if self._session is None:
                from .reference import reference_session

                self._session = reference_session(self.path, self.threads)
            feed = {self._session.get_inputs()[0].name: np.ascontiguousarray(x, dtype=np.float32)}
            return list(self._session.run(None, feed))


@dataclass
class OpenVinoRuntime:
    """OpenVINO CPU (f32) over an IR .xml file or an ov.Model; one compiled model per input shape."""

    model: Any
    threads: int | None = None
    name: str = "openvino"
    _compiled: dict[tuple[int, ...], Any] = field(default_factory=dict, repr=False)

    def compiled(self, shape: tuple[int, ...], profile: bool = False) -> Any:
        from .openvino import compile_ir

        if profile:
            return compile_ir(self.model, shape, self.threads, profile=True)
        if shape not in self._compiled:
            self._compiled[shape] = compile_ir(self.model, shape, self.threads)
        return self._compiled[shape]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.run_all(x)[0]

    def run_all(self, x: np.ndarray) -> list[np.ndarray]:
        """Every model output (the first is the image); any OpenVINO failure is one line naming the file."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        with runtime_errors(self.model, self.name, x.shape):
            compiled = self.compiled(tuple(x.shape))
            result = compiled(x)
            return [np.asarray(result[out]) for out in compiled.outputs]


class ExportedRunError(CheckpointError):
    """An exported file that its runtime cannot run at this input size (changed by another tool, or damaged)."""


@contextmanager
def runtime_errors(model: Any, runtime: str, shape: tuple[int, ...]) -> Iterator[None]:
    """onnxruntime and OpenVINO raise their own exception types (pybind classes, RuntimeError, ...) with
    multi-line texts: each becomes one :class:`ExportedRunError` naming the file and the input shape."""
    try:
        yield
    except ScalesError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the runtime raises is about the file it was given
        name = str(model) if isinstance(model, str | Path) else "the exported graph"
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        why = " ".join(lines[:3])[:200] or type(exc).__name__
        size = "x".join(map(str, shape))
        raise ExportedRunError(
            f"{name}: {runtime} cannot run it on a {size} input ({why}); was the file changed after scales export "
            "(e.g. quantized, or its input shape pinned)? export the model again"
        ) from None


RUNTIMES: dict[str, Callable[[Path], Runner]] = {
    ".onnx": lambda p: OnnxRuntime(p),
    ".xml": lambda p: OpenVinoRuntime(p),
}
"""Exported file suffix -> the runtime that runs it."""


def open_runtime(path: str | Path) -> Runner:
    """The runner of an exported file; a missing file or unknown suffix is a one-line error."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such exported model file (expected .onnx or .xml)")
    factory = RUNTIMES.get(p.suffix.lower())
    if factory is None:
        raise CheckpointError(f"{p}: unknown exported model type (expected {', '.join(RUNTIMES)})")
    if p.suffix.lower() == ".xml" and not p.with_suffix(".bin").is_file():
        raise CheckpointError(f"{p}: its weights file {p.with_suffix('.bin').name} is missing (an IR is .xml + .bin)")
    return factory(p)


def runtime_module(runner: Runner, scale: int):  # noqa: ANN201 - nn.Module
    """An nn.Module wrapper: ``forward(x: Tensor) -> Tensor`` through ``runner`` (CPU, no grad).

    A meta-device input (the cost counter's shape pass) gets a meta output of the upscaled shape: the
    runtime's layers are not torch modules, so the row's cost is not counted.
    """
    import torch
    from torch import nn

    class RuntimeModel(nn.Module):
        """An exported model behind the torch interface upscale/report use; ``runtime`` names who runs it."""

        def __init__(self) -> None:
            super().__init__()
            self.runner = runner
            self.runtime = getattr(runner, "name", "runtime")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.device.type == "meta":
                return torch.empty(x.shape[0], x.shape[1], x.shape[2] * scale, x.shape[3] * scale, device="meta")
            out = self.runner(x.detach().cpu().to(torch.float32).numpy())
            return torch.from_numpy(np.ascontiguousarray(out)).to(x.device)

        def __deepcopy__(self, memo: dict) -> RuntimeModel:  # sessions are not copyable; the runner is stateless
            return self

    return RuntimeModel().eval()


EXPORTED_SUFFIXES = tuple(RUNTIMES)
METADATA_KEYS = ("format", "input_range", "source", "arch", "scale", "min_size", "recipe")


def exported_metadata(path: Path) -> dict[str, str]:
    """The ``scales.*`` entries :func:`scales_cli.export.pipeline.export_model` stored in the file."""
    if path.suffix.lower() == ".onnx":
        import onnx

        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # noqa: BLE001 - protobuf raises several types on foreign bytes
            raise CheckpointError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
        return {p.key[len("scales."):]: p.value for p in model.metadata_props if p.key.startswith("scales.")}
    import openvino as ov

    try:
        model = ov.Core().read_model(str(path))
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises several types on foreign or damaged files
        raise CheckpointError(f"{path}: not a readable OpenVINO IR ({str(exc).strip().splitlines()[0][:120]})") from None
    out = {}
    for key in METADATA_KEYS:
        try:
            out[key] = str(model.get_rt_info(["scales", key]).astype(str))
        except RuntimeError:
            continue
    return out


def load_exported(path: str | Path):  # noqa: ANN201 - SRDescriptor
    """An exported .onnx/.xml as an SRDescriptor whose model runs in onnxruntime/OpenVINO.

    Scale, input range and smallest input side come from the file's ``scales`` metadata (written by
    ``scales export``; a file without ``min_size``, from before it was written, gets 1): upscale and
    report then edge-pad a smaller image as they do for the torch model (ESA needs 3 px).
    """
    from ..archs.descriptor import ArchSpec, SRDescriptor
    from ..io import sha256_of

    p = Path(path)
    runner = open_runtime(p)
    meta = exported_metadata(p)
    if "scale" not in meta:
        raise CheckpointError(f"{p}: holds no scales export metadata (scale unknown; export it with scales export)")
    scale = int(meta["scale"])
    arch = meta.get("arch", "exported")
    spec = ArchSpec(name=arch, required_keys=(), infer=lambda sd: {}, build=lambda **kw: None, head=(), tail=())
    runtime = getattr(runner, "name", "runtime")
    return SRDescriptor(
        arch=arch, scale=scale, hparams={"scale": scale}, input_range=float(meta.get("input_range", 1.0)), params=0,
        sha256=sha256_of(p), source=p, regions={}, spec=spec, model=runtime_module(runner, scale),
        extra={"runtime": runtime, "exported": meta}, scale_source="export metadata", min_size=int(meta.get("min_size", 1)),
    )
