"""Fused aten ops that flopgrad computes as a composite of its primitives (F.mse_loss,
F.softplus, ...): billed at exactly what flopgrad's composite costs, found by running it
once on meta tensors of the same shapes (cached by shapes and params); an op's
`_backward` at what the composite's backward costs. One source of truth for both bills.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from flopgrad.costs import Cost

_REDUCTIONS = ("none", "mean", "sum")  # aten's reduction enum


def _functional():
    from flopgrad.nn import functional as F
    return F


# aten name -> (how many leading tensors are inputs, the composite on them and the params)
_FORWARD: dict[str, tuple[int, Callable]] = {
    "softplus": (1, lambda x, p: _functional().softplus(x, *p[:2])),
    "elu": (1, lambda x, p: _functional().elu(x, *p[:1])),
    "mish": (1, lambda x, p: _functional().mish(x)),
    "leaky_relu": (1, lambda x, p: _functional().leaky_relu(x, *p[:1])),
    "log_sigmoid_forward": (1, lambda x, p: _functional().logsigmoid(x)),
    "mse_loss": (2, lambda x, t, p: _functional().mse_loss(x, t, _REDUCTIONS[p[0] if p else 1])),
    "smooth_l1_loss": (2, lambda x, t, p: _functional().smooth_l1_loss(
        x, t, _REDUCTIONS[p[0] if p else 1], *p[1:2])),
    "huber_loss": (2, lambda x, t, p: _functional().huber_loss(
        x, t, _REDUCTIONS[p[0] if p else 1], *p[1:2])),
    "binary_cross_entropy_with_logits": (2, lambda x, t, p: _functional()
                                         .binary_cross_entropy_with_logits(
                                             x, t, reduction=_REDUCTIONS[p[-1] if p else 1])),
}
# aten backward name -> its forward's name (its inputs follow the gradient)
_BACKWARD = {
    "softplus_backward": "softplus", "mish_backward": "mish",
    "log_sigmoid_backward": "log_sigmoid_forward", "mse_loss_backward": "mse_loss",
    "smooth_l1_loss_backward": "smooth_l1_loss", "huber_loss_backward": "huber_loss",
    "leaky_relu_backward": "leaky_relu", "elu_backward": "elu",
}


@functools.lru_cache(maxsize=4096)
def composite_cost(name: str, shapes: tuple, params: tuple, backward: bool) -> Cost:
    """The cost of flopgrad's composite for aten op `name` on inputs of these shapes: its
    forward, or (backward=True) its backward with respect to the first input.

    >>> composite_cost("mse_loss", ((4, 8), (4, 8)), (1,), False)  # sub, square, mean
    Cost(tensor=0, other=96, transcendental=0)
    """
    import flopgrad as fg

    n_inputs, compose = _FORWARD[name]
    xs = [fg.empty(*s, device="meta", requires_grad=(k == 0))
          for k, s in enumerate(shapes[:n_inputs])]
    with fg.profile(memory=False) as bill:
        out = compose(*xs, params)
        if backward:
            out.backward(None if out.ndim == 0 else fg.empty(*out.shape, device="meta"))
    phase = "backward" if backward else "forward"
    return Cost(bill.flops(phase, kind="tensor"), bill.flops(phase, kind="other"),
                bill.transcendentals(phase))


def formulas() -> dict[str, tuple[str, Callable]]:
    """{aten name: (billed name, formula)} for the table in flopgrad.torch.aten."""
    table = {}
    for name in _FORWARD:
        table[name] = (name, lambda out, ins, params, n=name: composite_cost(
            n, tuple(map(tuple, ins)), tuple(_plain(params)), False))
    for name, forward in _BACKWARD.items():
        table[name] = (forward, lambda out, ins, params, f=forward: composite_cost(
            f, tuple(map(tuple, ins[1:])), tuple(_backward_params(f, params)), True))
    return table


def _plain(params) -> list:
    return [p for p in params if isinstance(p, int | float | str) and not isinstance(p, bool)]


def _backward_params(forward: str, params) -> list:
    """A backward op's params as its forward takes them (elu_backward's alpha, scale,
    input_scale, is_result: alpha alone)."""
    plain = _plain(params)
    return plain[:1] if forward in ("elu", "leaky_relu") else plain
