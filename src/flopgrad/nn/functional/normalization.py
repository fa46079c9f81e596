"""Normalisation: layer_norm (one primitive, `ops.LAYER_NORM`), rms_norm and batch_norm
(compositions, batch_norm updating its running statistics in place)."""

from __future__ import annotations

import numpy as np

from flopgrad import ops as O
from flopgrad.dispatch import apply
from flopgrad.tensor import Tensor, _t

__all__ = ["layer_norm", "rms_norm", "batch_norm"]


def layer_norm(x: Tensor, normalized_shape, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalise over the last len(normalized_shape) dims, then scale and shift.

    One primitive, like PyTorch's native_layer_norm (its backward is ordinary primitives).

    >>> import flopgrad as fg
    >>> fg.nn.functional.layer_norm(fg.tensor([[1.0, 3.0]]), (2,)).tolist()
    [[-0.9999949932098389, 0.9999949932098389]]
    """
    shape = _normalized_shape(x, normalized_shape, "layer_norm", weight=weight, bias=bias)
    return apply(O.LAYER_NORM, (_t(x), weight, bias), (len(shape), eps))


def _normalized_shape(x, normalized_shape, name: str, **params) -> tuple:
    """normalized_shape as a tuple, checked against the input's last dims and the shapes of
    the affine parameters (as PyTorch's layer_norm and rms_norm check them)."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not shape or tuple(x.shape[-len(shape):]) != shape:
        raise ValueError(f"{name}: input {x.shape} does not end in normalized_shape {shape}")
    for key, p in params.items():
        if p is not None and tuple(p.shape) != shape:
            raise ValueError(f"{name}: {key} has shape {tuple(p.shape)}, expected {shape}")
    return shape


def rms_norm(x: Tensor, normalized_shape, weight: Tensor | None = None,
             eps: float | None = None) -> Tensor:
    """x / sqrt(mean(x**2) + eps) over the last dims (eps defaults to the dtype's epsilon).

    >>> import flopgrad as fg
    >>> fg.nn.functional.rms_norm(fg.tensor([[2.0, -2.0]]), 2).tolist()
    [[1.0, -1.0]]
    """
    shape = _normalized_shape(x, normalized_shape, "rms_norm", weight=weight)
    dims = tuple(range(x.ndim - len(shape), x.ndim))
    if eps is None:
        eps = float(np.finfo(x.dtype).eps)
    out = x * ((x * x).mean(dims, keepdim=True) + eps).rsqrt()
    return out * weight if weight is not None else out


def batch_norm(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalise each channel (dim 1) by batch statistics (training) or running ones (eval).

    In training the running statistics are updated in place with the unbiased variance.

    >>> import flopgrad as fg
    >>> x = fg.tensor([1.0, 3.0]).reshape(2, 1, 1, 1)
    >>> fg.nn.functional.batch_norm(x, fg.zeros(1), fg.ones(1), training=True).flatten().tolist()
    [-0.9999949932098389, 0.9999949932098389]
    """
    dims = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    if training:
        mean = x.mean(dims, keepdim=True)
        centered = x - mean
        var = (centered * centered).mean(dims, keepdim=True)
        if running_mean is not None and running_var is not None:
            n = x.numel() // x.shape[1]
            m, v = mean.detach().reshape(-1), var.detach().reshape(-1)
            running_mean.copy_(running_mean.detach() * (1 - momentum) + m * momentum)
            running_var.copy_(running_var.detach() * (1 - momentum)
                              + v * (momentum * n / max(n - 1, 1)))
        out = centered * (var + eps).rsqrt()
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: eval mode needs running_mean and running_var")
        out = (x - running_mean.reshape(shape)) * (running_var.reshape(shape) + eps).rsqrt()
    if weight is not None:
        out = out * weight.reshape(shape)
    return out + bias.reshape(shape) if bias is not None else out
