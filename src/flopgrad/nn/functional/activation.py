"""Activation functions: relu and its relatives, gelu, silu, softplus, the sigmoid family,
softmax and softmin.

relu and gelu are primitives of their own (`ops.RELU`, `ops.GELU`); sigmoid, tanh, softmax
and log_softmax are the Tensor methods' primitives; the others are compositions of them and
elementwise primitives.
"""

from __future__ import annotations

from flopgrad import ops as O
from flopgrad.dispatch import apply
from flopgrad.tensor import Tensor, _t, maximum, where

__all__ = [
    "relu", "leaky_relu", "gelu", "silu", "softplus", "hardtanh", "relu6", "elu", "logsigmoid",
    "mish", "softmin", "sigmoid", "tanh", "softmax", "log_softmax",
]


def relu(x: Tensor) -> Tensor:
    """max(x, 0).

    >>> import flopgrad as fg
    >>> fg.nn.functional.relu(fg.tensor([-1.0, 2.0])).tolist()
    [0.0, 2.0]
    """
    return apply(O.RELU, (x,))


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x for x > 0, negative_slope * x otherwise.

    >>> import flopgrad as fg
    >>> fg.nn.functional.leaky_relu(fg.tensor([-1.0, 2.0]), 0.5).tolist()
    [-0.5, 2.0]
    """
    return where(x > 0, x, x * negative_slope)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """Gaussian error linear unit, x Phi(x); approximate="tanh" gives GPT-2's tanh form.

    One primitive (with its derivative another), like PyTorch's gelu and gelu_backward.

    >>> import flopgrad as fg
    >>> round(fg.nn.functional.gelu(fg.tensor(1.0)).item(), 4)
    0.8413
    """
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    x = _t(x)
    if x.dtype.kind not in "fV":
        raise TypeError(f"gelu: needs a floating-point tensor, got dtype {x.dtype}; "
                        "convert it with .float() first")
    return apply(O.GELU, (x,), (approximate,))


def silu(x: Tensor) -> Tensor:
    """x * sigmoid(x) (swish).

    >>> import flopgrad as fg
    >>> fg.nn.functional.silu(fg.tensor([0.0, 1.0])).tolist()
    [0.0, 0.7310585975646973]
    """
    return x * x.sigmoid()


def softplus(x: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, linear above `threshold` (computed without overflow).

    >>> import flopgrad as fg
    >>> fg.nn.functional.softplus(fg.tensor([0.0, 30.0])).tolist()
    [0.6931471824645996, 30.0]
    """
    bx = x * beta if beta != 1 else x
    # maximum, not relu: its tie at 0 passes half the gradient, so d/dx at 0 is sigmoid(0)
    smooth = maximum(bx, 0.0) + (-bx.abs()).exp().log1p()
    if beta != 1:
        smooth = smooth / beta
    return where(bx > threshold, x, smooth)


def hardtanh(x: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    """x clipped to [min_val, max_val]; the gradient is 1 strictly inside, 0 at and beyond
    the bounds (PyTorch's hardtanh_backward; clamp's includes the bounds).

    >>> import flopgrad as fg
    >>> fg.nn.functional.hardtanh(fg.tensor([-2.0, 0.5, 3.0])).tolist()
    [-1.0, 0.5, 1.0]
    """
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val {min_val} cannot be greater than max_val {max_val}")
    x = _t(x)
    inside = (x > min_val) & (x < max_val)  # NaN is not inside: no gradient, as PyTorch
    return where(inside, x, x.detach().clamp(min_val, max_val))


def relu6(x: Tensor) -> Tensor:
    """min(max(x, 0), 6), PyTorch's hardtanh(x, 0, 6).

    >>> import flopgrad as fg
    >>> fg.nn.functional.relu6(fg.tensor([-1.0, 3.0, 7.0])).tolist()
    [0.0, 3.0, 6.0]
    """
    return hardtanh(x, 0.0, 6.0)


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """x for x > 0, alpha (exp(x) - 1) otherwise.

    >>> import flopgrad as fg
    >>> fg.nn.functional.elu(fg.tensor([1.0, 0.0])).tolist()
    [1.0, 0.0]
    """
    x = _t(x)
    negative = x <= 0  # NaN takes the identity branch (gradient 1), as PyTorch
    curve = where(negative, x, 0.0).exp() - 1.0  # masked: exp(inf) never meets a 0 gradient
    return where(negative, curve * alpha if alpha != 1 else curve, x)


def logsigmoid(x: Tensor) -> Tensor:
    """log(sigmoid(x)), computed without overflow: -(max(-x, 0) + log1p(exp(-|x|))).

    >>> import flopgrad as fg
    >>> round(fg.nn.functional.logsigmoid(fg.tensor(0.0)).item(), 4)
    -0.6931
    """
    x = _t(x)
    return -(maximum(-x, 0.0) + (-x.abs()).exp().log1p())


def mish(x: Tensor) -> Tensor:
    """x tanh(softplus(x)).

    >>> import flopgrad as fg
    >>> fg.nn.functional.mish(fg.tensor([0.0])).tolist()
    [0.0]
    """
    return x * softplus(x).tanh()


def softmin(x: Tensor, dim: int | None = None, dtype=None) -> Tensor:
    """softmax(-x) along `dim` (PyTorch's legacy default dim when None: 0 for 0-, 1- and
    3-dim inputs, else 1).

    >>> import flopgrad as fg
    >>> fg.nn.functional.softmin(fg.tensor([0.0, 0.0]), 0).tolist()
    [0.5, 0.5]
    """
    x = _t(x)
    if dim is None:
        dim = 0 if x.ndim in (0, 1, 3) else 1
    return (-x).softmax(dim, dtype=dtype)


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x)).

    >>> import flopgrad as fg
    >>> fg.nn.functional.sigmoid(fg.tensor([0.0])).tolist()
    [0.5]
    """
    return x.sigmoid()


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent.

    >>> import flopgrad as fg
    >>> fg.nn.functional.tanh(fg.tensor([0.0])).tolist()
    [0.0]
    """
    return x.tanh()


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Softmax along `dim` (a row that is all -inf gives NaN, as in PyTorch).

    >>> import flopgrad as fg
    >>> fg.nn.functional.softmax(fg.zeros(2, 4), dim=-1).tolist()
    [[0.25, 0.25, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25]]
    """
    return x.softmax(dim)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """log(softmax(x)) along `dim`, computed stably.

    >>> import flopgrad as fg
    >>> fg.nn.functional.log_softmax(fg.tensor([0.0, 0.0])).tolist()
    [-0.6931471824645996, -0.6931471824645996]
    """
    return x.log_softmax(dim)
