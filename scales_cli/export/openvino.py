"""OpenVINO IR (.xml + .bin) with real 1-bit convolutions, built from the ``scales`` ONNX graph.

The ``scales`` ONNX (:mod:`.onnx_custom`) is read by OpenVINO's ONNX frontend with one conversion
extension per custom op. ``scales::BinaryConv2d(X, bits, scale, alpha, beta, shift)`` becomes::

    FakeQuantize(X, lo=hi=nextafter(beta, -inf) per channel, out 0/1, levels=2)   # 1 where X >= beta
      -> BinaryConvolution(mode="xnor-popcount", pad_value=0.0, weights u1)      # sum of +-1 products
      -> Multiply(alpha * scale[o]) -> Add(shift[o])

FakeQuantize maps x <= lo to 0 and x > hi to 1, so a threshold one ulp below beta gives 1 exactly
when x >= beta: sign(0) = +1 as in torch. ``pad_value=0.0`` makes padded taps contribute 0, as torch's
zero padding of the +-alpha map does. u1 weights are packed LSB-first over the whole flattened
(C_out, C_in, kh, kw) tensor (``np.packbits(bitorder="little")``); that is the order OpenVINO reads.
Everything else (re-scaling branches, bias, skips, FP layers) converts as standard ONNX; so do INT8
layers, written as QDQ pairs (:mod:`.graph`): the frontend makes FakeQuantize(levels=256) on the
activation and i8 weights with a per-channel Multiply, which run as INT8 convolutions (``*_I8`` in the
profile) even with the f32 precision hint, which keeps the rest of the graph f32.

BinaryConvolution has no groups: a grouped binary conv becomes Split (input channels into G groups)
-> one FakeQuantize + BinaryConvolution per group, each with its own u1 constant -> Concat. The CPU
kernel needs C_in % 8 == 0 (per group): other even counts get cancelling zero-channel pairs, odd counts are
refused (one line naming the layer); it accepts padding up to 2 only: larger paddings are refused.
BinaryLinear is written as a 1x1 BinaryConvolution with one token per batch item: (..., N, C) -> (T, C, 1, 1).
Compile with ``INFERENCE_PRECISION_HINT=f32`` (:func:`compile_ir`): the CPU may otherwise pick bf16.
:func:`write` then applies the value-preserving passes of :mod:`.lean` (the channel padding as a Pad,
binary layers reading past IMDN-style channel Splits), measured faster in the CPU plugin.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..errors import ScalesError
from ..machine import runtime_threads
from .view import LayerView, unpack_rows

PRECISION = {"INFERENCE_PRECISION_HINT": "f32"}


class UnsupportedLayerError(ScalesError):
    """A layer that the target runtime cannot express."""


MAX_PAD = 2
"""The CPU BinaryConvolution refuses ("unsupported parameters") any padding above 2 (measured for kernels
3 and 5, dilations 1-3, strides 1-2): such layers are refused before any work."""

CHANNEL_MULTIPLE = 8
"""OpenVINO's CPU BinaryConvolution computes correctly only for C_in % 8 == 0 (measured: 4, 6, 12, 20, 50
give wrong sums, 3 fails to compile); other even C_in are padded with cancelling channel pairs."""


def check_supported(views: list[tuple[str, LayerView]]) -> None:
    """Refuse, before any work, a binary layer BinaryConvolution cannot express."""
    for path, view in views:
        groups = view.groups if view.kind == "conv2d" else 1  # type: ignore[union-attr]
        c_in = (view.in_channels if view.kind == "conv2d" else view.in_features) // groups  # type: ignore[union-attr]
        if c_in % 2:
            per_group = f" per group ({groups} groups)" if groups > 1 else ""
            raise UnsupportedLayerError(
                f"layer {path}: {c_in} input channels{per_group}; OpenVINO's CPU BinaryConvolution needs a multiple of 8 "
                "and an odd count cannot be padded exactly (use --format scales or float, or keep the layer FP in the recipe)"
            )
        if view.kind == "conv2d" and max(view.padding) > MAX_PAD:  # type: ignore[union-attr]
            raise UnsupportedLayerError(
                f"layer {path}: padding {view.padding} (top, left, bottom, right); OpenVINO's CPU BinaryConvolution "  # type: ignore[union-attr]
                f"accepts at most {MAX_PAD} (use --format scales or float, or keep the layer FP in the recipe)"
            )


def _u1_constant(signs_rows: np.ndarray, shape: tuple[int, ...]):  # noqa: ANN202
    import openvino as ov

    bits = (signs_rows.reshape(-1) > 0).astype(np.uint8)
    tensor = ov.Tensor(ov.Type.u1, ov.Shape(list(shape)))
    packed = np.packbits(bits, bitorder="little")
    np.copyto(tensor.data.reshape(-1)[: packed.size], packed)
    return ov.op.Constant(tensor, shared_memory=False)


def _const(node, i: int) -> np.ndarray:  # noqa: ANN001
    return np.asarray(node.get_input(i).get_node().get_data())


def binarize(x, threshold: np.ndarray, low: np.ndarray, high: np.ndarray):  # noqa: ANN001, ANN201
    """FakeQuantize(levels=2): ``high`` where x > threshold, else ``low``; one Constant is its input_low and input_high.

    The shared Constant keeps the CPU plugin from fusing this FakeQuantize into the node before it (the plugin
    fuses one only when its range inputs have no other consumer). OpenVINO 2026.4.1 computes a
    BinaryConvolution wrongly when it fuses both a skip's Add (a sum post-op) and the next binary layer's
    FakeQuantize: RLFN x4 under the lsf preset (binary conv + skip -> LeakyReLU -> binary conv) gave 28.5 dB
    against torch, exact once unfused (tests/test_export.py, SkipChain). Not enough where the model also has INT8
    layers: the plugin's low-precision transformations rebuild this FakeQuantize's range Constants, and the fusion
    (and the error) comes back; there :func:`.lean.skip_as_subtract` writes the skip so that it is never a sum.
    """
    import openvino.opset13 as ops

    bound = ops.constant(np.asarray(threshold, np.float32))
    return ops.fake_quantize(x, bound, bound, low, high, 2)


def _binary_core(x, bits: np.ndarray, scale: np.ndarray, alpha: np.ndarray, beta: np.ndarray, shift: np.ndarray,  # noqa: ANN001, ANN202
                 kernel: tuple[int, int], strides: list[int], pads_begin: list[int], pads_end: list[int], dilations: list[int]):
    import openvino.opset13 as ops
    from openvino import opset1

    c_out = bits.shape[0]
    c_in = beta.shape[0]
    threshold = np.nextafter(beta.astype(np.float32), np.float32(-np.inf))
    zero, one = np.zeros((1, 1, 1, 1), np.float32), np.ones((1, 1, 1, 1), np.float32)
    signs = unpack_rows(bits, c_in * kernel[0] * kernel[1]).reshape(c_out, c_in, *kernel)
    extra = (-c_in) % CHANNEL_MULTIPLE
    if extra:
        # the CPU kernel computes wrongly unless C_in is a multiple of 8: append zero channels with
        # weights +1, -1, +1, -1 ... (both channels of a pair get the same bit, so pairs cancel exactly;
        # padded taps give 0 for both). Pad, not Concat(x, Gather(x)): with INT8 layers in the graph, OpenVINO
        # 2026.4.1's CPU plugin crashed (SIGSEGV in infer) on the Concat form (RLFN x4 cnn-int8, 46 channels).
        x = ops.pad(x, np.zeros(4, np.int64), np.array([0, extra, 0, 0], np.int64), "constant", np.float32(0))
        threshold = np.concatenate([threshold, np.full(extra, threshold[0], np.float32)])
        pairs = np.tile(np.array([1.0, -1.0], np.float32), extra // 2).reshape(1, extra, 1, 1)
        signs = np.concatenate([signs, np.broadcast_to(pairs, (c_out, extra, *kernel))], axis=1)
    threshold = threshold.reshape(1, -1, 1, 1)
    fq = binarize(x, threshold, zero, one)
    weights = _u1_constant(signs, signs.shape)
    conv = opset1.binary_convolution(fq, weights, strides, pads_begin, pads_end, dilations, "xnor-popcount", 0.0)
    mult = (alpha.reshape(()) * scale).astype(np.float32).reshape(1, -1, 1, 1)
    out = ops.multiply(conv, mult)
    if np.any(shift):
        out = ops.add(out, shift.astype(np.float32).reshape(1, -1, 1, 1))
    return out


def _convert_conv(node):  # noqa: ANN001, ANN202
    a = {k: int(node.get_attribute(k)) for k in (
        "kernel_h", "kernel_w", "stride_h", "stride_w", "pad_top", "pad_left", "pad_bottom", "pad_right",
        "dilation_h", "dilation_w", "group")}
    geometry = {
        "kernel": (a["kernel_h"], a["kernel_w"]), "strides": [a["stride_h"], a["stride_w"]],
        "pads_begin": [a["pad_top"], a["pad_left"]], "pads_end": [a["pad_bottom"], a["pad_right"]],
        "dilations": [a["dilation_h"], a["dilation_w"]],
    }
    x = node.get_input(0)
    bits, scale, alpha, beta, shift = (_const(node, i) for i in range(1, 6))
    groups = a["group"]
    if groups == 1:
        return [_binary_core(x, bits, scale, alpha, beta, shift, **geometry).output(0)]
    return [_grouped_core(x, groups, bits, scale, alpha, beta, shift, geometry).output(0)]


def _grouped_core(x, groups: int, bits: np.ndarray, scale: np.ndarray, alpha: np.ndarray, beta: np.ndarray,  # noqa: ANN001, ANN202
                  shift: np.ndarray, geometry: dict):
    """BinaryConvolution has no groups: Split the input channels into ``groups`` -> one binary core per
    group (its own rows of packed bits, its own thresholds, its own u1 constant) -> Concat the outputs.

    Group g reads channels ``[g C_in/G, (g+1) C_in/G)`` and writes ``[g C_out/G, (g+1) C_out/G)``, as a
    grouped conv does; each group is padded to a multiple of 8 channels on its own (:func:`_binary_core`).
    """
    import openvino.opset13 as ops

    g_in, g_out = beta.shape[0] // groups, bits.shape[0] // groups
    parts = ops.split(x, np.int64(1), groups)
    outs = []
    for g in range(groups):
        rows, chans = slice(g * g_out, (g + 1) * g_out), slice(g * g_in, (g + 1) * g_in)
        outs.append(_binary_core(parts.output(g), bits[rows], scale[rows], alpha, beta[chans], shift[rows], **geometry))
    return ops.concat(outs, 1)


def _convert_linear(node):  # noqa: ANN001, ANN202
    import openvino.opset13 as ops

    x = node.get_input(0)
    bits, scale, alpha, beta, shift = (_const(node, i) for i in range(1, 6))
    c_in, c_out = beta.shape[0], bits.shape[0]
    rank = x.get_partial_shape().rank.get_length()
    leading = ops.gather(ops.shape_of(x), np.arange(rank - 1, dtype=np.int64), np.int64(0))
    # Each token is one 1x1 "image": (..., C) -> (T, C, 1, 1) is a reshape, no data moves. (The earlier
    # (1, C, T, 1) layout needed a transpose each way; on IMDTN x4 those took 63 % of the student's time.)
    nchw = ops.reshape(x, np.array([-1, c_in, 1, 1], np.int64), False)
    z = _binary_core(nchw, bits, scale, alpha, beta, shift, kernel=(1, 1), strides=[1, 1], pads_begin=[0, 0],
                     pads_end=[0, 0], dilations=[1, 1])
    back = ops.reshape(z, np.array([-1, c_out], np.int64), False)  # (T, C_out)
    out_shape = ops.concat([leading, ops.constant(np.array([c_out], np.int64))], 0)
    return [ops.reshape(back, out_shape, False).output(0)]


def convert_onnx(onnx_model: bytes):  # noqa: ANN201 - ov.Model
    """The ov.Model of a ``scales`` ONNX graph (custom ops mapped as in the module docstring)."""
    import openvino as ov
    from openvino.frontend.onnx import ConversionExtension

    core = ov.Core()
    core.add_extension(ConversionExtension("BinaryConv2d", "scales", _convert_conv))
    core.add_extension(ConversionExtension("BinaryLinear", "scales", _convert_linear))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "model.onnx"
        src.write_bytes(onnx_model)
        model = core.read_model(str(src))
    model.set_rt_info("f32", ["runtime_options", "INFERENCE_PRECISION_HINT"])
    return model


def save_ir(model, xml: Path) -> list[Path]:  # noqa: ANN001
    """Write ``xml`` and its ``.bin`` (FP32 weights kept: no FP16 compression)."""
    import openvino as ov

    ov.save_model(model, str(xml), compress_to_fp16=False)
    return [xml, xml.with_suffix(".bin")]


def compile_ir(model, shape: tuple[int, ...], threads: int | None = None, profile: bool = False):  # noqa: ANN001, ANN201
    """Compile an ov.Model or .xml path for the CPU in f32 at one static input ``shape``.

    The IR keeps dynamic height and width, but the CPU plugin's BinaryConvolution needs static
    shapes, so each input size is compiled on its own (``threads``: a single stream of that many).
    """
    import openvino as ov

    config: dict[str, object] = dict(PRECISION)
    # a single stream of ``threads``, by default torch's thread count (machine.runtime_threads: one knob)
    config.update({"INFERENCE_NUM_THREADS": runtime_threads(threads), "NUM_STREAMS": 1})
    if profile:
        config["PERF_COUNT"] = True
    core = ov.Core()
    if isinstance(model, str | Path):
        model = core.read_model(str(model))
    else:
        model = model.clone()
    model.reshape({model.inputs[0].get_any_name(): ov.PartialShape(list(shape))})
    return core.compile_model(model, "CPU", config)


EXACT_INT8_FLAGS = frozenset({"avx512_vnni", "amx_int8"})
"""ISA flags whose INT8 kernels accumulate u8 x s8 products in int32 (VNNI's vpdpbusd, AMX): no int16 saturation."""


def int8_saturates(isa: tuple[str, ...] | None) -> bool:
    """Whether OpenVINO's INT8 convolutions on a CPU with these :data:`~scales_cli.machine.KERNEL_FLAGS` may
    saturate (no :data:`EXACT_INT8_FLAGS`, or flags unknown: assume they may).

    >>> int8_saturates(("avx512f", "avx2")), int8_saturates(("avx512_vnni", "avx512f", "avx2"))
    (True, False)
    """
    return not EXACT_INT8_FLAGS & set(isa or ())


def graph_options(spatial_pointwise: bool = True, isa: tuple[str, ...] | None = None):  # noqa: ANN201 - GraphOptions
    """How the IR is written. INT8 weights are split (:class:`.graph.Int8ExportedLayer`) where the exporting
    CPU's INT8 kernels saturate (``isa``, default this CPU's): the parity check runs here, so an IR written here
    is exact here. The split IR is exact on every CPU at twice the INT8 MACs; an IR written on a VNNI CPU is not
    split and, run on a CPU without VNNI, may saturate (docs/onnx-ops.md)."""
    from ..machine import local_isa
    from .graph import GraphOptions

    return GraphOptions(core="custom", spatial_pointwise=spatial_pointwise,
                        int8_split=int8_saturates(local_isa() if isa is None else isa))


def model_of(net, example, opset: int):  # noqa: ANN001, ANN201 - ov.Model of an already converted network or module
    from ._onnx import onnx_bytes

    return convert_onnx(onnx_bytes(net, example, opset))


def write(model, target: Path, opset: int, metadata: dict[str, str] | None = None, *, spatial_pointwise: bool = True,
          lean: bool = True) -> list[Path]:  # noqa: ANN001
    """IR of a student (or FP network): the spatial branch rewrite (docstring of .graph) and the value-preserving
    graph passes of :mod:`.lean` are on by default (export's parity check runs on the file written).

    ``metadata`` goes into the IR's rt_info under ``scales`` (read back by :func:`.runtime.load_exported`).
    """
    from ._onnx import example_input
    from .graph import export_network

    net = export_network(model, graph_options(spatial_pointwise))
    ir = model_of(net, example_input(), opset)
    if lean:
        from .lean import make_lean

        make_lean(ir)
    for key, value in (metadata or {}).items():
        ir.set_rt_info(str(value), ["scales", key])
    return save_ir(ir, target)
