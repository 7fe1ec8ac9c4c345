"""NumPy reference kernels of the ``scales`` ONNX ops, run inside onnxruntime via onnxruntime-extensions.

The kernels implement docs/onnx-ops.md literally (no speed tricks beyond im2col): they are the
executable specification another runtime can be checked against. :func:`reference_session` is the
one call a user needs::

    >>> sess = reference_session("student.onnx")          # doctest: +SKIP
    >>> sr = sess.run(None, {"lr": lr})[0]                # doctest: +SKIP

Importing this module registers the ops with onnxruntime-extensions' Python op table (once per
process); the session then loads the extensions library that dispatches to them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..machine import runtime_threads
from .view import unpack_rows

CONV_ATTRS = (
    "kernel_h", "kernel_w", "stride_h", "stride_w", "pad_top", "pad_left", "pad_bottom", "pad_right",
    "dilation_h", "dilation_w", "group",
)


def binarize(x: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """sign(x - beta) as float32 +-1 with sign(0) = +1 (beta broadcast along the channel axis given by its shape)."""
    return np.where((x - beta) >= 0, np.float32(1), np.float32(-1))


def binary_conv2d(
    x: np.ndarray, bits: np.ndarray, scale: np.ndarray, alpha: np.ndarray, beta: np.ndarray, shift: np.ndarray,
    *, kernel_h: int, kernel_w: int, stride_h: int = 1, stride_w: int = 1, pad_top: int = 0, pad_left: int = 0,
    pad_bottom: int = 0, pad_right: int = 0, dilation_h: int = 1, dilation_w: int = 1, group: int = 1,
) -> np.ndarray:
    """Y[n,o] = alpha * scale[o] * sum_{c,i,j} sign(X - beta)[n, c, y*s + i*d, x*s + j*d] W[o,c,i,j] + shift[o].

    Padded taps are 0 (they contribute nothing); W = +-1 from the MSB-first packed ``bits``.
    """
    n, c_in, _, _ = x.shape
    c_out = bits.shape[0]
    cg = c_in // group
    signs = unpack_rows(bits, cg * kernel_h * kernel_w).reshape(c_out, cg, kernel_h, kernel_w)
    xb = binarize(x.astype(np.float32), beta.reshape(1, -1, 1, 1))
    xb = np.pad(xb, ((0, 0), (0, 0), (pad_top, pad_bottom), (pad_left, pad_right)))
    span_h, span_w = dilation_h * (kernel_h - 1) + 1, dilation_w * (kernel_w - 1) + 1
    windows = np.lib.stride_tricks.sliding_window_view(xb, (span_h, span_w), axis=(2, 3))
    windows = windows[:, :, ::stride_h, ::stride_w, ::dilation_h, ::dilation_w]  # (n, c, H', W', kh, kw)
    og = c_out // group
    out = np.empty((n, c_out, windows.shape[2], windows.shape[3]), dtype=np.float32)
    for g in range(group):
        part = windows[:, g * cg:(g + 1) * cg]
        out[:, g * og:(g + 1) * og] = np.einsum("nchwij,ocij->nohw", part, signs[g * og:(g + 1) * og], optimize=True)
    return (out * (alpha.reshape(()) * scale).reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)).astype(np.float32)


def binary_linear(
    x: np.ndarray, bits: np.ndarray, scale: np.ndarray, alpha: np.ndarray, beta: np.ndarray, shift: np.ndarray
) -> np.ndarray:
    """Y[..., o] = alpha * scale[o] * sum_c sign(X - beta)[..., c] W[o, c] + shift[o] (tokens in the last axis)."""
    signs = unpack_rows(bits, x.shape[-1])
    xb = binarize(x.astype(np.float32), beta)
    return ((xb @ signs.T) * (alpha.reshape(()) * scale) + shift).astype(np.float32)


def _register() -> None:
    from onnxruntime_extensions import PyCustomOpDef, onnx_op

    f32, u8, i64 = PyCustomOpDef.dt_float, PyCustomOpDef.dt_uint8, PyCustomOpDef.dt_int64
    inputs = [f32, u8, f32, f32, f32, f32]

    @onnx_op(op_type="scales::BinaryConv2d", inputs=inputs, outputs=[f32], attrs={a: i64 for a in CONV_ATTRS})
    def _conv(x, bits, scale, alpha, beta, shift, **attrs):  # noqa: ANN001, ANN202, ANN003
        return binary_conv2d(x, bits, scale, alpha, beta, shift, **{k: int(v) for k, v in attrs.items()})

    @onnx_op(op_type="scales::BinaryLinear", inputs=inputs, outputs=[f32])
    def _linear(x, bits, scale, alpha, beta, shift):  # noqa: ANN001, ANN202
        return binary_linear(x, bits, scale, alpha, beta, shift)


_register()


def reference_session(model: str | Path | bytes, threads: int | None = None):  # noqa: ANN201 - ort.InferenceSession
    """A ready onnxruntime session for ``model`` (path or bytes) with the ``scales`` ops registered."""
    import onnxruntime as ort
    from onnxruntime_extensions import get_library_path

    options = ort.SessionOptions()
    options.register_custom_ops_library(get_library_path())
    options.intra_op_num_threads = runtime_threads(threads)  # torch's count unless given (one knob)
    options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
