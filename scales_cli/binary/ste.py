"""Straight-through estimators: the forward is a hard sign, the backward a documented surrogate.

Every function here uses the same sign convention, ``sign(0) = +1``::

    sign(x) = +1 if x >= 0 else -1

so a binarized tensor holds exactly two values (never 0, which ``torch.sign`` would return) and
the packed export bit of an element is simply ``x >= 0``.

Example::

    >>> x = torch.tensor([-2.0, -0.5, 0.0, 0.5], requires_grad=True)
    >>> SignSTE.apply(x).tolist()
    [-1.0, -1.0, 1.0, 1.0]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd import Function


def hard_sign(x: Tensor) -> Tensor:
    """``+1`` where ``x >= 0``, ``-1`` elsewhere, in ``x``'s dtype (``sign(0) = +1``)."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def signed(x: Tensor, value: Tensor) -> Tensor:
    """``value * sign(x)`` as one select: ``value`` where ``x >= 0``, ``-value`` elsewhere.

    Bit-identical to the product (multiplying by +-1 is exact) with one kernel instead of four;
    the training loop runs it on every binary layer's activations and gradients.
    """
    return torch.where(x >= 0, value, -value)


def channel_view(t: Tensor, ndim: int, channel_dim: int) -> Tensor:
    """Reshape a per-channel vector ``(C,)`` so it broadcasts along ``channel_dim`` of an ``ndim`` tensor."""
    shape = [1] * ndim
    shape[channel_dim] = t.numel()
    return t.reshape(shape)


def sum_except(t: Tensor, channel_dim: int) -> Tensor:
    """Sum over every dim but ``channel_dim``: ``(..., C, ...) -> (C,)``."""
    dim = channel_dim % t.ndim
    return t.sum(dim=[d for d in range(t.ndim) if d != dim])


class SignSTE(Function):
    """Sign with the clipped straight-through estimator (BinaryNet / XNOR-Net).

    forward:  y = sign(x)                      (sign(0) = +1)
    backward: dL/dx = dL/dy * 1{|x| <= 1}
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return hard_sign(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return torch.where(x.abs() <= 1, grad, 0.0)


class ApproxSignSTE(SignSTE):
    """Sign with Bi-Real Net's ApproxSign gradient (derivative of a piecewise quadratic).

    The surrogate F(x) = -1 (x < -1), 2x + x^2 (-1 <= x < 0), 2x - x^2 (0 <= x < 1), 1 (x >= 1)
    has derivative 2 - 2|x| inside (-1, 1), so

    forward:  y = sign(x)
    backward: dL/dx = dL/dy * max(0, 2 - 2|x|)
    """

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad * (2 - 2 * x.abs()).clamp_min(0)


class ScaledSignSTE(Function):
    """SCALES activation binarizer: y = alpha * sign(x - beta).

    alpha is one positive scalar per layer (shape ``(1,)``), beta one threshold per channel
    (shape ``(C,)``, broadcast along ``channel_dim``). With u = x - beta and the clipped range
    I = 1{|u| <= alpha}:

    forward:  y = alpha * sign(u)
    backward: dL/dx     = g * I
              dL/dbeta_c = -sum_{all dims but channel} (g * I)
              dL/dalpha = sum g * sign(u)                          (alpha_grad "ste")
              dL/dalpha = sum g * (sign(u) - I * u / alpha)        (alpha_grad "lsq")

    The "ste" alpha gradient is the exact derivative of alpha * sign(u) in alpha. The "lsq" one is
    LSQ's estimator for a 1-bit quantizer y = alpha * q(clip(u / alpha, -1, 1)): outside the
    range it equals sign(u); inside it adds -u/alpha, the part of the error the level absorbs.
    LSQ's 1/sqrt(N * Q_p) gradient scale is not applied (the optimizer's step size owns that).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, alpha: Tensor, beta: Tensor, channel_dim: int, lsq: bool) -> Tensor:
        u = x - channel_view(beta, x.ndim, channel_dim)
        ctx.save_for_backward(u, alpha)
        ctx.channel_dim = channel_dim
        ctx.lsq = lsq
        return signed(u, alpha)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor, None, None]:
        u, alpha = ctx.saved_tensors
        inside = u.abs() <= alpha
        grad_x = torch.where(inside, grad, 0.0)
        grad_beta = -sum_except(grad_x, ctx.channel_dim)
        if ctx.lsq:
            step = hard_sign(u) - inside.to(grad.dtype) * u / alpha
            grad_alpha = (grad * step).sum()
        else:  # sum g * sign(u), as one select
            grad_alpha = signed(u, grad).sum()
        return grad_x, grad_alpha.reshape(alpha.shape), grad_beta, None, None


class WeightSignSTE(Function):
    """Weight binarizer with a detached per-output-channel scale and the clipped STE.

    ``scale`` has shape ``(C_out,)`` and receives no gradient (it is recomputed from W each step).

    forward:  Wb[o] = scale[o] * sign(W[o])
    backward: dL/dW = dL/dWb * 1{|W| <= 1}
    """

    @staticmethod
    def forward(ctx: Any, w: Tensor, scale: Tensor) -> Tensor:
        ctx.save_for_backward(w)
        return signed(w, channel_view(scale, w.ndim, 0))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (w,) = ctx.saved_tensors
        return torch.where(w.abs() <= 1, grad, 0.0), None
