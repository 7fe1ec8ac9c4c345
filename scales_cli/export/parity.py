"""Parity: does the exported file compute what the torch model computes, on real images?

Per image (RGB in ``[0, input_range]``, outputs divided by ``input_range``):

- ``psnr_db`` = 10 log10(1 / mean((export - torch)^2)) on the float outputs (inf when identical);
- ``uint8_match`` = share of pixels (all channels) where round(clamp(v, 0, 1) * 255) agrees.

An image passes with ``psnr_db >= 80`` and ``uint8_match >= 0.999``. When one does not, the export
is run again with every quantized layer's (binary and INT8) input and output as extra graph outputs
(:class:`Probed`) and compared with torch's, layer by layer. That probed copy must compute what the file
computes (final outputs >= 80 dB apart, or the file ten times closer to it in squared error than it is to torch:
:func:`probe_stands_for_file`): a runtime may compile it differently, because extra outputs can stop a kernel
fusion, and then nothing it shows explains the file -> failure naming "the compiled graph".
At the first layer whose output differs (< 80 dB):

- a layer whose export output differs from what the torch layer computes on the export's own input
  is wrong -> failure naming it. An INT8 layer is allowed the rounding tolerance: a runtime may put
  an input with |frac(x / s) - 0.5| <= 1e-3 on the other level (ties are half-to-even in ONNX and in
  torch, but OpenVINO's FakeQuantize computes x / s as (x - low) * 255 / (high - low), a few ulps
  off), so each output may differ by op(s * 1{near tie}, |Q_w(W)|) (``Int8Layer.rounding_bound``)
  plus 1e-5 of the layer's peak |output|; within that the layer is exact and its near-tie inputs
  count as flips;
- a layer whose *input* differs (< 80 dB) before any flip: the FP part of the graph before it is
  wrong -> failure naming it;
- otherwise every layer is exact on its own input, and the first layer where some activations sat so
  close to beta (binary) or to a rounding boundary (INT8) that float rounding put them on the other
  side (``flips``: inputs whose binary sign or INT8 level differs) is where the runs part. A quantized
  network amplifies each flip downstream; that is not an export error. Such
  an image passes unless ``strict`` (the report keeps the figures and the layer). Without flips the
  difference is in the FP graph after the last binary layer -> failure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import DataError
from ..inputs import find_images
from .runtime import Runner

MIN_PSNR_DB = 80.0
MIN_UINT8_MATCH = 0.999
DEMO_IMAGES = Path(__file__).resolve().parents[1] / "demo" / "Set5-mini" / "LR_bicubic" / "X4"
ENVELOPE_DB = 10.0
"""How much closer (in dB, 10 = a tenth of the squared error) the file must be to its probed copy than that copy
is to torch, when the two are not equal, for the copy's layer-by-layer story to stand for the file
(:func:`probe_stands_for_file`)."""


def probe_stands_for_file(file_vs_probe_db: float, probe_vs_torch_db: float) -> bool:
    """Whether the probed copy's diagnosis may explain the file.

    Equal outputs (>= :data:`MIN_PSNR_DB`) always may. Otherwise the runtime compiled the two differently; in a
    student whose threshold flips are amplified downstream, a fusion that only changes float rounding moves
    the flips and the outputs part too (RFDN x4 ``cnn-int8``: file vs copy 79.2 dB, copy vs torch 59.7 dB, the
    copy's difference explained by flips). The copy then stands for the file only where the file is far
    closer to it than it is to torch (:data:`ENVELOPE_DB`): a wrong fused kernel shows as a file further from
    its checked copy than that (OpenVINO's skip-and-binarize fusion: 44.8 dB against 78.8).
    """
    return file_vs_probe_db >= MIN_PSNR_DB or file_vs_probe_db >= probe_vs_torch_db + ENVELOPE_DB


Probe = Callable[[torch.Tensor], list[np.ndarray]]
"""x -> outputs of the export's probed graph: (image, in_1, out_1, in_2, out_2, ...) for the quantized layers."""
ROUNDING_ATOL = 1e-5
"""An INT8 layer's export output may differ from torch's by its rounding bound plus this share of its peak |output|."""


@dataclass(frozen=True)
class Divergence:
    """Where one image's export parts from torch: the layer, why, and how many threshold flips."""

    layer: str
    reason: str  # "rounding flips" | "layer differs" | "FP graph before it differs" | UNPROBED
    input_db: float
    output_db: float
    flips: int

    @property
    def explained(self) -> bool:
        return self.reason == ROUNDING

    def describe(self) -> str:
        if self.explained:
            return (f"{self.layer}: {self.flips} activation(s) at a threshold or rounding boundary flipped by float "
                    f"rounding (input {self.input_db:.0f} dB, layer exact on either input)")
        if self.reason == UNPROBED:  # input_db: the probed copy against torch; output_db: against the file
            return (f"{self.layer}: {self.reason} (a kernel fusion that the probe's extra outputs prevent; probed copy "
                    f"vs torch {self.input_db:.1f} dB, vs the file {self.output_db:.1f} dB): not float rounding")
        return f"{self.layer}: {self.reason} (input {self.input_db:.1f} dB, output {self.output_db:.1f} dB)"


ROUNDING = "rounding flips"
UNPROBED = "the runtime computes the file differently from its probed copy"


@dataclass(frozen=True)
class ImageParity:
    image: str
    psnr_db: float
    uint8_match: float
    max_abs: float
    divergence: Divergence | None = None

    @property
    def exact(self) -> bool:
        """The issue's criterion: >= 80 dB and >= 99.9 % equal uint8 pixels."""
        return self.psnr_db >= MIN_PSNR_DB and self.uint8_match >= MIN_UINT8_MATCH

    def passes(self, strict: bool = False) -> bool:
        return self.exact or (not strict and self.divergence is not None and self.divergence.explained)

    def to_json(self) -> dict[str, object]:
        div = self.divergence
        return {
            "image": self.image, "psnr_db": _finite(self.psnr_db), "uint8_match": self.uint8_match,
            "max_abs": self.max_abs, "exact": self.exact,
            "divergence": None if div is None else {
                "layer": div.layer, "reason": div.reason, "input_db": _finite(div.input_db),
                "output_db": _finite(div.output_db), "flips": div.flips,
            },
        }


@dataclass(frozen=True)
class ParityReport:
    images: tuple[ImageParity, ...]
    strict: bool = False

    @property
    def ok(self) -> bool:
        return all(i.passes(self.strict) for i in self.images)

    @property
    def worst(self) -> ImageParity:
        return min(self.images, key=lambda i: (i.passes(self.strict), i.psnr_db))

    @property
    def flipped(self) -> tuple[ImageParity, ...]:
        """Images that pass only because their difference is explained by threshold flips."""
        return tuple(i for i in self.images if not i.exact and i.passes(False))

    def failure(self) -> str:
        """One line: the first failing image, and the layer where the export parts from torch."""
        bad = next(i for i in self.images if not i.passes(self.strict))
        where = (f"; first diverging layer {bad.divergence.describe()}" if bad.divergence
                 else "; no quantized layer diverges: the FP graph after the last one differs")
        return (
            f"parity failed on {bad.image}: PSNR(export, torch) {bad.psnr_db:.1f} dB (need >= {MIN_PSNR_DB:g}), "
            f"uint8 match {bad.uint8_match:.4%} (need >= {MIN_UINT8_MATCH:.1%}){where}"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "strict": self.strict,
            "min_psnr_db": _finite(min(i.psnr_db for i in self.images)),
            "min_uint8_match": min(i.uint8_match for i in self.images),
            "images": [i.to_json() for i in self.images],
        }


def _finite(v: float) -> float | None:
    return None if math.isinf(v) else v


def check_images(folder: str | Path | None) -> list[Path]:
    """The LR images of ``--check DIR`` (default: the embedded demo images), checked before any work."""
    root = Path(folder) if folder is not None else DEMO_IMAGES
    if not root.is_dir():
        raise DataError(f"--check {root}: not a folder of LR images")
    return find_images(root, "--check")


def psnr_db(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)


def compare(name: str, exported: np.ndarray, reference: np.ndarray) -> ImageParity:
    if exported.shape != reference.shape:
        return ImageParity(name, -math.inf, 0.0, math.inf)
    q = lambda v: np.round(np.clip(v, 0, 1) * 255)  # noqa: E731
    return ImageParity(
        name,
        psnr_db(exported, reference),
        float(np.mean(q(exported) == q(reference))),
        float(np.max(np.abs(exported.astype(np.float64) - reference))),
    )


def check_parity(
    runner: Runner,
    model: nn.Module,
    images: Sequence[Path],
    input_range: float = 1.0,
    probe: Probe | None = None,
    layers: Sequence[str] = (),
    strict: bool = False,
    min_size: int = 1,
) -> ParityReport:
    """Run ``runner`` and ``model`` on every image; diagnose each image that misses the criterion.

    ``layers``: the path of every quantized layer, in the order ``probe`` reports them. An image with a
    side under ``min_size`` is edge-padded first, as ``scales upscale`` feeds it (both sides see the same input).
    """
    from ..imaging import read_image
    from ..inputs import pad_to_min_size

    results = []
    for path in images:
        x = pad_to_min_size(read_image(path).rgb * input_range, min_size)
        with torch.no_grad():
            ref = model.eval()(x).numpy() / input_range
        deployed = np.asarray(runner(x.numpy()))
        result = compare(path.name, deployed / input_range, ref)
        if not result.exact and probe is not None and layers:
            result = replace(result, divergence=diagnose(model, x, probe, layers, deployed))
        results.append(result)
    return ParityReport(tuple(results), strict)


@dataclass(frozen=True)
class LayerCheck:
    """One probed call compared: figures in dB, whether the layer is exact on the export's own input, flips."""

    input_db: float
    output_db: float
    own_db: float
    exact: bool
    flips: int


def check_layer(layer: nn.Module, t_in: np.ndarray, t_out: np.ndarray, e_in: np.ndarray, e_out: np.ndarray) -> LayerCheck:
    """Compare one layer call of torch (t_*) and of the export (e_*) (module docstring: the rules)."""
    e_x = torch.from_numpy(np.ascontiguousarray(e_in))
    with torch.no_grad():
        own = layer(e_x)
        same_shape = e_in.shape == t_in.shape
        flips = int((layer.input_codes(torch.from_numpy(t_in)) != layer.input_codes(e_x)).sum()) if same_shape else 0
        own_db = _layer_db(e_out, own.numpy())
        exact = own_db >= MIN_PSNR_DB
        bound = getattr(layer, "rounding_bound", None)
        if not exact and bound is not None and e_out.shape == tuple(own.shape):
            near_ties = bound(e_x)  # one conv over the input: computed once
            allowed = near_ties + ROUNDING_ATOL * float(own.abs().max())
            exact = bool(((torch.from_numpy(e_out) - own).abs() <= allowed).all())
            flips += int((near_ties > 0).sum()) if exact else 0
    return LayerCheck(_layer_db(e_in, t_in), _layer_db(e_out, t_out), own_db, exact, flips)


def diagnose(model: nn.Module, x: torch.Tensor, probe: Probe, layers: Sequence[str],
             deployed: np.ndarray | None = None) -> Divergence | None:
    """Why one image's export parts from torch (module doc); None when no quantized layer explains it.

    ``deployed``: the file's own output. The probed graph is another graph to the runtime (its extra
    outputs can stop a kernel fusion), so its layer-by-layer story explains the file only where its
    final output is the file's, or far closer to it than to torch (:func:`probe_stands_for_file`); otherwise
    the difference is the runtime's, not rounding.
    """
    from .graph import Probed

    probed = Probed(model, list(layers))
    with torch.no_grad():
        torch_side = [t.numpy() for t in probed(x)]
    export_side = probe(x)
    if deployed is not None:
        seen, own = _layer_db(export_side[0], deployed), _layer_db(export_side[0], torch_side[0])
        if not probe_stands_for_file(seen, own):
            return Divergence("(the compiled graph)", UNPROBED, own, seen, 0)
    first_flip: Divergence | None = None
    for i, path in enumerate(probed.calls):  # the export graph records the same calls in the same order
        if 2 + 2 * i >= len(export_side):
            break
        c = check_layer(model.get_submodule(path), torch_side[1 + 2 * i], torch_side[2 + 2 * i],
                        export_side[1 + 2 * i], export_side[2 + 2 * i])
        if not c.exact:  # the layer itself computes something else: a real export error
            return Divergence(path, "layer differs", c.input_db, c.own_db, c.flips)
        if first_flip is None and c.input_db < MIN_PSNR_DB:  # inputs part before any flip: the FP graph is wrong
            return Divergence(path, "FP graph before it differs", c.input_db, c.output_db, 0)
        if first_flip is None and c.flips:
            first_flip = Divergence(path, ROUNDING, c.input_db, c.output_db, c.flips)
    return first_flip


def _layer_db(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of a feature map against its peak |value| (-inf on a shape mismatch)."""
    if a.shape != b.shape:
        return -math.inf
    return psnr_db(a, b, float(np.max(np.abs(b))) or 1.0)
