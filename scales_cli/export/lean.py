"""Rewrites of a converted ov.Model that keep its values and let OpenVINO's CPU plugin run it faster.

Issue 21 step 3: in a binary student the binary convolutions are cheap and the FP work around them
is not. The profile (``benchmarks/export_speed.py``, per-node ``execType`` of the compiled model)
shows which nodes the CPU plugin runs as slow reference kernels (``ref_*``); each pass here removes
one such pattern and is kept only because an interleaved benchmark said it helps (docs/results.md,
"Lean OpenVINO graph"). Every pass returns how many patterns it rewrote, so that tests can check it
did what it claims, and leaves the model's outputs equal (exactly, or up to float summation order).

- The C_in % 8 channel padding of a binary layer was a pass here (Gather + Concat -> Pad); the core
  now emits the Pad itself (:func:`.openvino._binary_core`), so no pass is needed.

- :func:`read_past_split`: the binary layer (and its spatial branch's 1x1 conv) that reads a channel
  range of a Split (IMDN's distillation: 48 of 64 channels) reads the whole tensor, with cancelling dead
  channels; the Split, left with its other output only, becomes one Slice. VariadicSplit runs
  ``ref_f32`` and writes every output; the wider binary conv costs less than the Split it removes.

- :func:`skip_as_subtract`: in a model with INT8 layers, a binary layer's skip Add becomes a Subtract of
  the negated skip, so that the plugin never fuses it as a ``sum`` beside the next binarizer (a plugin bug:
  a correctness pass, not a speed one).

Tried and not kept (measured, docs/results.md): Split along channels as one Slice per output (the CPU
plugin merges the Slices back into the same ``ref_f32`` VariadicSplit: no change); :func:`read_past_split`
without the Slice (the Split left with one output read ran several times slower); moving a binary
layer's shift Add after its skip Add so that the plugin could fuse the skip (IMDN x4 ``lsf-int8``: the skip
stays an f32 Eltwise, which now also takes the scale Multiply; summed node time 141.4 -> 141.6 ms at 1
thread, no gain: the skip's input has other readers, so the plugin cannot sum into it in place).

>>> model = openvino.model_of(net, example, 17)      # doctest: +SKIP
>>> counts = make_lean(model)                        # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from .openvino import _u1_constant, binarize


def _constant(output) -> np.ndarray | None:  # noqa: ANN001
    node = output.get_node()
    return np.asarray(node.get_data()) if node.get_type_name() == "Constant" else None


def _signs(weights) -> np.ndarray:  # noqa: ANN001 - a u1 Constant -> its +-1 values, (O, C, kh, kw)
    shape = tuple(weights.get_output_shape(0))
    bits = np.unpackbits(np.asarray(weights.get_data()), bitorder="little")[: int(np.prod(shape))]
    return (bits.astype(np.float32) * 2 - 1).reshape(shape)


def _rewritable(consumer) -> bool:  # noqa: ANN001 - a Split output's consumer input
    node = consumer.get_node()
    if consumer.get_index() != 0:
        return False
    if node.get_type_name() == "Convolution":
        return _constant(node.input(1).get_source_output()) is not None
    if node.get_type_name() != "FakeQuantize" or node.get_levels() != 2:
        return False
    if any(_constant(node.input(i).get_source_output()) is None for i in range(1, 5)):
        return False
    users = [t.get_node() for t in node.output(0).get_target_inputs()]
    return all(u.get_type_name() == "BinaryConvolution" and
               _constant(u.input(1).get_source_output()) is not None for u in users)


def _widen(node, x, lo: int, hi: int) -> None:  # noqa: ANN001
    """Rewrite ``node`` (reading channels [lo, hi) of ``x`` through a Split) to read all of ``x``."""
    import openvino.opset13 as ops
    from openvino import opset1

    c = x.get_partial_shape()[1].get_length()
    if node.get_type_name() == "Convolution":
        w = _constant(node.input(1).get_source_output())
        wide = np.zeros((w.shape[0], c, *w.shape[2:]), w.dtype)
        wide[:, lo:hi] = w
        a = node.get_attributes()
        conv = ops.convolution(x, wide, a["strides"], a["pads_begin"], a["pads_end"], a["dilations"], a["auto_pad"].upper())
        conv.set_friendly_name(node.get_friendly_name())
        node.output(0).replace(conv.output(0))
        return
    outside = [i for i in range(c) if not lo <= i < hi]
    low = np.full(c, np.finfo(np.float32).min, np.float32)  # every finite x > low: bit 1 on outside channels
    low[lo:hi] = np.broadcast_to(_constant(node.input(1).get_source_output()).reshape(-1), (hi - lo,))
    low = low.reshape(1, -1, 1, 1)
    fq = binarize(x, low, _constant(node.input(3).get_source_output()), _constant(node.input(4).get_source_output()))
    for target in list(node.output(0).get_target_inputs()):
        conv = target.get_node()
        signs = _signs(conv.input(1).get_source_output().get_node())
        wide = np.empty((signs.shape[0], c, *signs.shape[2:]), np.float32)
        wide[:, lo:hi] = signs
        # outside channels in +1/-1 pairs: both hold bit 1, so each pair adds +1 - 1 = 0
        wide[:, outside] = np.tile(np.array([1.0, -1.0], np.float32), len(outside) // 2).reshape(1, -1, 1, 1)
        a = conv.get_attributes()
        new = opset1.binary_convolution(fq, _u1_constant(wide, wide.shape), a["strides"], a["pads_begin"], a["pads_end"],
                                        a["dilations"], a["mode"], a["pad_value"])
        new.set_friendly_name(conv.get_friendly_name())
        conv.output(0).replace(new.output(0))


def _slice_lone_output(split, dead: set[int]) -> None:  # noqa: ANN001
    """A Split with one output still read becomes one Slice of that range: the CPU plugin runs such a Split
    as ``ref_f32`` writing every output (slower than before the rewrite, measured), a Slice as one copy."""
    import openvino.opset13 as ops

    # ``dead``: outputs whose readers were replaced (the old nodes still hold their input edges until freed)
    used = [i for i in range(split.get_output_size()) if i not in dead and split.output(i).get_target_inputs()]
    if len(used) != 1:
        return
    sizes = [split.get_output_partial_shape(i)[1].get_length() for i in range(split.get_output_size())]
    start = sum(sizes[: used[0]])
    piece = ops.slice(split.input(0).get_source_output(), np.array([start], np.int64),
                      np.array([start + sizes[used[0]]], np.int64), np.array([1], np.int64), np.array([1], np.int64))
    piece.set_friendly_name(f"{split.get_friendly_name()}/slice{used[0]}")
    split.output(used[0]).replace(piece.output(0))


def read_past_split(model) -> int:  # noqa: ANN001
    """Let the binary layers and convolutions that read a channel range of a Split read the whole tensor
    instead (binarizer thresholds at the lowest float and +1/-1 weight pairs for the channels outside the
    range, zero weights in an FP conv); a Split left with one output read becomes a Slice
    (:func:`_slice_lone_output`). Returns the number of Split outputs no longer written."""
    done = 0
    for node in model.get_ordered_ops():
        if node.get_type_name() not in ("Split", "VariadicSplit"):
            continue
        axis = _constant(node.input(1).get_source_output())
        x = node.input(0).get_source_output()
        rank = x.get_partial_shape().rank
        channels = x.get_partial_shape()[1] if rank.is_static and rank.get_length() == 4 else None  # NCHW maps only
        if axis is None or channels is None or not channels.is_static or int(axis.reshape(-1)[0]) != 1:
            continue
        c, start, rewritten = channels.get_length(), 0, set()
        for i in range(node.get_output_size()):
            stop = start + node.get_output_partial_shape(i)[1].get_length()
            consumers = list(node.output(i).get_target_inputs())
            # more than half the channels: the dead channels at most double a binary conv's (cheap) work,
            # so a grouped core's per-group Split (G ranges of C/G) is left as it is
            wide_enough = 2 * (stop - start) > c and (c - (stop - start)) % 2 == 0
            if consumers and c % 8 == 0 and wide_enough and all(_rewritable(t) for t in consumers):
                for t in consumers:
                    _widen(t.get_node(), x, start, stop)
                rewritten.add(i)
            start = stop
        if rewritten:
            _slice_lone_output(node, rewritten)
        done += len(rewritten)
    return done

ACTIVATIONS = ("PRelu", "Relu")
"""Element-wise activations a skip's sum may pass through (LeakyReLU converts to PRelu) on its way to a binarizer."""


