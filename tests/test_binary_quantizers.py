"""Quantizer forward values and STE gradients against the formulas in docs/method.md."""

from __future__ import annotations

import pytest
import torch

from scales_cli.binary.activation import ACTIVATIONS, ScalesBinarizer, make_activation
from scales_cli.binary.options import BinaryOptions
from scales_cli.binary.ste import ApproxSignSTE, ScaledSignSTE, SignSTE, WeightSignSTE, hard_sign
from scales_cli.binary.weight import WEIGHT_BINARIZERS, make_weight_binarizer
from scales_cli.errors import RecipeError

X = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.25, 1.0, 1.5], dtype=torch.float64)


def _grad(fn, x: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    fn(x).backward(upstream)
    return x.grad


def test_hard_sign_maps_zero_to_plus_one() -> None:
    assert hard_sign(X).tolist() == [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0]
    assert hard_sign(X).dtype == X.dtype


def test_sign_ste_clipped_gradient() -> None:
    g = torch.arange(1.0, 8.0, dtype=torch.float64)
    assert SignSTE.apply(X).tolist() == hard_sign(X).tolist()
    # 1{|x| <= 1}: the boundary |x| = 1 passes the gradient
    assert _grad(SignSTE.apply, X, g).tolist() == [0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0]


def test_approxsign_polynomial_gradient() -> None:
    g = torch.ones_like(X)
    assert ApproxSignSTE.apply(X).tolist() == hard_sign(X).tolist()
    assert _grad(ApproxSignSTE.apply, X, g).tolist() == [0.0, 0.0, 1.0, 2.0, 1.5, 0.0, 0.0]


def test_approxsign_gradient_is_derivative_of_bireal_surrogate() -> None:
    x = torch.linspace(-1.5, 1.5, 61, dtype=torch.float64)

    def surrogate(t: torch.Tensor) -> torch.Tensor:
        inner = torch.where(t < 0, 2 * t + t * t, 2 * t - t * t)
        return torch.where(t.abs() >= 1, hard_sign(t), inner)

    expected = _grad(surrogate, x, torch.ones_like(x))
    torch.testing.assert_close(_grad(ApproxSignSTE.apply, x, torch.ones_like(x)), expected)


def _scales_case(lsq: bool):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64) * 2
    alpha = torch.tensor([0.8], dtype=torch.float64, requires_grad=True)
    beta = torch.tensor([0.1, -0.3, 0.5], dtype=torch.float64, requires_grad=True)
    xr = x.clone().requires_grad_(True)
    g = torch.randn_like(x)
    y = ScaledSignSTE.apply(xr, alpha, beta, 1, lsq)
    y.backward(g)
    u = x - beta.detach().reshape(1, 3, 1, 1)
    inside = (u.abs() <= 0.8).double()
    return x, y, g, u, inside, xr.grad, alpha.grad, beta.grad


@pytest.mark.parametrize("lsq", [False, True])
def test_scales_forward_and_gradients(lsq: bool) -> None:
    x, y, g, u, inside, gx, galpha, gbeta = _scales_case(lsq)
    assert set(y.unique().tolist()) == {-0.8, 0.8}
    torch.testing.assert_close(y, 0.8 * hard_sign(u))
    torch.testing.assert_close(gx, g * inside)
    torch.testing.assert_close(gbeta, -(g * inside).sum(dim=(0, 2, 3)))
    step = hard_sign(u) - (inside * u / 0.8 if lsq else 0)
    torch.testing.assert_close(galpha, (g * step).sum().reshape(1))


def test_scales_alpha_ste_gradient_matches_finite_difference() -> None:
    """alpha * sign(u) is linear in alpha, so the "ste" alpha gradient is the true derivative."""
    torch.manual_seed(1)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    beta = torch.randn(4, dtype=torch.float64)
    alpha = torch.tensor([0.7], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: ScaledSignSTE.apply(x, a, beta, 1, False), (alpha,))


def test_scales_token_layout_uses_last_dim() -> None:
    act = ScalesBinarizer(num_channels=6, channel_dim=-1)
    with torch.no_grad():
        act.beta.copy_(torch.linspace(-1, 1, 6))
    x = torch.randn(2, 5, 6, requires_grad=True)
    y = act(x)
    torch.testing.assert_close(y, hard_sign(x.detach() - act.beta.detach()))
    y.sum().backward()
    assert act.beta.grad.shape == (6,)


