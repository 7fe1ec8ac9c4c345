"""Options of one binary layer: what a recipe rule sets and what ``from_float`` consumes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BinaryOptions:
    """Switches that compose a binary layer out of the pieces in :mod:`scales_cli.binary`.

    act: activation binarizer registry name ("sign" clipped-STE sign, "approxsign" Bi-Real,
         "scales" alpha*sign(x-beta) with learnable layer scale and per-channel threshold).
    alpha_grad: gradient estimator for the SCALES alpha ("ste" or "lsq").
    weight: weight binarizer ("channel_mean": mean|W_o| * sign(W_o); "channel_learned": a trained s_o *
            sign(W_o), s_o started at mean|W_o|; "sign": plain sign).
    spatial / spatial_kernel: spatial re-scaling branch (conv C_in->1, k x k, + sigmoid; tokens: linear C->1).
    channel / channel_kernel: channel re-scaling branch (GAP -> Conv1d(k) -> sigmoid), CNN only.
    skip: Bi-Real identity skip around the binary conv where shapes allow.
    batchnorm: BatchNorm after the binary conv (E2FIF).
    """

    act: str = "scales"
    alpha_grad: str = "ste"
    weight: str = "channel_mean"
    spatial: bool = True
    spatial_kernel: int = 3
    channel: bool = True
    channel_kernel: int = 5
    skip: bool = True
    batchnorm: bool = False
