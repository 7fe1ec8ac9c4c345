"""The steps benchmarks/int8_baseline.py and benchmarks/pareto.py share: run ``scales`` as a user does,
export to an OpenVINO IR, NNCF post-training quantization of an IR, and scoring by ``scales report``'s library.

Not a script: both benchmarks import it (``benchmarks/`` is first on ``sys.path`` when one of them runs).

>>> irs = teacher_irs(Path("RLFN_x4.pth"), Path("out/x"), Calibration(DEFAULT_CALIB, 91, 64), reuse=True)  # doctest: +SKIP
>>> [c.kind for c in irs.candidates]                                                               # doctest: +SKIP
['fp32', 'nncf-int8', 'nncf-int8']
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scales_cli.loading import load  # noqa: E402
from scales_cli.recipe.calibrate import calibration_batches  # noqa: E402
from scales_cli.report.build import build_report  # noqa: E402

SHARED = REPO.parent / "shared"
DEFAULT_CALIB = SHARED / "data" / "train" / "T91"
DEFAULT_DATA = (SHARED / "data" / "benchmarks" / "Set5", SHARED / "data" / "benchmarks" / "Set14")


@dataclass(frozen=True)
class Variant:
    """One NNCF quantization of the FP32 IR: its file stem and which convolutions stay FP."""

    name: str
    keep_fp: str  # "none" or "first-last"
    description: str


VARIANTS = (
    Variant("nncf-int8", "none", "INT8 (NNCF PTQ, MIXED)"),
    Variant("nncf-int8-firstlast-fp", "first-last", "INT8, first and last conv kept FP"),
)


@dataclass(frozen=True)
class Candidate:
    label: str
    path: Path
    kind: str  # "fp32", "nncf-int8", "student" or "student+nncf-int8"


@dataclass(frozen=True)
class Run:
    """One ``scales`` command as it was run (from the repository root) and how long it took."""

    command: str
    seconds: float
    log: str | None = None  # the file its output went to; None: the terminal


class StepFailed(Exception):
    """A ``scales`` command exited non-zero; the message is the command, its exit code and its last line."""


def shown(path: Path) -> str:
    """``path`` relative to the repository where it lies inside it, ``../shared/...`` for the shared data
    (the JSON goes into docs/, and the commands run from the repository root), else as it is."""
    resolved = path.resolve()
    for root, prefix in ((REPO, ""), (SHARED, "../shared/")):
        try:
            return prefix + str(resolved.relative_to(root))
        except ValueError:
            pass
    return str(path)


def run_scales(*args: object, env: Mapping[str, str] | None = None, log: Path | None = None,
               every: Callable[[], None] | None = None) -> Run:
    """``scales ARGS`` as a user types it (printed, then run from the repository root).

    ``env``: extra environment variables (shown in front of the command). ``log``: the output goes to this
    file instead of the terminal, and a failure raises :class:`StepFailed` naming its last line (without
    ``log`` a failure raises ``CalledProcessError``). ``every``: called about once a second while it runs.
    """
    words = [shown(a) if isinstance(a, Path) else str(a) for a in args]
    command = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items()) + (" " if env else "") + "scales " + shlex.join(words)
    print("$ " + command, flush=True)
    cmd = [sys.executable, "-m", "scales_cli", *words]
    full_env = {**os.environ, **env} if env else None
    start = time.perf_counter()
    if log is None and every is None:
        subprocess.run(cmd, check=True, cwd=REPO, env=full_env)
        return Run(command, time.perf_counter() - start)
    log = log or Path(os.devnull)
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=sink, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            if every is not None:
                every()
            try:
                proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()] if log.is_file() else []
        raise StepFailed(f"{command}: exit {proc.returncode}: {lines[-1].strip() if lines else 'no output'} (log: {log})")
    return Run(command, seconds, str(log))


def ir_exists(xml: Path) -> bool:
    return xml.is_file() and xml.with_suffix(".bin").is_file()


def export_ir(model: Path, target: Path, reuse: bool, check: bool = True, **run: object) -> tuple[Path, Run | None]:
    """``model`` as an OpenVINO IR at ``target`` (an ``.xml`` is used as it is), and the export's run
    (None where nothing ran). ``check=False`` adds ``--no-check``. ``run``: keyword arguments of :func:`run_scales`."""
    if model.suffix.lower() == ".xml":
        return model, None
    if reuse and ir_exists(target):
        return target, None
    unchecked = () if check else ("--no-check",)
    return target, run_scales("export", model, "-o", target, "--format", "openvino", "--force", *unchecked, **run)  # type: ignore[arg-type]


def convolutions(xml: Path) -> list[str]:
    """Names of the IR's Convolution nodes in execution order (NNCF's IgnoredScope matches these names)."""
    import openvino as ov

    return [op.get_friendly_name() for op in ov.Core().read_model(str(xml)).get_ordered_ops() if op.get_type_name() == "Convolution"]


def quantize(src: Path, target: Path, recipe: str, crops: list, reuse: bool, keep_fp: str = "none") -> Path:  # noqa: ANN001
    """NNCF PTQ of the IR ``src`` on ``crops`` (each a 1x3xhxw float array), saved with FP32 weights storage.

    A student IR is calibrated at the crops' static shape and saved dynamic again: the CPU plugin's
    BinaryConvolution runs only at static shapes, and NNCF's statistics pass compiles the model as given.
    NNCF leaves BinaryConvolution (and its 1-bit FakeQuantize) alone and quantizes the FP layers.
    """
    if reuse and ir_exists(target):
        return target
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(src))
    name, dynamic = model.inputs[0].get_any_name(), model.inputs[0].get_partial_shape()
    binary = any(op.get_type_name() == "BinaryConvolution" for op in model.get_ordered_ops())
    if binary:
        model.reshape({name: ov.PartialShape(list(crops[0].shape))})
    convs = convolutions(src)
    ignored = nncf.IgnoredScope(names=[convs[0], convs[-1]]) if keep_fp == "first-last" else None
    print(f"nncf.quantize({src.name}, {len(crops)} crops, preset=MIXED, ignored_scope="
          f"{[convs[0], convs[-1]] if ignored else None})", flush=True)
    options: dict[str, Any] = {"ignored_scope": ignored} if ignored else {}

    def run(**extra: Any) -> Any:  # noqa: ANN401 - an ov.Model
        return nncf.quantize(model.clone(), nncf.Dataset(crops), preset=nncf.QuantizationPreset.MIXED,
                             subset_size=len(crops), **options, **extra)

    quantized = run()
    if not runs_at_another_size(quantized, name, tuple(crops[0].shape)):
        print("  its IR runs only at the crops' size (activation ranges along a spatial axis): "
              "quantized again with per-tensor activation ranges", flush=True)
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters

        quantized = run(advanced_parameters=AdvancedQuantizationParameters(
            activations_quantization_params=QuantizationParameters(per_channel=False)))
    if binary:
        quantized.reshape({name: dynamic})
    quantized.set_rt_info(recipe, ["scales", "recipe"])  # the rest of ``scales`` (scale, arch, range) survives NNCF
    ov.save_model(quantized, str(target), compress_to_fp16=False)
    return target


def runs_at_another_size(model: Any, name: str, crop_shape: tuple[int, ...]) -> bool:
    """Does the quantized ``model`` run on an input larger than the calibration crops?

    NNCF 3.4 may give an activation quantizer per-"channel" ranges on axis 1 of a channels-last tensor (BSRN's
    pointwise convs are ``Linear`` layers over NHWC): axis 1 is then the crops' height, and OpenVINO rejects the
    IR at any other height. A user would see that at the first image; the benchmark checks it here."""
    import numpy as np
    import openvino as ov

    n, c, h, w = crop_shape
    shape = (n, c, h + 8, w + 16)
    try:
        other = model.clone()
        other.reshape({name: ov.PartialShape(list(shape))})
        ov.Core().compile_model(other, "CPU")(np.zeros(shape, np.float32))
    except Exception:  # noqa: BLE001 - shape inference or the plugin refusing the IR: both mean "no"
        return False
    return True


@dataclass(frozen=True)
class Calibration:
    """NNCF's calibration data: one seeded ``crop x crop`` crop of each of ``images`` images of ``folder``."""

    folder: Path
    images: int
    crop: int

    def crops(self, input_range: float) -> list:
        """The crops ``scales binarize --calibrate`` takes, as 1x3xhxw float arrays in ``[0, input_range]``."""
        return [b.numpy() for b in calibration_batches(self.folder, self.images, crop=self.crop, input_range=input_range,
                                                       batch_size=1)]

    def to_json(self, crops: list) -> dict[str, object]:
        """What the JSON of a benchmark says of it, with the number of ``crops`` taken (a folder may hold fewer)."""
        return {"folder": shown(self.folder), "images": len(crops), "crop": self.crop, "seed": 0}