def _binary_output(output) -> bool:  # noqa: ANN001 - a binary layer's output: [Add(shift)] <- Multiply <- BinaryConvolution
    node = output.get_node()
    while node.get_type_name() in ACTIVATIONS and len(node.output(0).get_target_inputs()) == 1:
        node = node.input(0).get_source_output().get_node()
    if node.get_type_name() in ("Add", "Subtract"):
        inner = [node.input(i).get_source_output() for i in range(2) if _constant(node.input(i).get_source_output()) is None]
        if len(inner) != 1:
            return False
        node = inner[0].get_node()
    return node.get_type_name() == "Multiply" and any(
        node.input(i).get_source_output().get_node().get_type_name() == "BinaryConvolution" for i in range(2))


def _feeds_one_quantizer(output) -> bool:  # noqa: ANN001 - through single-reader activations, into one FakeQuantize only?
    readers = list(output.get_target_inputs())
    while len(readers) == 1 and readers[0].get_node().get_type_name() in ACTIVATIONS:
        readers = list(readers[0].get_node().output(0).get_target_inputs())
    return len(readers) == 1 and readers[0].get_node().get_type_name() == "FakeQuantize"


def _has_int8(model) -> bool:  # noqa: ANN001
    return any(n.get_type_name() == "FakeQuantize" and n.get_levels() > 2 for n in model.get_ops())


