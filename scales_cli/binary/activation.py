"""Activation binarizers: tiny modules around the STE functions, registered by ``BinaryOptions.act``.

Each binarizer is built as ``factory(num_channels, channel_dim, options)`` and maps x to a tensor of
the same shape holding exactly two values. ``channel_dim`` is 1 for NCHW feature maps and -1 for
tokens ``(B, N, C)``. Binarizers with learnable state also expose ``set_statistics`` (calibration) and
``core_constants`` (alpha and beta for an exported core).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from scales_cli.binary._registry import lookup
from scales_cli.binary.options import BinaryOptions
from scales_cli.binary.ste import ApproxSignSTE, ScaledSignSTE, SignSTE

ALPHA_FLOOR = 1e-6
"""alpha = max(|a|, ALPHA_FLOOR): keeps the two levels +-alpha distinct even if a reaches 0."""


class SignBinarizer(nn.Module):
    """xb = sign(x), clipped STE (see :class:`SignSTE`). No parameters."""

    bits = 1

    def forward(self, x: Tensor) -> Tensor:
        return SignSTE.apply(x)

    def core_constants(self) -> dict[str, Tensor]:
        return {}


class ApproxSignBinarizer(SignBinarizer):
    """xb = sign(x), Bi-Real ApproxSign gradient 2 - 2|x| on |x| < 1 (see :class:`ApproxSignSTE`)."""

    def forward(self, x: Tensor) -> Tensor:
        return ApproxSignSTE.apply(x)


class ScalesBinarizer(nn.Module):
    """SCALES layer-wise scale and channel-wise threshold: xb = alpha * sign(x - beta).

    Parameters (state-dict keys under the owning layer's ``act.``):
      ``alpha`` shape (1,): stored raw value a; the scale used is alpha = max(|a|, 1e-6). The abs
      parametrisation keeps the stored number equal to the scale (calibration and export read and
      write it directly) and passes the STE gradient unchanged while a > 0.
      ``beta`` shape (C,): per-input-channel threshold, broadcast along ``channel_dim``.
    """

    bits = 1

    def __init__(self, num_channels: int, channel_dim: int, lsq: bool = False) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1))
        self.beta = nn.Parameter(torch.zeros(num_channels))
        self.channel_dim = channel_dim
        self.lsq = lsq

    def scale(self) -> Tensor:
        """The positive scale alpha = max(|a|, 1e-6), shape (1,)."""
        return self.alpha.abs().clamp_min(ALPHA_FLOOR)

    def forward(self, x: Tensor) -> Tensor:
        # in x's dtype: under bf16 autocast the codes stay bf16 into the next conv (no float32 round trip);
        # a no-op in float32
        return ScaledSignSTE.apply(x, self.scale().to(x.dtype), self.beta.to(x.dtype), self.channel_dim, self.lsq)

    @torch.no_grad()
    def set_statistics(self, beta: Tensor, alpha: Tensor) -> None:
        """Set the threshold (C,) and the scale (scalar) from activation statistics."""
        self.beta.copy_(beta.reshape(self.beta.shape))
        self.alpha.copy_(alpha.reshape(self.alpha.shape).clamp_min(ALPHA_FLOOR))

    def core_constants(self) -> dict[str, Tensor]:
        return {"alpha": self.scale().detach().clone(), "beta": self.beta.detach().clone()}

    def extra_repr(self) -> str:
        return f"channels={self.beta.numel()}, channel_dim={self.channel_dim}, alpha_grad={'lsq' if self.lsq else 'ste'}"


def channel_rows(x: Tensor, dim: int) -> Tensor:
    """(..., C, ...) -> (C, N): one row per channel, every other position pooled."""
    return x.movedim(dim, 0).reshape(x.shape[dim], -1)


THRESHOLDS: dict[str, Callable[[Tensor], Tensor]] = {
    "mean": lambda rows: rows.mean(dim=1),
    "median": lambda rows: rows.median(dim=1).values,
}
"""Calibration's threshold choice -> beta from the (C, N) activations of one layer."""


def act_statistics(inputs: Sequence[Tensor], channel_dim: int, threshold: str = "mean") -> tuple[Tensor, Tensor]:
    """``(beta, alpha)`` in float64 for :meth:`ScalesBinarizer.set_statistics` from a layer's FP inputs.

    beta_c = mean (or median) of channel c over every other position of every input; alpha =
    mean |x - beta|, the least-squares scale of a two-level code: argmin_a ||u - a sign(u)||^2 = mean|u|.
    """
    dim = channel_dim % inputs[0].ndim
    rows = torch.cat([channel_rows(x, dim) for x in inputs], dim=1).double()
    beta = lookup(THRESHOLDS, threshold, "calibration threshold")(rows)
    return beta, (rows - beta[:, None]).abs().mean()


ALPHA_GRADS: dict[str, bool] = {"ste": False, "lsq": True}
"""``BinaryOptions.alpha_grad`` -> whether ScaledSignSTE uses the LSQ alpha gradient."""

ActivationFactory = Callable[[int, int, BinaryOptions], nn.Module]

ACTIVATIONS: dict[str, ActivationFactory] = {
    "sign": lambda channels, channel_dim, options: SignBinarizer(),
    "approxsign": lambda channels, channel_dim, options: ApproxSignBinarizer(),
    "scales": lambda channels, channel_dim, options: ScalesBinarizer(
        channels, channel_dim, lookup(ALPHA_GRADS, options.alpha_grad, "alpha_grad")
    ),
}


def make_activation(num_channels: int, channel_dim: int, options: BinaryOptions) -> nn.Module:
    """The activation binarizer named by ``options.act`` for a layer with ``num_channels`` inputs."""
    return lookup(ACTIVATIONS, options.act, "activation binarizer (act)")(num_channels, channel_dim, options)