def test_scales_alpha_parametrisation_is_positive() -> None:
    act = ScalesBinarizer(3, 1)
    with torch.no_grad():
        act.alpha.fill_(-0.5)
    y = act(torch.randn(1, 3, 2, 2))
    assert set(y.unique().tolist()) <= {-0.5, 0.5}
    with torch.no_grad():
        act.alpha.zero_()
    assert act.scale().item() > 0


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("shape, channel_dim", [((2, 4, 7, 5), 1), ((2, 9, 4), -1), ((9, 4), -1)])
def test_every_activation_gives_two_values_per_layer(name: str, shape: tuple[int, ...], channel_dim: int) -> None:
    act = make_activation(4, channel_dim, BinaryOptions(act=name))
    x = torch.randn(shape)
    x.view(-1)[0] = 0.0  # sign(0) must not produce a third value
    assert act(x).unique().numel() == 2


def test_weight_channel_mean_two_values_per_channel_and_clipped_gradient() -> None:
    torch.manual_seed(2)
    w = (torch.randn(5, 3, 3, 3, dtype=torch.float64) * 0.8).requires_grad_(True)
    wb = make_weight_binarizer("channel_mean", w)(w)
    scale = w.detach().abs().mean(dim=(1, 2, 3))
    for o in range(5):
        assert sorted(wb[o].unique().tolist()) == pytest.approx([-scale[o].item(), scale[o].item()])
    g = torch.randn_like(w)
    wb.backward(g)
    torch.testing.assert_close(w.grad, g * (w.detach().abs() <= 1).double())


def test_learned_weight_scale_starts_at_the_channel_mean_and_trains_apart_from_w() -> None:
    """``channel_learned``: the same Wb as ``channel_mean`` at the start; the scale gets the exact
    gradient of s[o] * sign(W[o]) through its log, and W the same clipped STE as before."""
    torch.manual_seed(3)
    w = (torch.randn(4, 3, 3, 3, dtype=torch.float64) * 0.8).requires_grad_(True)
    learned = make_weight_binarizer("channel_learned", w.detach()).double()
    torch.testing.assert_close(learned(w), make_weight_binarizer("channel_mean", w)(w))
    g = torch.randn_like(w)
    learned(w).backward(g)
    s = w.detach().abs().mean(dim=(1, 2, 3))
    torch.testing.assert_close(learned.log_scale.grad, (g * hard_sign(w.detach())).sum(dim=(1, 2, 3)) * s)
    torch.testing.assert_close(w.grad, g * s.reshape(-1, 1, 1, 1) * (w.detach().abs() <= 1).double())
    with torch.no_grad():  # a new magnitude of W no longer changes the output scale
        w.mul_(3)
    torch.testing.assert_close(learned.scale(w), s)


def test_weight_sign_plain() -> None:
    w = torch.tensor([[0.0, -0.2], [3.0, -4.0]])
    assert make_weight_binarizer("sign", w)(w).tolist() == [[1.0, -1.0], [1.0, -1.0]]
    assert WeightSignSTE.apply(w, torch.tensor([2.0, 0.5])).tolist() == [[2.0, -2.0], [0.5, -0.5]]


@pytest.mark.parametrize(
    "build", [lambda: make_activation(3, 1, BinaryOptions(act="relu")), lambda: make_weight_binarizer("ternary", torch.ones(2, 2))]
)
def test_unknown_names_raise_recipe_error_with_choices(build) -> None:
    with pytest.raises(RecipeError, match="expected one of"):
        build()
    assert "channel_mean" in WEIGHT_BINARIZERS


def test_unknown_alpha_grad_is_a_recipe_error() -> None:
    with pytest.raises(RecipeError, match="alpha_grad"):
        make_activation(3, 1, BinaryOptions(alpha_grad="pact"))


def test_scales_clipped_range_includes_its_boundary() -> None:
    x = torch.tensor([[-1.5, -1.0, 0.0, 1.0, 1.5]], dtype=torch.float64, requires_grad=True)  # beta 0, alpha 1
    alpha = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    beta = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    ScaledSignSTE.apply(x, alpha, beta, -1, False).sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0, 1.0, 1.0, 0.0]]
    assert beta.grad.tolist() == [-0.0, -1.0, -1.0, -1.0, -0.0]