@dataclass(frozen=True)
class TeacherIRs:
    name: str  # "ARCH xSCALE", the start of every label
    candidates: list[Candidate]  # FP32 first, then one per VARIANTS
    crops: list  # the calibration crops, scaled to the teacher's input range
    runs: list[Run]  # the scales commands it took (none where every IR was reused)


def teacher_irs(teacher: Path, out: Path, calibration: Calibration, reuse: bool, **run: object) -> TeacherIRs:
    """The teacher's FP32 IR (``OUT/fp32.xml``) and its NNCF INT8 IRs (``OUT/VARIANT.xml``, one per
    :data:`VARIANTS`), labelled ``ARCH xSCALE ...``. ``run``: keyword arguments of :func:`run_scales`."""
    fp_xml, export = export_ir(teacher, out / "fp32.xml", reuse, **run)
    desc = load(fp_xml)
    crops = calibration.crops(desc.input_range)
    name = f"{desc.arch} x{desc.scale}"
    candidates = [Candidate(f"{name} FP32", fp_xml, "fp32")]
    for v in VARIANTS:
        xml = quantize(fp_xml, out / f"{v.name}.xml", v.name, crops, reuse, v.keep_fp)
        candidates.append(Candidate(f"{name} {v.description}", xml, "nncf-int8"))
    return TeacherIRs(name, candidates, crops, [export] if export else [])


def fake_quantize_count(xml: Path) -> int:
    import openvino as ov

    return sum(op.get_type_name() == "FakeQuantize" for op in ov.Core().read_model(str(xml)).get_ordered_ops())


def score(candidates: Sequence[Candidate], data: Sequence[Path], **hooks: Callable) -> dict[str, dict[str, float]]:
    """Mean Y-PSNR per dataset of each candidate, by the library behind ``scales report``.
    ``hooks``: ``on_plan``/``on_image`` of :func:`~scales_cli.report.build.build_report` (progress)."""
    report = build_report([c.path for c in candidates], data, **hooks)
    psnr: dict[str, dict[str, float]] = {}
    for cand, row in zip(candidates, report.groups[0].rows, strict=True):
        psnr[cand.label] = {r.dataset: r.mean_psnr for r in row.results}
    return psnr
