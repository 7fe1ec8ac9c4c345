"""Set every SCALES binarizer's threshold and scale from the FP activations of real inputs.

For the FP input x of a binary layer (channel dim 1 for NCHW, -1 for tokens):

    beta_c = mean of x_c over all batches and every non-channel position
    alpha  = mean |x - beta|   over all elements

For a fixed beta, alpha = mean |u| (u = x - beta) minimises the squared reconstruction error
||u - alpha * sign(u)||^2 (XNOR-Net's scale), so the binarizer starts as the best two-level
approximation of its input. The mean (not the median) is used for beta because it streams exactly
over many batches; the median would need every activation in memory.

The statistics are those of the *FP* network: the model runs with :func:`quantizers_off`, in eval
mode, under ``no_grad``. Two passes over the batches are needed (alpha depends on beta), so the
batches are held in a list; they are LR images, which are small.

Example::

    >>> calibrate(model, [lr_image_batch])     # returns the dotted names of the calibrated layers
    ['body.0.conv1', 'body.0.conv2', ...]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from scales_cli.binary.layers import BinaryLayer, quantizers_off
from scales_cli.binary.ste import channel_view, sum_except
from scales_cli.errors import DataError


class _Sums:
    """Running float64 sum and element count."""

    def __init__(self) -> None:
        self.total: Tensor | float = 0.0
        self.count = 0

    def add(self, total: Tensor, count: int) -> None:
        self.total = self.total + total.double()
        self.count += count

    def mean(self) -> Tensor:
        return torch.as_tensor(self.total) / self.count


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _run(model: nn.Module, batches: list[Tensor], layers: dict[str, BinaryLayer], hook: Callable[[str, Tensor], None]) -> None:
    handles = [
        layer.register_forward_pre_hook(lambda _m, inputs, name=name: hook(name, inputs[0]))  # type: ignore[attr-defined]
        for name, layer in layers.items()
    ]
    device = next(model.parameters()).device
    try:
        for batch in batches:
            model(batch.to(device))
    finally:
        for handle in handles:
            handle.remove()


def _channel_dim(layer: BinaryLayer, x: Tensor) -> int:
    return layer.act_channel_dim % x.ndim


def calibrate(model: nn.Module, batches: Iterable[Tensor]) -> list[str]:
    """Set beta and alpha of every calibratable binary layer in ``model``; return their dotted names.

    Layers whose binarizer has no statistics ("sign", "approxsign") are left as they are.
    """
    batches = list(batches)
    if not batches:
        raise DataError("calibration needs at least one input batch, got none")
    layers = {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, BinaryLayer) and hasattr(m.act, "set_statistics")
    }
    if not layers:
        return []
    centres = {name: _Sums() for name in layers}
    spreads = {name: _Sums() for name in layers}

    def add_centre(name: str, x: Tensor) -> None:
        dim = _channel_dim(layers[name], x)
        centres[name].add(sum_except(x, dim), x.numel() // x.shape[dim])

    def add_spread(name: str, x: Tensor) -> None:
        dim = _channel_dim(layers[name], x)
        beta = channel_view(betas[name].to(x), x.ndim, dim)
        spreads[name].add((x - beta).abs().sum(), x.numel())

    with quantizers_off(model), _eval_mode(model), torch.no_grad():
        _run(model, batches, layers, add_centre)
        betas = {name: sums.mean() for name, sums in centres.items()}
        _run(model, batches, layers, add_spread)
    for name, layer in layers.items():
        weight = layer.weight
        layer.set_act_statistics(betas[name].to(weight), spreads[name].mean().to(weight))
    return list(layers)
