"""The dense layer: linear, one primitive (`ops.LINEAR`: GEMM plus bias, billed as matmul)."""

from __future__ import annotations

from flopgrad import dispatch
from flopgrad import ops as O
from flopgrad.dispatch import apply
from flopgrad.tensor import Tensor, _t

__all__ = ["linear"]


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ weight.T + bias, with weight of shape (out_features, in_features).

    >>> import flopgrad as fg
    >>> fg.nn.functional.linear(fg.ones(4, 3), fg.ones(2, 3)).shape
    (4, 2)
    """
    x, weight = _t(x), _t(weight)
    if weight.ndim != 2 or x.ndim == 0:
        raise dispatch.ShapeError(
            f"linear: needs an input with at least 1 dim and a 2-D weight (out_features, "
            f"in_features), got shapes {x.shape} and {weight.shape}")
    if bias is None:
        return apply(O.LINEAR, (x, weight))
    bias = _t(bias)
    if bias.shape != (weight.shape[0],):
        raise dispatch.ShapeError(f"linear: bias of shape {bias.shape}, expected "
                                  f"({weight.shape[0]},) for a weight of shape {weight.shape}")
    return apply(O.LINEAR, (x, weight, bias))