def skip_as_subtract(model) -> int:  # noqa: ANN001
    """In a model with INT8 layers, a skip ``y + x`` onto a binary layer's output ``y`` (directly or after its
    activation, as RLFN's block residual) becomes ``y - (-x)`` (exact in float).

    OpenVINO 2026.4.1's CPU plugin computes a BinaryConvolution wrongly when it fuses both the skip's Add (a
    ``sum`` post-op) and the next binary layer's binarizing FakeQuantize (:func:`.openvino.binarize`). In a
    binary-only model a shared range Constant keeps that FakeQuantize apart; with INT8 layers the plugin's
    low-precision transformations rebuild the Constants and the fusion comes back (RLFN x4 ``lsf-int8``:
    44.5 dB against torch). The plugin fuses a Subtract as an ordinary binary post-op, never as ``sum``, and
    then leaves the FakeQuantize apart: exact again, for one negation of the skip tensor. Only skips whose sum
    goes (through an activation) into one FakeQuantize and nothing else are rewritten: the fusion needs the
    quantizer to be the sum's only reader (IMDN's c1 sums also feed a Slice, and stay Adds). Returns the skips
    rewritten (none without INT8 layers).
    """
    import openvino.opset13 as ops

    if not _has_int8(model):
        return 0
    done = 0
    for node in model.get_ordered_ops():
        if node.get_type_name() != "Add":
            continue
        ins = [node.input(i).get_source_output() for i in range(2)]
        if any(_constant(i) is not None for i in ins) or not _feeds_one_quantizer(node.output(0)):
            continue  # a sum whose result has other readers cannot take the next quantizer into its kernel
        for j in range(2):
            if _binary_output(ins[j]):
                out = ops.subtract(ins[j], ops.negative(ins[1 - j]))
                out.set_friendly_name(f"{node.get_friendly_name()}/as_subtract")
                node.output(0).replace(out.output(0))
                done += 1
                break
    return done


PASSES = {"split": read_past_split, "skip": skip_as_subtract}
"""Every pass by name, in the order :func:`make_lean` applies them."""


def make_lean(model, passes: tuple[str, ...] | None = None) -> dict[str, int]:  # noqa: ANN001
    """Apply ``passes`` (default: all of :data:`PASSES`) in place; returns how many patterns each rewrote."""
    counts = {name: PASSES[name](model) for name in (passes if passes is not None else tuple(PASSES))}
    model.validate_nodes_and_infer_types()
    return counts
